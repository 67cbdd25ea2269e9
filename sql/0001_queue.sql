-- pgdrain 0001: the queue tables, input checks and publishing.
--
-- jobs.job_queue holds pending and running jobs; jobs.job holds ended ones.
-- A job is pending when lease_until is null, running while lease_until is in
-- the future, and expired once lease_until has passed without an ack.
-- (job_id, attempt) identifies one delivery: attempt grows by one on every
-- claim, so a late ack from a drain whose lease expired and whose job was
-- handed out again cannot settle the newer delivery.
--
-- Errors raised here use SQLSTATE class PD and name the offending field in
-- the COLUMN diagnostic field (node-pg: error.column):
--   PD001 task        PD002 timeout      PD003 max_retries   PD004 priority
--   PD005 n (batch)   PD006 pattern      PD007 schedule_at   PD008 outcome

create table jobs.job_queue (
  job_id       bigint generated always as identity primary key,
  task         text        not null,
  body         jsonb,
  scheduled_at timestamptz not null,
  timeout      numeric     not null,
  priority     integer     not null,
  max_retries  integer     not null,
  attempt      integer     not null default 0,
  lease_until  timestamptz,
  started_at   timestamptz,
  created_at   timestamptz not null,
  last_error   text
);

-- Claim order for pending jobs; running jobs are not in it, so a claim never
-- walks over them.
create index job_queue_pending_idx on jobs.job_queue (priority desc, scheduled_at, job_id)
  where lease_until is null;
-- Finds expired leases without scanning pending jobs.
create index job_queue_lease_idx on jobs.job_queue (lease_until)
  where lease_until is not null;

create table jobs.job (
  job_id       bigint      primary key,
  task         text        not null,
  body         jsonb,
  status       text        not null check (status in ('success', 'failure')),
  result       jsonb,
  error        text,
  attempts     integer     not null,
  priority     integer     not null,
  max_retries  integer     not null,
  timeout      numeric     not null,
  scheduled_at timestamptz not null,
  created_at   timestamptz not null,
  started_at   timestamptz,
  ended_at     timestamptz not null,
  duration_ms  double precision
);
create index job_ended_idx on jobs.job (ended_at);
create index job_task_idx on jobs.job (task, ended_at);

create type jobs.bulk_job as (
  task         varchar,
  body         jsonb,
  scheduled_at timestamptz,
  timeout      numeric,
  priority     integer,
  max_retries  integer
);

-- Input checks ---------------------------------------------------------------

create function jobs.raise_invalid(p_code text, p_field text, p_message text)
returns void language plpgsql volatile as $$
begin
  raise exception '%: %', p_field, p_message using errcode = p_code, column = p_field;
end $$;

-- A task is one or more dot-separated words of letters, digits, _ : and -,
-- at most 200 characters: email.send, billing.invoice_v2, sql:reports.daily.
create function jobs.check_task(p_task text, p_field text default 'task')
returns void language plpgsql immutable as $$
begin
  if p_task is null or p_task = '' then
    perform jobs.raise_invalid('PD001', p_field, 'must be a non-empty task name');
  elsif length(p_task) > 200 or p_task !~ '^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$' then
    perform jobs.raise_invalid('PD001', p_field, format(
      'must be dot-separated words of letters, digits, _ : or - (at most 200 characters), got %s',
      left(quote_literal(p_task), 80)));
  end if;
end $$;

create function jobs.check_options(p_timeout numeric, p_priority integer, p_max_retries integer,
                                   p_prefix text default '')
returns void language plpgsql immutable as $$
begin
  if p_timeout is not null and (p_timeout <= 0 or p_timeout > 86400) then
    perform jobs.raise_invalid('PD002', p_prefix || 'timeout',
      format('must be greater than 0 and at most 86400 seconds, got %s', p_timeout));
  end if;
  if p_priority is not null and (p_priority < -1000000 or p_priority > 1000000) then
    perform jobs.raise_invalid('PD004', p_prefix || 'priority',
      format('must be between -1000000 and 1000000, got %s', p_priority));
  end if;
  if p_max_retries is not null and (p_max_retries < 0 or p_max_retries > 1000) then
    perform jobs.raise_invalid('PD003', p_prefix || 'max_retries',
      format('must be between 0 and 1000, got %s', p_max_retries));
  end if;
end $$;

create function jobs.check_batch(p_n integer)
returns void language plpgsql immutable as $$
begin
  if p_n is null or p_n < 1 or p_n > 10000 then
    perform jobs.raise_invalid('PD005', 'n', format('must be between 1 and 10000, got %s', coalesce(p_n::text, 'null')));
  end if;
end $$;

-- Publishing -----------------------------------------------------------------

create function jobs.publish(
  task          text,
  body          jsonb       default null,
  scheduled_at  timestamptz default null,
  timeout       numeric     default null,
  priority      integer     default null,
  max_retries   integer     default null,
  now           timestamptz default null
) returns bigint language plpgsql as $$
declare
  v_now timestamptz := coalesce(publish.now, pg_catalog.now());
  v_id bigint;
begin
  perform jobs.check_task(publish.task);
  perform jobs.check_options(publish.timeout, publish.priority, publish.max_retries);
  insert into jobs.job_queue (task, body, scheduled_at, timeout, priority, max_retries, created_at)
  values (publish.task, publish.body, coalesce(publish.scheduled_at, v_now),
          coalesce(publish.timeout, 60), coalesce(publish.priority, 0),
          coalesce(publish.max_retries, 3), v_now)
  returning job_id into v_id;
  return v_id;
end $$;

-- Any number of jobs in one statement; null fields take the defaults. The
-- whole array is checked before anything is written, and an error names the
-- first bad element: jobs[3].task.
create function jobs.publish_bulk(jobs jobs.bulk_job[], now timestamptz default null)
returns setof bigint language plpgsql as $$
declare
  v_now timestamptz := coalesce(publish_bulk.now, pg_catalog.now());
  v_bad record;
begin
  select j.ord, j.task, j.timeout, j.priority, j.max_retries into v_bad
  from unnest(publish_bulk.jobs) with ordinality as j(task, body, scheduled_at, timeout, priority, max_retries, ord)
  where j.task is null or j.task !~ '^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$' or length(j.task) > 200
     or j.timeout <= 0 or j.timeout > 86400
     or j.priority < -1000000 or j.priority > 1000000
     or j.max_retries < 0 or j.max_retries > 1000
  order by j.ord limit 1;
  if found then
    perform jobs.check_task(v_bad.task, format('jobs[%s].task', v_bad.ord));
    perform jobs.check_options(v_bad.timeout, v_bad.priority, v_bad.max_retries, format('jobs[%s].', v_bad.ord));
  end if;

  return query
  insert into jobs.job_queue (task, body, scheduled_at, timeout, priority, max_retries, created_at)
  select j.task, j.body, coalesce(j.scheduled_at, v_now), coalesce(j.timeout, 60),
         coalesce(j.priority, 0), coalesce(j.max_retries, 3), v_now
  from unnest(publish_bulk.jobs) with ordinality as j(task, body, scheduled_at, timeout, priority, max_retries, ord)
  order by j.ord
  returning job_id;
end $$;

