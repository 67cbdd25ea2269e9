-- pgdrain 0007: views for watching the queue and its dead letters,
-- queue administration, and opt-in roles.

-- The state of a job still in jobs.job_queue.
create function jobs.state_of(lease_until timestamptz, scheduled_at timestamptz, waiting_deps integer,
                              serial_wait boolean)
returns text language sql stable as $$
  select case when lease_until is not null and lease_until > now() then 'running'
              when lease_until is not null then 'expired'
              when waiting_deps > 0 or serial_wait then 'blocked'
              when scheduled_at > now() then 'scheduled'
              else 'pending' end
$$;

-- Every job, queued or ended, with one state: blocked (waiting on
-- dependencies or its serial key) | scheduled (not yet due) | pending |
-- running | expired | success | failure | cancelled.
create view jobs.all as
select q.job_id, q.task, q.body, jobs.state_of(q.lease_until, q.scheduled_at, q.waiting_deps, q.serial_wait) as state,
       null::jsonb as result, q.last_error as error, q.attempt as attempts, q.priority,
       q.max_retries, q.timeout, q.scheduled_at, q.created_at, q.started_at, q.lease_until,
       null::timestamptz as ended_at, null::double precision as duration_ms,
       q.queue, q.dedupe_key, q.serial_key, q.attributes, q.worker_id
from jobs.job_queue q
union all
select j.job_id, j.task, j.body, j.status, j.result, j.error, j.attempts, j.priority,
       j.max_retries, j.timeout, j.scheduled_at, j.created_at, j.started_at, null,
       j.ended_at, j.duration_ms, j.queue, j.dedupe_key, j.serial_key, j.attributes, j.worker_id
from jobs.job j;

-- Jobs a consumer holds now, with the time left on their lease.
create view jobs.running as
select q.job_id, q.task, q.body, q.attempt, q.max_retries, q.timeout, q.started_at, q.lease_until,
       q.lease_until - now() as time_left, q.queue, q.worker_id, q.cancel_requested_at
from jobs.job_queue q
where q.lease_until > now();

-- Jobs whose lease ended without an ack; the next consume hands them out
-- again (or fails them when their retries are spent).
create view jobs.expired as
select q.job_id, q.task, q.body, q.attempt, q.max_retries, q.timeout, q.started_at, q.lease_until,
       now() - q.lease_until as overdue, q.queue, q.worker_id
from jobs.job_queue q
where q.lease_until <= now();

-- Counts by task and state, with the oldest due job's wait for pending work.
create view jobs.stats as
select task, state, count(*)::bigint as jobs,
       max(now() - scheduled_at) filter (where state = 'pending' and scheduled_at <= now()) as oldest_due,
       queue
from (
  select q.task, q.scheduled_at, q.queue,
         jobs.state_of(q.lease_until, q.scheduled_at, q.waiting_deps, q.serial_wait) as state
  from jobs.job_queue q
  union all
  select j.task, j.scheduled_at, j.queue, j.status from jobs.job j
) s
group by queue, task, state;

-- Dead letters -----------------------------------------------------------------

-- Jobs that spent their retries (or failed without retry): they wait here
-- until jobs.redrive runs them again.
create view jobs.dead_letters as
select j.job_id, j.task, j.body, j.error, j.attempts, j.max_retries, j.queue, j.attributes,
       j.created_at, j.ended_at, j.worker_id
from jobs.job j
where j.status = 'failure';

-- jobs.redrive, which runs them again, is in sql/0011_admin.sql.

-- Queues -----------------------------------------------------------------------

-- Creates a queue, or sets the max_size and defaults of an existing one
-- (each argument left out is null there: unbounded, the global default).
-- Publishing to a queue with max_size waiting jobs raises PD010. A job
-- published to it with no timeout, priority or max_retries takes the queue's
-- default_* (checked as jobs.publish checks its own); later changes leave
-- jobs already published as they are. Best called by name:
--   jobs.create_queue('mail', max_size => 1000, default_timeout => 300, default_max_retries => 10)
create function jobs.create_queue(name text, max_size integer default null, default_timeout numeric default null,
                                  default_priority integer default null, default_max_retries integer default null)
returns void language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
begin
  perform jobs.check_name(create_queue.name, 'PD009', 'queue', 'queue name');
  if create_queue.max_size is not null and (create_queue.max_size < 1 or create_queue.max_size > 100000000) then
    perform jobs.raise_invalid('PD015', 'max_size', format('must be between 1 and 100000000, or null for unbounded, got %s',
                                                          create_queue.max_size));
  end if;
  perform jobs.check_options(create_queue.default_timeout, create_queue.default_priority,
                             create_queue.default_max_retries, 'default_');
  insert into jobs.queue as q (name, max_size, default_timeout, default_priority, default_max_retries)
  values (create_queue.name, create_queue.max_size, create_queue.default_timeout, create_queue.default_priority,
          create_queue.default_max_retries)
  on conflict (name) do update set max_size = excluded.max_size, default_timeout = excluded.default_timeout,
    default_priority = excluded.default_priority, default_max_retries = excluded.default_max_retries;
end $$;

-- A paused queue still takes jobs but hands none out until resumed; its
-- running jobs finish normally. Both return false for an unknown queue.
create function jobs.pause_queue(name text)
returns boolean language sql security definer set search_path = pg_catalog, pg_temp as $$
  with u as (update jobs.queue q set paused = true where q.name = pause_queue.name returning 1)
  select exists (select 1 from u)
$$;

