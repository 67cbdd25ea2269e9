-- pgdrain 0005: the database as the clock. Recurring jobs (pg_cron or, where
-- it is missing, drains), maintenance, SQL tasks drained inside the database,
-- and HTTP drains posted by pg_net.
--
-- Errors: PDC01 cron, PDC02 name (a schedule), PDC03 another argument (the
-- COLUMN field names it); 0A000 when pg_cron or pg_net is not installed.

-- Cron expressions ------------------------------------------------------------
--
-- Five fields, minute hour day-of-month month day-of-week, each *, a value, a
-- range or a list, with an optional /step after * or a range; names jan-dec
-- and sun-sat; 0 or 7 is Sunday; @yearly @annually @monthly @weekly @daily
-- @midnight @hourly. Evaluated in UTC, as pg_cron 1.4 does. When neither
-- day field starts with *, a day matches either of them (Vixie cron, pg_cron).
-- pg_cron parses expressions where it runs them; this evaluator serves the
-- databases without it and checks every expression, so a schedule means the
-- same thing whichever runs it.

create type jobs.cron_spec as (
  minutes     integer[],
  hours       integer[],
  days        integer[],
  months      integer[],
  weekdays    integer[],
  any_day     boolean,   -- the day-of-month field starts with *
  any_weekday boolean    -- the day-of-week field starts with *
);

-- The values one field allows. Names (p_names) count from p_first.
create function jobs.cron_values(p_text text, p_field text, p_lo integer, p_hi integer,
                                 p_names text[], p_first integer, p_expr text)
returns integer[] language plpgsql immutable as $$
declare
  v_item text;
  v_m text[];
  v_lo integer;
  v_hi integer;
  v_step integer;
  v_out integer[] := '{}';
begin
  foreach v_item in array string_to_array(p_text, ',') loop
    v_m := regexp_match(v_item, '^(?:(\*)|([0-9]{1,4}|[a-z]{3})(?:-([0-9]{1,4}|[a-z]{3}))?)(?:/([0-9]{1,4}))?$');
    if v_m is null then
      perform jobs.raise_invalid('PDC01', 'cron', format(
        '%s field %s must be *, a value, a range or a list, with an optional /step (in %s)',
        p_field, quote_literal(v_item), quote_literal(p_expr)));
    end if;
    if v_m[1] is not null then
      v_lo := p_lo;
      v_hi := p_hi;
    else
      v_lo := case when v_m[2] ~ '^[0-9]' then v_m[2]::integer else array_position(p_names, v_m[2]) - 1 + p_first end;
      v_hi := case when v_m[3] is null then v_lo
                   when v_m[3] ~ '^[0-9]' then v_m[3]::integer else array_position(p_names, v_m[3]) - 1 + p_first end;
      if v_lo is null or v_hi is null or v_lo < p_lo or v_hi > p_hi then
        perform jobs.raise_invalid('PDC01', 'cron', format('%s field %s is out of range %s-%s (in %s)',
          p_field, quote_literal(v_item), p_lo, p_hi, quote_literal(p_expr)));
      end if;
      if v_lo > v_hi then
        perform jobs.raise_invalid('PDC01', 'cron', format('%s field %s is a range that goes down (in %s)',
          p_field, quote_literal(v_item), quote_literal(p_expr)));
      end if;
      if v_m[4] is not null and v_m[3] is null then
        perform jobs.raise_invalid('PDC01', 'cron', format('%s field %s: a /step needs * or a range before it, as in */15 or 0-30/5 (in %s)',
          p_field, quote_literal(v_item), quote_literal(p_expr)));
      end if;
    end if;
    v_step := coalesce(v_m[4]::integer, 1);
    if v_step < 1 or v_step > p_hi - p_lo + 1 then
      perform jobs.raise_invalid('PDC01', 'cron', format('%s field %s: the step must be between 1 and %s (in %s)',
        p_field, quote_literal(v_item), p_hi - p_lo + 1, quote_literal(p_expr)));
    end if;
    v_out := v_out || array(select generate_series(v_lo, v_hi, v_step));
  end loop;
  return v_out;
