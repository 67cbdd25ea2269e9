-- pgdrain 0010: drains the database runs itself: SQL tasks drained by
-- CALL jobs.drain_sql, and HTTP drains posted by pg_cron through pg_net.
--
-- Errors: PDC02 name, PDC03 another argument; 0A000 when pg_cron or pg_net
-- is not installed.

-- SQL tasks -------------------------------------------------------------------

-- The statement that runs task sql:<schema>.<function>: the function takes
-- the job's body (jsonb); what it returns becomes the result (void: null).
-- Functions of system schemas and of pgdrain itself cannot be handlers.
create function jobs.sql_task_call(p_task text)
returns text language plpgsql stable as $$
declare
  v_name text := substr(p_task, 5);
  v_fn regprocedure;
  v_schema name;
  v_proc name;
  v_void boolean;
begin
  if p_task not like 'sql:%' or v_name !~ '^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$' then
    raise exception 'task %: an SQL task is named sql:<schema>.<function>', p_task using errcode = '42883';
  end if;
  v_fn := to_regprocedure(v_name || '(jsonb)');
  select n.nspname, p.proname, p.prorettype = 'void'::regtype into v_schema, v_proc, v_void
  from pg_proc p join pg_namespace n on n.oid = p.pronamespace
  where p.oid = v_fn and p.prokind = 'f';
  if not found then
    raise exception 'task %: no function %(jsonb) to run it', p_task, v_name using errcode = '42883';
  end if;
  if v_schema in ('pg_catalog', 'information_schema', 'jobs', 'cron', 'net') or v_schema like 'pg\_%' then
    raise exception 'task %: functions in schema % cannot be task handlers', p_task, v_schema using errcode = '42501';
  end if;
  return format(case when v_void then 'select null::jsonb from (select %I.%I($1)) s' else 'select to_jsonb(%I.%I($1))' end,
                v_schema, v_proc);
end $$;

-- Drains sql:% tasks of `queue` inside the database, one job at a time, for
-- at most `budget` seconds and `batch` jobs: CALL jobs.drain_sql(100, 50),
-- from psql or scheduled with pg_cron. Each claim commits (the lease is on
-- record) before the function runs; the function's work and its ack commit
-- together, so a handler that writes only to this database runs exactly once.
-- A raised error nacks the job (retry with backoff, or failure when spent),
-- a result after the lease ended is rolled back and nacked as timed out, and
-- a cancel or a lost session leaves the lease to expire: the next claim
-- retries it. Only jobs whose timeout fits the remaining budget are claimed.
-- Give SQL tasks a queue of their own: drains take sql: tasks only when their
-- topic names them, but a claim by topic walks past other tasks' due jobs.
-- report: {"claimed", "succeeded", "failed", "retried", "stale", "stoppedBy"}.
create procedure jobs.drain_sql(
  batch      integer default 100,
  budget     numeric default 50,
  queue      text    default null,
  inout report jsonb default null
) language plpgsql as $$
declare
  v_deadline timestamptz;
  v_left numeric;
  v_job jobs.claimed_job;
  v_result jsonb;
  v_settled jsonb;
  v_counts jsonb := '{"claimed": 0, "succeeded": 0, "failed": 0, "retried": 0, "stale": 0}';
  v_stopped text := 'batch';
begin
  if drain_sql.batch is null or drain_sql.batch < 1 or drain_sql.batch > 10000 then
    perform jobs.raise_invalid('PDC03', 'batch', format('must be between 1 and 10000, got %s', drain_sql.batch));
  end if;
  if drain_sql.budget is null or drain_sql.budget <= 0 or drain_sql.budget > 86400 then
    perform jobs.raise_invalid('PDC03', 'budget', format('must be greater than 0 and at most 86400 seconds, got %s', drain_sql.budget));
  end if;
  v_deadline := clock_timestamp() + make_interval(secs => drain_sql.budget);
  perform jobs.publish_due_schedules();
  commit;

  while (v_counts->>'claimed')::integer < drain_sql.batch loop
    v_left := extract(epoch from v_deadline - clock_timestamp());
    if v_left <= 0 then
      v_stopped := 'deadline';
      exit;
    end if;
    v_job := null;
    select * into v_job from jobs.claim(1, 'sql:%', v_left, null, drain_sql.queue);
    if v_job.job_id is null then
      -- Like drain(): 'deadline' when claimable work is left because it
      -- cannot fit (not a blocked job, nor any job of a paused queue).
      v_stopped := case when exists (
        select 1 from jobs.job_queue q
        where q.task like 'sql:%' and q.queue = coalesce(drain_sql.queue, 'default') and q.lease_until is null
          and q.waiting_deps = 0 and not q.serial_wait
          and q.scheduled_at <= pg_catalog.now() and q.timeout > v_left)
        and not exists (select 1 from jobs.queue x where x.name = coalesce(drain_sql.queue, 'default') and x.paused)
        then 'deadline' else 'empty' end;
      exit;
    end if;
    v_counts := jsonb_set(v_counts, '{claimed}', to_jsonb((v_counts->>'claimed')::integer + 1));
    commit;

    begin
      execute jobs.sql_task_call(v_job.task) into v_result using v_job.body;
      if clock_timestamp() > v_job.lease_until then
        raise exception 'timed out: ran past its %-second lease', v_job.timeout using errcode = 'PDC98';
      end if;
      v_settled := jobs.settle_arrays(array[v_job.job_id], array[v_job.attempt], array['ack'], array[v_result]);
      if (v_settled->>'succeeded')::integer = 0 then
        -- Another claim holds the job now: undo this run's work.
        raise exception 'stale' using errcode = 'PDC99';
      end if;
    exception when others then
      if sqlstate = 'PDC99' then
        v_settled := '{"stale": 1}';
      else
        v_settled := jobs.settle_arrays(array[v_job.job_id], array[v_job.attempt], array['nack'], null,
                                        array[format('%s (SQLSTATE %s)', sqlerrm, sqlstate)]);
      end if;
    end;
    select jsonb_object_agg(k, (v_counts->>k)::integer + coalesce((v_settled->>k)::integer, 0)) into v_counts
    from jsonb_object_keys(v_counts) k;
    commit;
  end loop;
  report := v_counts || jsonb_build_object('stoppedBy', v_stopped);
