-- pgdrain 0025: SQL tasks: allowed SQL functions run as jobs, drained by CALL
-- jobs.drain_sql.
--
-- Errors: PD018 an SQL task that is not allowed (task) or cannot be (name),
-- PDC02 name, PDC03 another argument (drain_sql's budget: also under a due
-- job's timeout); 0A000 when pg_cron or pg_net is not installed.

-- SQL tasks -------------------------------------------------------------------

-- Task sql:<schema>.<function> runs <schema>.<function>(body jsonb) as the
-- role that calls jobs.drain_sql, so whoever publishes must not pick the
-- function: only the functions listed here (name 'schema.function') run as
-- tasks, and a publish of any other sql: task is refused (PD018). The owner
-- and <prefix>_admin keep the list with jobs.allow_sql_task and
-- jobs.disallow_sql_task; drain_sql checks it again before each run.
create table jobs.sql_task (
  -- Lower case, as the function lookup folds it (one entry per function).
  name       text        primary key check (name = lower(name)),
  allowed_at timestamptz not null default now()
);
revoke all on jobs.sql_task from public;

-- The function that runs task sql:<p_name>: schema.function(jsonb), looked
-- up in the catalog (unquoted names fold to lower case, as in SQL); its
-- schema and name, whether it returns void, and whether its schema is one
-- that cannot hold handlers (system schemas, pgdrain's, pg_cron's, pg_net's).
-- All null when there is no such function.
create function jobs.sql_task_function(p_name text, out fn_schema name, out fn_name name,
                                       out returns_void boolean, out denied boolean)
language sql stable as $$
  select n.nspname, p.proname, p.prorettype = 'pg_catalog.void'::pg_catalog.regtype,
         n.nspname in ('pg_catalog', 'information_schema', 'jobs', 'cron', 'net') or n.nspname like 'pg\_%'
  from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
  where p_name ~ '^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$'
    and n.nspname = lower(split_part(p_name, '.', 1)) and p.proname = lower(split_part(p_name, '.', 2))
    and p.prokind = 'f' and p.pronargs = 1 and p.proargtypes[0] = 'pg_catalog.jsonb'::pg_catalog.regtype
$$;

-- Raises PD018 naming p_field unless sql: task p_task is allowed: what
-- jobs.publish, jobs.publish_arrays and jobs.schedule ask of sql: tasks.
create function jobs.check_sql_task(p_task text, p_field text default 'task')
returns void language plpgsql stable as $$
begin
  if not exists (select 1 from jobs.sql_task s where s.name = lower(substr(p_task, 5))) then
    perform jobs.raise_invalid('PD018', p_field, format(
      '%s is not an allowed SQL task: the owner of schema jobs or an admin allows it first, with select jobs.allow_sql_task(%s)',
      left(p_task, 200), left(quote_literal(substr(p_task, 5)), 200)));
  end if;
end $$;

-- Allows task sql:<name> (name: 'schema.function'): the function
-- schema.function(jsonb) must exist, outside the schemas that cannot hold
-- handlers. Allow only functions that are safe to run with any body, as the
-- role that runs jobs.drain_sql, in schemas where only trusted roles may
-- create functions (the list holds names: a function of that name made
-- later, after a drop, runs too). Idempotent: true when newly allowed.
create function jobs.allow_sql_task(name text)
returns boolean language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  f record;
begin
  if allow_sql_task.name is null or allow_sql_task.name !~ '^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$' then
    perform jobs.raise_invalid('PD018', 'name', format('must be schema.function, as in task sql:schema.function, got %s',
      coalesce(left(quote_literal(allow_sql_task.name), 80), 'null')));
  end if;
  select * into f from jobs.sql_task_function(allow_sql_task.name);
  if f.fn_schema is null then
    perform jobs.raise_invalid('PD018', 'name', format(
      'no function %s(jsonb): create it first (it takes the job''s body; what it returns becomes the result)', allow_sql_task.name));
  elsif f.denied then
    perform jobs.raise_invalid('PD018', 'name', format('functions in schema %s cannot be task handlers', f.fn_schema));
  end if;
  insert into jobs.sql_task as s (name) values (lower(allow_sql_task.name)) on conflict do nothing;
  return found;
end $$;

-- Takes task sql:<name> off the list: publishing it is refused again, and a
-- drain fails its jobs still queued (no retry). False if it was not allowed.
create function jobs.disallow_sql_task(name text)
returns boolean language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
  delete from jobs.sql_task s where s.name = lower(disallow_sql_task.name);
  return found;
end $$;
-- The owner's, and <prefix>_admin's (jobs.create_roles), only.
revoke execute on function jobs.allow_sql_task(text), jobs.disallow_sql_task(text) from public;

-- The statement that runs task sql:<schema>.<function>: the function takes
-- the job's body ($1); what it returns becomes the result (void: null). It
-- raises PD018 when the task is not (or no longer) allowed, 42501 for a
-- function in a schema that cannot hold handlers, 42883 when the function
-- is gone. SECURITY DEFINER: it reads the list for a drain_sql run by a
-- <prefix>_worker, which cannot.
create function jobs.sql_task_call(p_task text)
returns text language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_name text := substr(p_task, 5);
  f record;
begin
  if p_task not like 'sql:%' or not exists (select 1 from jobs.sql_task s where s.name = lower(v_name)) then
    raise exception 'task %: not an allowed SQL task (allow it with jobs.allow_sql_task(%))', p_task, quote_literal(v_name)
      using errcode = 'PD018';
  end if;
  select * into f from jobs.sql_task_function(v_name);
  if f.fn_schema is null then
    raise exception 'task %: no function %(jsonb) to run it', p_task, v_name using errcode = '42883';
  elsif f.denied then
    raise exception 'task %: functions in schema % cannot be task handlers', p_task, f.fn_schema using errcode = '42501';
  end if;
  -- Qualified: the statement runs with the caller's search_path.
  return format(case when f.returns_void then 'select null::pg_catalog.jsonb from (select %I.%I($1)) s'
                     else 'select pg_catalog.to_jsonb(%I.%I($1))' end,
                f.fn_schema, f.fn_name);
end $$;

-- The due sql: jobs of `queue` that a claim with `max_timeout` seconds left
-- leaves alone (their timeout is longer; not blocked or expired jobs, nor a
-- paused queue's), counted up to 1000 as jobs.claim_json counts its "unfit",
-- with their shortest and longest timeout and the task of the longest
-- (longestTask, which drain_sql names when no budget left could take it); null when none is: drain_sql then
-- stopped for its deadline, as drain() says, and reports them as drain()
-- does (skipped, skippedTimeouts). Read once, when a claim found nothing or
-- the budget ran out (max_timeout 0: every due one). One priority at a time
-- from its head (jobs.claim_head), as claim_json walks them: the queue's
-- jobs scheduled for later and other queues' jobs are never read (one
-- statement over the queue was planned as a scan of every queue's jobs).
-- SECURITY DEFINER: a <prefix>_worker cannot read the queue.
create function jobs.sql_unfit(queue text, max_timeout numeric)
returns jsonb language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_queue text := coalesce(sql_unfit.queue, 'default');
  v_prio integer;
  v_count bigint := 0;
  v_min numeric;
  v_max numeric;
  v_task text;
begin
  if exists (select 1 from jobs.queue x where x.name = v_queue and x.paused) then
    return null;
  end if;
  while v_count < 1000 loop
    select h.head_priority into v_prio from jobs.claim_head(v_queue, v_prio) h;
    exit when v_prio is null;
    select v_count + count(*), least(v_min, min(s.timeout)), greatest(v_max, max(s.timeout)),
           coalesce((array_agg(s.task order by s.timeout desc) filter (where s.timeout > coalesce(v_max, -1)))[1], v_task)
    into v_count, v_min, v_max, v_task
    from (select q.timeout, q.task from jobs.job_queue q
          where q.queue = v_queue and q.lease_until is null and q.waiting_deps = 0 and not q.serial_wait
            and q.priority = v_prio and q.scheduled_at <= now()
            and q.task like 'sql:%' and q.timeout > sql_unfit.max_timeout
            and (q.expires_at is null or q.expires_at > now())
          order by q.scheduled_at, q.job_id
          limit 1000 - v_count) s;
  end loop;
  return case when v_count > 0 then jsonb_build_object('count', v_count, 'shortest', v_min, 'longest', v_max, 'longestTask', v_task) end;
end $$;

-- Drains sql:% tasks of `queue` inside the database, one job at a time, for at
-- most `budget` seconds and `batch` jobs: CALL jobs.drain_sql(100, 50), from psql
-- or scheduled with pg_cron. Each claim commits (the lease is on record) before
-- the function runs; the function's work and its ack commit together, so a
-- handler that writes only to this database runs exactly once. A job's ended_at
-- is when its function returned (the settle's own time: now() is from before the
-- run). A raised error nacks the job (retry with backoff, or failure when spent),
-- a result after the lease ended is rolled back and nacked as timed out, and a
-- cancel or a lost session leaves the lease to expire: the next claim retries it.
-- A job whose task is not (or no longer) allowed, or names a function in a schema
-- that cannot hold handlers, fails without retry.
-- Only jobs whose timeout fits the remaining budget are claimed; the budget is
-- cut to 80% of statement_timeout when that is shorter. A due job whose timeout
-- is not under that whole budget no such call ever claims: once the rest ran
-- (committed), the call fails with PDC03 naming budget, the task and its timeout,
-- so pg_cron's job_run_details says 'failed' (not after a stop for batch).
-- Give SQL tasks a queue of their own: drains take sql: tasks only when their
-- topic names them, but a claim by topic walks past other tasks' due jobs. It
-- runs as its caller, and so do the task functions: run it as a role with
-- <prefix>_worker and what the functions need, not as a superuser.
-- report: {"claimed", "succeeded", "failed", "retried", "stale", "stoppedBy",
-- "skipped", "skippedTimeouts"}: as drain()'s, the jobs the last claim left for
-- their timeout (up to 1000) and {"shortestSeconds", "longestSeconds",
-- "budgetSeconds"} of them, or null.
create procedure jobs.drain_sql(
  batch      integer default 100,
  budget     numeric default 50,
  queue      text    default null,
  inout report jsonb default null
) language plpgsql as $$
declare
  v_path text := pg_catalog.current_setting('search_path');
  v_deadline timestamptz;
  v_budget numeric;
  v_stmt numeric;
  v_left numeric;
  v_job jobs.claimed_job;
  v_call text;
  v_result jsonb;
  v_settled jsonb;
  v_counts jsonb := '{"claimed": 0, "succeeded": 0, "failed": 0, "retried": 0, "stale": 0}';
  v_stopped text := 'batch';
  v_unfit jsonb;
begin
  -- A procedure that commits cannot carry SET search_path, and this one runs
  -- as its caller: its own statements run with the path pinned, so no
  -- function or operator in a schema on the caller's path (public, before
  -- PostgreSQL 15) stands in for a built-in. Transaction-local, so set again
  -- after every COMMIT, before any other statement.
  perform pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
  if drain_sql.batch is null or drain_sql.batch < 1 or drain_sql.batch > 10000 then
    perform jobs.raise_invalid('PDC03', 'batch', format('must be between 1 and 10000, got %s', drain_sql.batch));
  end if;
  if drain_sql.budget is null or drain_sql.budget <= 0 or drain_sql.budget > 86400 then
    perform jobs.raise_invalid('PDC03', 'budget', format('must be greater than 0 and at most 86400 seconds, got %s', drain_sql.budget));
  end if;
  -- The whole CALL is one statement to statement_timeout (common on managed
  -- databases): cancelled there, it would lose its report and the job it
  -- runs (which claims fit the budget, so a job that fits runs to its end).
  select least(drain_sql.budget, case when t.setting::numeric > 0 then t.setting::numeric / 1000 * 0.8 end),
         t.setting::numeric / 1000
  into v_budget, v_stmt from pg_catalog.pg_settings t where t.name = 'statement_timeout';
  v_deadline := clock_timestamp() + make_interval(secs => v_budget);
  perform jobs.publish_due_schedules();
  commit;
  perform pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

  while (v_counts->>'claimed')::integer < drain_sql.batch loop
    v_left := extract(epoch from v_deadline - clock_timestamp());
    if v_left <= 0 then
      -- A last look with no budget, as drain()'s: every due one left is skipped.
      v_unfit := jobs.sql_unfit(drain_sql.queue, 0);
      v_left := 0;
      v_stopped := 'deadline';
      exit;
    end if;
    v_job := null;
    select * into v_job from jobs.claim(1, 'sql:%', v_left, null, drain_sql.queue);
    if v_job.job_id is null then
      -- Like drain(): 'deadline' when claimable work is left because it
      -- cannot fit (not a blocked job, nor any job of a paused queue).
      v_unfit := jobs.sql_unfit(drain_sql.queue, v_left);
      v_stopped := case when v_unfit is not null then 'deadline' else 'empty' end;
      exit;
    end if;
    v_counts := jsonb_set(v_counts, '{claimed}', to_jsonb((v_counts->>'claimed')::integer + 1));
    commit;
    perform pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);

    v_call := null;
    begin
      v_call := jobs.sql_task_call(v_job.task);
      -- The function itself runs with the caller's search_path (it may name
      -- its tables unqualified); pinned again as soon as it returns.
      perform pg_catalog.set_config('search_path', v_path, true);
      execute v_call into v_result using v_job.body;
      perform pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
      if clock_timestamp() > v_job.lease_until then
        raise exception 'timed out: ran past its %-second lease', v_job.timeout using errcode = 'PDC98';
      end if;
      v_settled := jobs.settle_arrays(array[v_job.job_id], array[v_job.attempt], array['ack'], array[v_result], now => greatest(now(), clock_timestamp()));
      if (v_settled->>'succeeded')::integer = 0 then
        -- Another claim holds the job now: undo this run's work.
        raise exception 'stale' using errcode = 'PDC99';
      end if;
    exception when others then
      -- The block's rollback restored the pinned path; pinned again all the same.
      perform pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
      if sqlstate = 'PDC99' then
        v_settled := '{"stale": 1}';
      else
        -- No call (v_call null): a task that may not run fails for good; a
        -- function that is gone (42883) may be back by the retry.
        v_settled := jobs.settle_arrays(array[v_job.job_id], array[v_job.attempt],
                                        array[case when v_call is null and sqlstate <> '42883' then 'fail' else 'nack' end],
                                        null, array[format('%s (SQLSTATE %s)', sqlerrm, sqlstate)], now => greatest(now(), clock_timestamp()));
      end if;
    end;
    select jsonb_object_agg(k, (v_counts->>k)::integer + coalesce((v_settled->>k)::integer, 0)) into v_counts
    from jsonb_object_keys(v_counts) k;
    commit;
    perform pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
  end loop;
  report := v_counts || jsonb_build_object('stoppedBy', v_stopped, 'skipped', coalesce((v_unfit->>'count')::integer, 0),
    'skippedTimeouts', case when v_unfit is not null then jsonb_build_object('shortestSeconds', v_unfit->'shortest',
      'longestSeconds', v_unfit->'longest', 'budgetSeconds', floor(v_left * 1000) / 1000) end);
  -- The budget left at a claim is under the whole one: a timeout not under it never fits. Committed
  -- first, with what ran: what the last claim's jobs.pick ended (passed leases, expiries, any queue).
  if (v_unfit->>'longest')::numeric >= v_budget then
    commit;
    perform pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    raise exception using errcode = 'PDC03', column = 'budget', message = format(
      'budget: %s seconds%s is not over the %s-second timeout of a due job of task %s, and drain_sql claims only jobs whose timeout fits the budget left: it never runs that job',
      v_budget::float8, case when v_budget < drain_sql.budget then format(' (%s cut to 80%% of statement_timeout)', drain_sql.budget) end,
      v_unfit->>'longest', v_unfit->>'longestTask'),
      detail = format('Before it stopped (committed): %s', report), hint = format(
      'Call jobs.drain_sql with a budget over %s seconds%s, or give the task''s jobs a shorter timeout: until then they wait in the queue.',
      v_unfit->>'longest', case when v_stmt > 0 and v_stmt * 0.8 <= (v_unfit->>'longest')::numeric
        then format(' and a statement_timeout over %s seconds (the budget is cut to 80%% of it)', ((v_unfit->>'longest')::numeric / 0.8)::float8) end);
  end if;
  -- The caller's path back, for a caller that goes on in this transaction.
  perform pg_catalog.set_config('search_path', v_path, true);
end $$;