end $$;

-- Parses an expression; raises PDC01 naming the bad field.
create function jobs.cron_parse(expr text)
returns jobs.cron_spec language plpgsql immutable as $$
declare
  v text := lower(btrim(cron_parse.expr));
  f text[];
  s jobs.cron_spec;
begin
  if v is null or v = '' or length(v) > 200 then
    perform jobs.raise_invalid('PDC01', 'cron', 'must be a cron expression of at most 200 characters, such as ''*/5 * * * *''');
  end if;
  v := case v when '@yearly' then '0 0 1 1 *' when '@annually' then '0 0 1 1 *' when '@monthly' then '0 0 1 * *'
              when '@weekly' then '0 0 * * 0' when '@daily' then '0 0 * * *' when '@midnight' then '0 0 * * *'
              when '@hourly' then '0 * * * *' else v end;
  f := regexp_split_to_array(v, '\s+');
  if cardinality(f) <> 5 then
    perform jobs.raise_invalid('PDC01', 'cron', format(
      'must have 5 fields (minute hour day-of-month month day-of-week) or be @hourly, @daily, @weekly, @monthly or @yearly, got %s',
      quote_literal(cron_parse.expr)));
  end if;
  s.minutes := jobs.cron_values(f[1], 'minute', 0, 59, null, 0, cron_parse.expr);
  s.hours := jobs.cron_values(f[2], 'hour', 0, 23, null, 0, cron_parse.expr);
  s.days := jobs.cron_values(f[3], 'day-of-month', 1, 31, null, 0, cron_parse.expr);
  s.months := jobs.cron_values(f[4], 'month', 1, 12,
    '{jan,feb,mar,apr,may,jun,jul,aug,sep,oct,nov,dec}', 1, cron_parse.expr);
  s.weekdays := array(select distinct d % 7 from unnest(jobs.cron_values(f[5], 'day-of-week', 0, 7,
    '{sun,mon,tue,wed,thu,fri,sat}', 0, cron_parse.expr)) d);
  s.any_day := f[3] like '*%';
  s.any_weekday := f[5] like '*%';
  return s;
end $$;

-- The first minute after `after` that spec matches, or null if none within
-- a century. Whole months that do not match are skipped at once.
create function jobs.cron_spec_next(spec jobs.cron_spec, after timestamptz)
returns timestamptz language plpgsql immutable as $$
declare
  v_from timestamp := date_trunc('minute', cron_spec_next.after at time zone 'UTC') + interval '1 minute';
  v_day date := v_from::date;
  v_first boolean := true;  -- v_day is v_from's day: start at its hour and minute
  v_dom boolean;
  v_dow boolean;
  v_hour integer;
  v_minute integer;
begin
  for i in 1..6000 loop
    if extract(month from v_day)::integer <> all(spec.months) then
      v_day := (date_trunc('month', v_day) + interval '1 month')::date;
      v_first := false;
      continue;
    end if;
    v_dom := extract(day from v_day)::integer = any(spec.days);
    v_dow := extract(dow from v_day)::integer = any(spec.weekdays);
    if (case when spec.any_day or spec.any_weekday then v_dom and v_dow else v_dom or v_dow end) then
      select min(h) into v_hour from unnest(spec.hours) h
      where h >= case when v_first then extract(hour from v_from)::integer else 0 end;
      while v_hour is not null loop
        select min(m) into v_minute from unnest(spec.minutes) m
        where m >= case when v_first and v_hour = extract(hour from v_from) then extract(minute from v_from)::integer else 0 end;
        if v_minute is not null then
          return (v_day + make_time(v_hour, v_minute, 0)) at time zone 'UTC';
        end if;
        select min(h) into v_hour from unnest(spec.hours) h where h > v_hour;
      end loop;
    end if;
    v_day := v_day + 1;
    v_first := false;
  end loop;
  return null;