create function jobs.resume_queue(name text)
returns boolean language sql security definer set search_path = pg_catalog, pg_temp as $$
  with u as (update jobs.queue q set paused = false where q.name = resume_queue.name returning 1)
  select exists (select 1 from u)
$$;

-- Roles ------------------------------------------------------------------------

-- Opt-in (pgdrain migrate --roles, or call it yourself; needs CREATEROLE):
-- creates the NOLOGIN roles <prefix>_publisher, <prefix>_worker and
-- <prefix>_admin, grants each exactly what it needs, and revokes the default
-- EXECUTE of PUBLIC on the jobs functions and procedures, which run as their
-- owner (SECURITY DEFINER, search_path pinned). Grant a role to a login role
-- or to PostgREST's authenticator. Idempotent; migrate --roles runs it again
-- after every upgrade so new functions get their grants (and lose grants
-- taken back here).
-- - publisher: publish, publish_bulk and publish_arrays only; it cannot read or consume jobs.
-- - worker:    consume, settle and publish follow-ups; read jobs.job (and archived) outcomes
--              and which job ids are active (waitFor), not their bodies; run
--              CALL jobs.drain_sql (SQL tasks then run with the worker's privileges).
-- - admin:     everything in the schema (cancel, redrive, queues, views, the
--              SQL task list through jobs.allow_sql_task), but jobs.http_drain:
--              the HTTP drain's token is the owner's (jobs.schedule_http_drain replaces it).
-- Its search_path pinned: it runs as its caller (the owner, say), whose
-- path could hold a function standing in for a built-in (format).
create function jobs.create_roles(prefix text default 'pgdrain')
returns text[] language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  v_roles text[];
  v_role text;
begin
  if create_roles.prefix is null or create_roles.prefix !~ '^[a-z_][a-z0-9_]{0,40}$' then
    perform jobs.raise_invalid('PD016', 'prefix', 'must be a lower-case identifier of at most 41 characters');
  end if;
  v_roles := array[create_roles.prefix || '_publisher', create_roles.prefix || '_worker', create_roles.prefix || '_admin'];
  foreach v_role in array v_roles loop
    if not exists (select 1 from pg_roles where rolname = v_role) then
      execute format('create role %I nologin', v_role);
    end if;
    execute format('grant usage on schema jobs to %I', v_role);
  end loop;
  -- Routines: functions and procedures (jobs.drain_sql).
  revoke execute on all routines in schema jobs from public;

  execute format('grant execute on function jobs.publish(text, jsonb, timestamptz, numeric, integer, integer, timestamptz, text, text, text, bigint[], jsonb, text), jobs.publish_bulk(jobs.bulk_job[], timestamptz, text), jobs.publish_arrays(text[], jsonb, timestamptz[], double precision[], numeric[], integer[], integer[], text, timestamptz) to %I, %I',
                 v_roles[1], v_roles[2]);
  execute format('grant execute on function jobs.claim_json(integer, text, numeric, timestamptz, text, jsonb, text, bigint[], integer[], text[], jsonb[], text[], timestamptz[], double precision[]), jobs.claim(integer, text, numeric, timestamptz, text, jsonb, text), jobs.consume(integer, timestamptz, text), jobs.consume_topic(text, integer, timestamptz, text), jobs.settle(jsonb, timestamptz), jobs.settle_arrays(bigint[], integer[], text[], jsonb[], text[], timestamptz[], double precision[], timestamptz, text), jobs.ack(bigint, jsonb, timestamptz), jobs.ack(bigint[], jsonb[], timestamptz), jobs.nack(bigint, text, timestamptz, timestamptz), jobs.nack(bigint[], text[], timestamptz, timestamptz), jobs.release(bigint[]), jobs.expire(integer, timestamptz, timestamptz), jobs.cancel_requested(bigint[]) to %I',
                 v_roles[2]);
  -- What CALL jobs.drain_sql calls besides claim and settle_arrays: the due
  -- ticks (which jobs.claim_json publishes too), two readers of what a
  -- worker may not read (sql/0010), and the raise of its argument checks.
  execute format('grant execute on procedure jobs.drain_sql(integer, numeric, text, jsonb) to %I', v_roles[2]);
  -- Handlers take rate-limit tokens (sql/0012) and report progress (sql/0013).
  execute format('grant execute on function jobs.take_token(text, integer, double precision), '
                 'jobs.set_progress(bigint, integer, jsonb, text) to %I', v_roles[2]);
  execute format('grant execute on function jobs.publish_due_schedules(timestamptz), jobs.sql_task_call(text), jobs.sql_unfit(text, numeric), jobs.raise_invalid(text, text, text) to %I',
                 v_roles[2]);
  execute format('grant select on jobs.job, jobs.job_archive to %I', v_roles[2]);
  -- Whether a job is still active, for waitFor: its id only, not its body.
  execute format('grant select (job_id) on jobs.job_queue to %I', v_roles[2]);

  execute format('grant execute on all routines in schema jobs to %I', v_roles[3]);
  execute format('grant select, insert, update, delete on all tables in schema jobs to %I', v_roles[3]);
  -- Taken back (also from an admin an earlier version granted them): the
  -- HTTP drain's token, and writes to the SQL task list but through
  -- jobs.allow_sql_task and jobs.disallow_sql_task, which check what they add.
  execute format('revoke all on jobs.http_drain from %I', v_roles[3]);
  execute format('revoke insert, update, delete on jobs.sql_task from %I', v_roles[3]);
  return v_roles;
end $$;