end $$;

-- HTTP drains -----------------------------------------------------------------

-- Where to post: one row per registered HTTP drain. The token stays here,
-- out of cron.job's command text and pg_cron's run log.
create table jobs.http_drain (
  name       text    primary key,
  url        text    not null,
  token      text,
  body       jsonb   not null,
  timeout_ms integer not null
);
revoke all on jobs.http_drain from public;

-- Posts to a registered HTTP drain endpoint through pg_net (asynchronous:
-- returns pg_net's request id; the answer lands in net._http_response).
create function jobs.run_http_drain(name text default 'default')
returns bigint language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  r jobs.http_drain;
  v_id bigint;
begin
  select * into r from jobs.http_drain h where h.name = run_http_drain.name;
  if not found then
    perform jobs.raise_invalid('PDC02', 'name', format('no HTTP drain named %s', quote_literal(run_http_drain.name)));
  end if;
  execute 'select net.http_post(url := $1, body := $2, headers := $3, timeout_milliseconds := $4)'
    into v_id
    using r.url, r.body,
          jsonb_build_object('Content-Type', 'application/json')
            || case when r.token is null then '{}'::jsonb else jsonb_build_object('Authorization', 'Bearer ' || r.token) end,
          r.timeout_ms;
  return v_id;
end $$;

-- Registers pg_cron job pgdrain:http:<name> that posts `body` to `url` (the
-- HTTP drain endpoint, POST /drain) with "Authorization: Bearer <token>" at
-- each tick. Needs pg_net (as on Supabase) and pg_cron; raises 0A000 naming
-- the one that is missing. Idempotent per name. Returns the pg_cron job id.
create function jobs.schedule_http_drain(
  url        text,
  token      text,
  cron       text    default '* * * * *',
  name       text    default 'default',
  body       jsonb   default '{}',
  timeout_ms integer default 60000
) returns bigint language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
  if to_regprocedure('net.http_post(text, jsonb, jsonb, jsonb, integer)') is null then
    perform jobs.require_extension('pg_net', 'jobs.schedule_http_drain',
      'CREATE EXTENSION pg_net; or have a platform cron, a Kubernetes CronJob or a Cloudflare cron trigger call the endpoint');
  end if;
  if schedule_http_drain.url is null or schedule_http_drain.url !~ '^https?://[^\s]+$' then
    perform jobs.raise_invalid('PDC03', 'url', format('must be an http:// or https:// URL, got %s',
      coalesce(left(quote_literal(schedule_http_drain.url), 80), 'null')));
  end if;
  -- 50: pg_cron's job names hold 63 bytes, 13 of them 'pgdrain:http:'.
  if schedule_http_drain.name is null or schedule_http_drain.name !~ '^[A-Za-z0-9_.:-]{1,50}$' then
    perform jobs.raise_invalid('PDC02', 'name', 'must be 1 to 50 letters, digits, _ . : or -');
  end if;
  if schedule_http_drain.body is null or jsonb_typeof(schedule_http_drain.body) <> 'object' then
    perform jobs.raise_invalid('PDC03', 'body', 'must be a JSON object');
  end if;
  if schedule_http_drain.timeout_ms is null or schedule_http_drain.timeout_ms < 1 or schedule_http_drain.timeout_ms > 900000 then
    perform jobs.raise_invalid('PDC03', 'timeout_ms', 'must be between 1 and 900000');
  end if;
  perform jobs.cron_next(schedule_http_drain.cron);
  if not jobs.has_pg_cron() then
    perform jobs.require_extension('pg_cron', 'jobs.schedule_http_drain',
      'CREATE EXTENSION pg_cron in the database named by cron.database_name');
  end if;
  insert into jobs.http_drain as h (name, url, token, body, timeout_ms)
  values (schedule_http_drain.name, schedule_http_drain.url, schedule_http_drain.token,
          schedule_http_drain.body, schedule_http_drain.timeout_ms)
  on conflict on constraint http_drain_pkey do update
  set url = excluded.url, token = excluded.token, body = excluded.body, timeout_ms = excluded.timeout_ms;
  return jobs.pg_cron_schedule('pgdrain:http:' || schedule_http_drain.name, schedule_http_drain.cron,
                               format('select jobs.run_http_drain(%L)', schedule_http_drain.name));
end $$;

-- Removes an HTTP drain and its pg_cron job. Returns false if there was none.
create function jobs.unschedule_http_drain(name text default 'default')
returns boolean language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_found boolean;
begin
  delete from jobs.http_drain h where h.name = unschedule_http_drain.name;
  v_found := found;
  return jobs.pg_cron_unschedule('pgdrain:http:' || unschedule_http_drain.name) or v_found;
end $$;