end $$;

-- The next time (UTC minutes) a cron expression fires after `after`.
-- Raises PDC01 for a bad expression or one that never fires (0 0 31 2 *).
create function jobs.cron_next(cron text, after timestamptz default now())
returns timestamptz language plpgsql immutable as $$
declare
  v_next timestamptz := jobs.cron_spec_next(jobs.cron_parse(cron_next.cron), cron_next.after);
begin
  if v_next is null then
    perform jobs.raise_invalid('PDC01', 'cron', format('%s never fires: no date matches it', quote_literal(cron_next.cron)));
  end if;
  return v_next;
end $$;

-- Recurring jobs --------------------------------------------------------------

-- One row per schedule. runner 'pg_cron': pg_cron job pgdrain:schedule:<name>
-- runs jobs.run_schedule(name) at each tick. runner 'drains': every claim
-- (jobs.claim_json, jobs.drain_sql, jobs.maintain) publishes the ticks that
-- are due (jobs.publish_due_schedules) and moves next_run_at on.
create table jobs.recurring (
  name         text        primary key,
  cron         text        not null,
  task         text        not null,
  body         jsonb,
  timeout      numeric,
  priority     integer,
  max_retries  integer,
  queue        text,
  runner       text        not null check (runner in ('pg_cron', 'drains')),
  next_run_at  timestamptz check ((runner = 'drains') = (next_run_at is not null)),
  last_run_at  timestamptz,
  last_job_id  bigint,
  last_error   text,
  created_at   timestamptz not null,
  updated_at   timestamptz not null
);
-- What a claim probes: only drain-run schedules are in it.
create index recurring_due_idx on jobs.recurring (next_run_at) where runner = 'drains';

-- Whether pg_cron can run jobs in this database (it lives in one database,
-- cron.database_name; elsewhere schedules fall back to drains).
create function jobs.has_pg_cron()
returns boolean language sql stable as $$
  select exists (select 1 from pg_catalog.pg_extension where extname = 'pg_cron')
$$;

create function jobs.require_extension(p_extension text, p_for text, p_else text)
returns void language plpgsql as $$
begin
  raise exception '% is not installed in this database: % needs it (%)', p_extension, p_for, p_else
    using errcode = '0A000';
end $$;

-- Removes the pg_cron job of that name if there is one; true if there was.
create function jobs.pg_cron_unschedule(p_jobname text)
returns boolean language plpgsql as $$
declare
  v_id bigint;
begin
  if not jobs.has_pg_cron() then
    return false;
  end if;
  execute 'select jobid from cron.job where jobname = $1 and username = current_user' into v_id using p_jobname;
  if v_id is null then
    return false;
  end if;
  execute 'select cron.unschedule($1)' using v_id;
  return true;
end $$;

create function jobs.pg_cron_schedule(p_jobname text, p_cron text, p_command text)
returns bigint language plpgsql as $$
declare
  v_id bigint;
begin
  execute 'select cron.schedule($1, $2, $3)' into v_id using p_jobname, p_cron, p_command;
  return v_id;
end $$;

-- Creates or replaces the schedule `name`: at each tick of `cron` (UTC), a
-- job of `task` with `body` and these options is published. Idempotent:
-- calling it again with the same arguments changes nothing (a pending tick
-- is kept). runner: null picks pg_cron when it is installed in this
-- database, else drains; 'pg_cron' or 'drains' forces one. Returns the runner.
create function jobs.schedule(
  name        text,
  cron        text,
  task        text,
  body        jsonb       default null,
  timeout     numeric     default null,
  priority    integer     default null,
  max_retries integer     default null,
  queue       text        default null,
  runner      text        default null,
  now         timestamptz default null
) returns text language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := coalesce(schedule.now, pg_catalog.now());
  v_next timestamptz;
  v_runner text;
  v_old text;
begin
  if schedule.name is null or schedule.name !~ '^[A-Za-z0-9_.:-]{1,100}$' then
    perform jobs.raise_invalid('PDC02', 'name', format(
      'must be 1 to 100 letters, digits, _ . : or -, got %s', coalesce(left(quote_literal(schedule.name), 80), 'null')));
  end if;
  v_next := jobs.cron_next(schedule.cron, v_now);
  perform jobs.check_task(schedule.task);
  perform jobs.check_options(schedule.timeout, schedule.priority, schedule.max_retries);
  if not exists (select 1 from jobs.queue q where q.name = coalesce(schedule.queue, 'default')) then
    perform jobs.raise_invalid('PD009', 'queue', format('no queue named %s', quote_literal(schedule.queue)));
  end if;
  if schedule.runner is not null and schedule.runner not in ('pg_cron', 'drains') then
    perform jobs.raise_invalid('PDC03', 'runner', format('must be pg_cron, drains or null (pick), got %s', quote_literal(schedule.runner)));
  end if;
  v_runner := coalesce(schedule.runner, case when jobs.has_pg_cron() then 'pg_cron' else 'drains' end);
  if v_runner = 'pg_cron' and not jobs.has_pg_cron() then
    perform jobs.require_extension('pg_cron', 'runner => ''pg_cron''',
      'CREATE EXTENSION pg_cron in the database named by cron.database_name, or use runner => ''drains''');
  end if;

  select r.runner into v_old from jobs.recurring r where r.name = schedule.name for update;
  insert into jobs.recurring as r (name, cron, task, body, timeout, priority, max_retries, queue, runner,
                                   next_run_at, created_at, updated_at)
  values (schedule.name, schedule.cron, schedule.task, schedule.body, schedule.timeout, schedule.priority,
          schedule.max_retries, schedule.queue, v_runner,
          case when v_runner = 'drains' then v_next end, v_now, v_now)
  on conflict on constraint recurring_pkey do update
  set cron = excluded.cron, task = excluded.task, body = excluded.body, timeout = excluded.timeout,
      priority = excluded.priority, max_retries = excluded.max_retries, queue = excluded.queue,
      runner = excluded.runner, updated_at = excluded.updated_at, last_error = null,
      next_run_at = case when r.runner = excluded.runner and r.cron = excluded.cron then r.next_run_at
                         else excluded.next_run_at end;

  if v_runner = 'pg_cron' then
    perform jobs.pg_cron_schedule('pgdrain:schedule:' || schedule.name, schedule.cron,
                                  format('select jobs.run_schedule(%L)', schedule.name));
  elsif v_old = 'pg_cron' then
    perform jobs.pg_cron_unschedule('pgdrain:schedule:' || schedule.name);
  end if;
  return v_runner;
end $$;

-- Removes a schedule (and its pg_cron job). Returns false if there was none.
create function jobs.unschedule(name text)
returns boolean language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_found boolean;
begin
  delete from jobs.recurring r where r.name = unschedule.name;
  v_found := found;
  return jobs.pg_cron_unschedule('pgdrain:schedule:' || unschedule.name) or v_found;
end $$;

-- Publishes the schedule's job now and records it; pg_cron calls this at
-- each tick. Returns the job id.
create function jobs.run_schedule(name text, now timestamptz default null)
returns bigint language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := coalesce(run_schedule.now, pg_catalog.now());
  r jobs.recurring;
  v_id bigint;
begin
  select * into r from jobs.recurring s where s.name = run_schedule.name;
  if not found then
    perform jobs.raise_invalid('PDC02', 'name', format('no schedule named %s', quote_literal(run_schedule.name)));
  end if;
  v_id := jobs.publish(task => r.task, body => r.body, timeout => r.timeout, priority => r.priority,
                       max_retries => r.max_retries, now => v_now, queue => r.queue);
  update jobs.recurring s set last_run_at = v_now, last_job_id = v_id, last_error = null
  where s.name = r.name;
  return v_id;
end $$;

-- Publishes one job for each drain-run schedule whose tick is due and moves
-- its next_run_at past `now`. Ticks missed while nothing claimed become one
-- job (scheduled at the first of them). FOR UPDATE SKIP LOCKED: when many
-- drains call this at once, each due row is taken by one of them, and the
-- others skip it or, once it has committed, find it no longer due, so each
-- tick is published once. With no due schedule it costs one index probe.
create function jobs.publish_due_schedules(now timestamptz default null)
returns integer language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := coalesce(publish_due_schedules.now, pg_catalog.now());
  r jobs.recurring;
  v_id bigint;
  v_count integer := 0;
begin
  for r in
    select * from jobs.recurring s
    where s.runner = 'drains' and s.next_run_at <= v_now
    order by s.next_run_at
    for update skip locked
  loop
    begin
      v_id := jobs.publish(task => r.task, body => r.body, scheduled_at => r.next_run_at, timeout => r.timeout,
                           priority => r.priority, max_retries => r.max_retries, now => v_now, queue => r.queue);
      update jobs.recurring s
      set next_run_at = jobs.cron_next(r.cron, v_now), last_run_at = r.next_run_at, last_job_id = v_id,
          last_error = null
      where s.name = r.name;
      v_count := v_count + 1;
    exception when others then
      -- A schedule that cannot publish (its queue was dropped, it is full)
      -- must not stop the claim that called us: record why, try next minute.
      update jobs.recurring s
      set next_run_at = date_trunc('minute', v_now) + interval '1 minute',
          last_error = format('%s (SQLSTATE %s) at %s', sqlerrm, sqlstate, v_now)
      where s.name = r.name;
    end;
  end loop;
  return v_count;
end $$;

create view jobs.schedules as
select r.name, r.cron, r.task, r.body, r.timeout, r.priority, r.max_retries, r.queue, r.runner,
       case when r.runner = 'pg_cron' then 'pgdrain:schedule:' || r.name end as pg_cron_job,
       coalesce(r.next_run_at, jobs.cron_next(r.cron, now())) as next_run_at,
       r.last_run_at, r.last_job_id, r.last_error, r.created_at, r.updated_at
from jobs.recurring r;

-- Maintenance -----------------------------------------------------------------

-- Ended jobs moved out of jobs.job by jobs.maintain(archive => true). Same
-- columns as jobs.job: a later migration adding one there adds it here too.
create table jobs.job_archive (like jobs.job including all);

-- One maintenance pass: settles expired leases, publishes due drain-run
-- ticks, and removes ended jobs older than `retention` from jobs.job (moved
-- to jobs.job_archive when archive is true), at most max_rows of each, along
-- with pg_cron's run log of pgdrain's own jobs past the same age. Returns
-- {"expired", "ticks", "deleted", "archived"}.
create function jobs.maintain(
  retention interval    default '7 days',
  archive   boolean     default false,
  max_rows  integer     default 100000,
  now       timestamptz default null
) returns jsonb language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := coalesce(maintain.now, pg_catalog.now());
  v_expired integer;
  v_ticks integer;
  v_removed integer;
  v_archived integer;
begin
  if maintain.retention is null or maintain.retention < interval '0' then
    perform jobs.raise_invalid('PDC03', 'retention', 'must be an interval of 0 or more, such as ''7 days''');
  end if;
  if maintain.max_rows is null or maintain.max_rows < 1 or maintain.max_rows > 10000000 then
    perform jobs.raise_invalid('PDC03', 'max_rows', format('must be between 1 and 10000000, got %s', maintain.max_rows));
  end if;
  v_expired := jobs.expire(maintain.max_rows, v_now);
  v_ticks := jobs.publish_due_schedules(v_now);

  with old as (
    select j.job_id from jobs.job j
    where j.ended_at < v_now - maintain.retention
    order by j.ended_at
    limit maintain.max_rows
    for update skip locked
  ), gone as (
    delete from jobs.job j using old where j.job_id = old.job_id returning j.*
  ), kept as (
    insert into jobs.job_archive select * from gone where maintain.archive returning 1
  )
  select (select count(*) from gone), (select count(*) from kept) into v_removed, v_archived;

  if jobs.has_pg_cron() then
    execute 'delete from cron.job_run_details d using cron.job j
             where d.jobid = j.jobid and j.jobname like ''pgdrain:%'' and d.end_time < $1'
      using v_now - maintain.retention;
  end if;
  return jsonb_build_object('expired', v_expired, 'ticks', v_ticks,
                            'deleted', v_removed - v_archived, 'archived', v_archived);
end $$;

-- Registers maintenance with pg_cron (one call, idempotent): pgdrain:maintain
-- runs jobs.maintain at `cron`, and pgdrain:vacuum vacuums jobs.job_queue
-- every 10 minutes so a busy queue table stays small. Returns the two job ids.
create function jobs.schedule_maintenance(
  cron      text     default '* * * * *',
  retention interval default '7 days',
  archive   boolean  default false
) returns bigint[] language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
  perform jobs.cron_next(schedule_maintenance.cron);
  if schedule_maintenance.retention is null or schedule_maintenance.retention < interval '0' then
    perform jobs.raise_invalid('PDC03', 'retention', 'must be an interval of 0 or more, such as ''7 days''');
  end if;
  if not jobs.has_pg_cron() then
    perform jobs.require_extension('pg_cron', 'jobs.schedule_maintenance',
      'without it, call select jobs.maintain() from any scheduler; drains expire leases on their own');
  end if;
  return array[
    jobs.pg_cron_schedule('pgdrain:maintain', schedule_maintenance.cron,
      format('select jobs.maintain(%L::interval, %s)', schedule_maintenance.retention,
             case when schedule_maintenance.archive then 'true' else 'false' end)),
    jobs.pg_cron_schedule('pgdrain:vacuum', '*/10 * * * *', 'vacuum (analyze) jobs.job_queue')];
end $$;

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
      -- Like drain(): 'deadline' when due work is left because it cannot fit.
      v_stopped := case when exists (
        select 1 from jobs.job_queue q
        where q.task like 'sql:%' and q.queue = coalesce(drain_sql.queue, 'default') and q.lease_until is null
          and q.scheduled_at <= pg_catalog.now() and q.timeout > v_left) then 'deadline' else 'empty' end;
      exit;
    end if;
    v_counts := jsonb_set(v_counts, '{claimed}', to_jsonb((v_counts->>'claimed')::integer + 1));
    commit;

    begin
      execute jobs.sql_task_call(v_job.task) into v_result using v_job.body;
      if clock_timestamp() > v_job.lease_until then
        raise exception 'timed out: ran past its %-second lease', v_job.timeout using errcode = 'PDC98';
      end if;
      v_settled := jobs.settle(jsonb_build_array(jsonb_build_object('id', v_job.job_id, 'attempt', v_job.attempt,
        'outcome', 'ack', 'result', v_result)));
      if (v_settled->>'succeeded')::integer = 0 then
        -- Another claim holds the job now: undo this run's work.
        raise exception 'stale' using errcode = 'PDC99';
      end if;
    exception when others then
      if sqlstate = 'PDC99' then
        v_settled := '{"stale": 1}';
      else
        v_settled := jobs.settle(jsonb_build_array(jsonb_build_object('id', v_job.job_id, 'attempt', v_job.attempt,
          'outcome', 'nack', 'error', format('%s (SQLSTATE %s)', sqlerrm, sqlstate))));
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
  if schedule_http_drain.name is null or schedule_http_drain.name !~ '^[A-Za-z0-9_.:-]{1,100}$' then
    perform jobs.raise_invalid('PDC02', 'name', 'must be 1 to 100 letters, digits, _ . : or -');
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
