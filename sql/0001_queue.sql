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
--   PD017 jobs (bulk arrays of unequal length)

-- Named queues. Every job belongs to one ('default' unless told); a drain
-- consumes one queue. max_size (null = unbounded) caps the jobs waiting in it
-- (backpressure); a paused queue hands out nothing until resumed.
create table jobs.queue (
  name       text        primary key,
  max_size   integer,
  paused     boolean     not null default false,
  created_at timestamptz not null default now()
);
insert into jobs.queue (name) values ('default');

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
  last_error   text,
  queue        text        not null default 'default',
  -- At most one job in job_queue per dedupe_key (see job_queue_dedupe_idx).
  dedupe_key   text,
  -- Jobs sharing a serial_key run one at a time in job_id order: only the
  -- key's head has serial_wait = false.
  serial_key   text,
  serial_wait  boolean     not null default false,
  -- Dependencies not yet succeeded (rows in jobs.dependency).
  waiting_deps integer     not null default 0,
  attributes   jsonb,
  worker_id    text,
  cancel_requested_at timestamptz,
  cancel_reason text
)
-- Every job leaves dead tuples here, and every claim steps over the claim
-- index's dead entries until vacuum removes them: a queue slows down between
-- vacuums, and a throttled vacuum lets the table bloat. The live rows are
-- few (the backlog), so an unthrottled vacuum of this one table is short.
-- To throttle it again: alter table jobs.job_queue reset (autovacuum_vacuum_cost_delay).
with (autovacuum_vacuum_cost_delay = 0);

-- Claim order for claimable jobs of a queue; running and blocked jobs are not
-- in it, so a claim never walks over them (a slow serial key or a long
-- dependency chain costs other jobs nothing).
create index job_queue_pending_idx on jobs.job_queue (queue, priority desc, scheduled_at, job_id)
  where lease_until is null and waiting_deps = 0 and not serial_wait;
-- Finds expired leases without scanning pending jobs.
create index job_queue_lease_idx on jobs.job_queue (lease_until)
  where lease_until is not null;
-- Partial: plain jobs (all three null) are in none of these.
create unique index job_queue_dedupe_idx on jobs.job_queue (dedupe_key) where dedupe_key is not null;
create index job_queue_serial_idx on jobs.job_queue (serial_key, job_id) where serial_key is not null;
create index job_queue_attributes_idx on jobs.job_queue using gin (attributes jsonb_path_ops)
  where attributes is not null;

create table jobs.job (
  job_id       bigint      primary key,
  task         text        not null,
  body         jsonb,
  status       text        not null check (status in ('success', 'failure', 'cancelled')),
  result       jsonb,
  -- The last error: why it failed or was cancelled, or (for a success) what
  -- the attempt before the successful one reported.
  error        text,
  attempts     integer     not null,
  priority     integer     not null,
  max_retries  integer     not null,
  timeout      numeric     not null,
  scheduled_at timestamptz not null,
  created_at   timestamptz not null,
  started_at   timestamptz,
  ended_at     timestamptz not null,
  duration_ms  double precision,
  queue        text        not null default 'default',
  dedupe_key   text,
  serial_key   text,
  attributes   jsonb,
  worker_id    text
);
-- Retention and "recent" queries. History is written once per job, so every
-- index here is paid by every job: per-task reports scan by ended_at instead.
create index job_ended_idx on jobs.job (ended_at);
-- Dead letters: failures only, so the index stays small.
create index job_failure_idx on jobs.job (ended_at) where status = 'failure';

-- Job job_id runs only after depends_on succeeded. A row lives while
-- depends_on is active; it is deleted when depends_on ends.
create table jobs.dependency (
  depends_on bigint not null,
  job_id     bigint not null,
  primary key (depends_on, job_id)
);

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

-- Names of queues follow the rule of task names.
create function jobs.check_name(p_value text, p_code text, p_field text, p_what text)
returns void language plpgsql immutable as $$
begin
  if p_value is null or p_value = '' or length(p_value) > 200
     or p_value !~ '^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$' then
    perform jobs.raise_invalid(p_code, p_field, format(
      'must be a %s: dot-separated words of letters, digits, _ : or - (at most 200 characters), got %s',
      p_what, coalesce(left(quote_literal(p_value), 80), 'null')));
  end if;
end $$;

create function jobs.check_key(p_value text, p_code text, p_field text)
returns void language plpgsql immutable as $$
begin
  if p_value is not null and (p_value = '' or length(p_value) > 500) then
    perform jobs.raise_invalid(p_code, p_field, 'must be a non-empty text of at most 500 characters');
  end if;
end $$;

create function jobs.check_object(p_value jsonb, p_field text)
returns void language plpgsql immutable as $$
begin
  if p_value is not null and jsonb_typeof(p_value) <> 'object' then
    perform jobs.raise_invalid('PD014', p_field, format('must be a JSON object, got %s', jsonb_typeof(p_value)));
  end if;
end $$;

-- Checks that a queue exists and has room for n more waiting jobs. A bounded
-- queue (max_size set) serialises its publishers on an advisory lock until
-- they commit, so the bound holds exactly; unbounded queues take no lock.
create function jobs.admit(p_queue text, p_n integer)
returns void language plpgsql as $$
declare
  v_max integer;
  v_waiting integer;
begin
  select q.max_size into v_max from jobs.queue q where q.name = p_queue;
  if not found then
    perform jobs.raise_invalid('PD009', 'queue',
      format('no queue named %s; create it with jobs.create_queue(%s)', quote_literal(p_queue), quote_literal(p_queue)));
  end if;
  if v_max is not null then
    perform pg_advisory_xact_lock(736037, hashtext(p_queue));
    -- Waiting = pending or scheduled, not running or blocked: the backlog.
    select count(*) into v_waiting from (
      select 1 from jobs.job_queue j
      where j.queue = p_queue and j.lease_until is null and j.waiting_deps = 0 and not j.serial_wait
      limit v_max + 1) s;
    if v_waiting + p_n > v_max then
      perform jobs.raise_invalid('PD010', 'queue', format(
        'queue %s is full: %s waiting jobs, max_size %s; publish later or raise it with jobs.create_queue(%s, max_size => ...)',
        quote_literal(p_queue), v_waiting, v_max, quote_literal(p_queue)));
    end if;
  end if;
end $$;

-- Locks the active jobs among depends_on (so none can end unseen before this
-- transaction commits) and returns them: the dependencies still to succeed.
-- Raises when one is unknown or already ended without success.
create function jobs.lock_dependencies(p_depends_on bigint[])
returns bigint[] language plpgsql as $$
declare
  v_active bigint[];
  v_bad record;
begin
  if cardinality(p_depends_on) > 1000 then
    perform jobs.raise_invalid('PD013', 'depends_on', 'must list at most 1000 jobs');
  end if;
  select coalesce(array_agg(q.job_id), '{}') into v_active from (
    select q.job_id from jobs.job_queue q where q.job_id = any(p_depends_on) order by q.job_id for key share
  ) q;
  select d.id, j.status into v_bad
  from unnest(p_depends_on) d(id) left join jobs.job j on j.job_id = d.id
  where d.id is null or (d.id <> all(v_active) and j.status is distinct from 'success')
  limit 1;
  if found then
    perform jobs.raise_invalid('PD013', 'depends_on', case
      when v_bad.id is null then 'must not contain null'
      when v_bad.status is null then format('job %s does not exist', v_bad.id)
      else format('job %s already ended as %s, so this job could never run', v_bad.id, v_bad.status) end);
  end if;
  return v_active;
end $$;

-- Publishing -----------------------------------------------------------------

-- Options after `now` are best given by name:
--   jobs.publish('email.send', '{"to":"a@b"}', queue => 'mail', dedupe_key => 'welcome:42')
-- queue        a queue made by jobs.create_queue (default 'default')
-- dedupe_key   while a job with this key is pending or running, publishing
--              another returns that job's id and writes nothing
-- serial_key   jobs with the same key run one at a time, in publish order
-- depends_on   runs only after all these jobs succeeded; if one fails or is
--              cancelled, this job ends as cancelled (and so do its own dependants)
-- attributes   a JSON object drains can filter on (claim's filter, @>)
-- Raises PD010 when the queue is at its max_size.
create function jobs.publish(
  task          text,
  body          jsonb       default null,
  scheduled_at  timestamptz default null,
  timeout       numeric     default null,
  priority      integer     default null,
  max_retries   integer     default null,
  now           timestamptz default null,
  queue         text        default null,
  dedupe_key    text        default null,
  serial_key    text        default null,
  depends_on    bigint[]    default null,
  attributes    jsonb       default null
) returns bigint language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_now timestamptz := coalesce(publish.now, pg_catalog.now());
  v_queue text := coalesce(publish.queue, 'default');
  v_waiting bigint[];
  v_serial_wait boolean := false;
  v_id bigint;
begin
  perform jobs.check_task(publish.task);
  perform jobs.check_options(publish.timeout, publish.priority, publish.max_retries);
  perform jobs.check_key(publish.dedupe_key, 'PD011', 'dedupe_key');
  perform jobs.check_key(publish.serial_key, 'PD012', 'serial_key');
  perform jobs.check_object(publish.attributes, 'attributes');

  for i in 1..3 loop
    if publish.dedupe_key is not null then
      select q.job_id into v_id from jobs.job_queue q where q.dedupe_key = publish.dedupe_key;
      if found then
        return v_id;
      end if;
    end if;
    perform jobs.admit(v_queue, 1);
    if publish.depends_on is not null then
      v_waiting := jobs.lock_dependencies(publish.depends_on);
    end if;
    if publish.serial_key is not null then
      -- Taken also by jobs.after_end before it picks a key's next head.
      perform pg_advisory_xact_lock(736038, hashtext(publish.serial_key));
      v_serial_wait := exists (select 1 from jobs.job_queue q where q.serial_key = publish.serial_key);
    end if;

    insert into jobs.job_queue (task, body, scheduled_at, timeout, priority, max_retries, created_at,
                                queue, dedupe_key, serial_key, serial_wait, waiting_deps, attributes)
    values (publish.task, publish.body, coalesce(publish.scheduled_at, v_now),
            coalesce(publish.timeout, 60), coalesce(publish.priority, 0),
            coalesce(publish.max_retries, 3), v_now, v_queue, publish.dedupe_key, publish.serial_key,
            v_serial_wait, coalesce(cardinality(v_waiting), 0), publish.attributes)
    on conflict (dedupe_key) where dedupe_key is not null do nothing
    returning job_id into v_id;
    -- null: a concurrent publish took the dedupe key first; loop to return its id.
    if v_id is not null then
      if cardinality(v_waiting) > 0 then
        insert into jobs.dependency (depends_on, job_id) select d, v_id from unnest(v_waiting) d on conflict do nothing;
      end if;
      perform jobs.notify('pgdrain_queued', v_queue);
      return v_id;
    end if;
  end loop;
  perform jobs.raise_invalid('PD011', 'dedupe_key', 'kept changing hands while publishing; try again');
end $$;

-- Any number of jobs in one statement, as one array per field (what
-- publishBulk sends: no composite built per job); every array but tasks may
-- be null (all take the default) or hold nulls. bodies is a JSON array, one
-- element per job. delays are seconds from now, for jobs whose scheduled_at
-- is null. The whole batch is checked before anything is written, and an
-- error names the first bad job: jobs[3].task. All go to one queue (default
-- 'default'). Returns the ids in order.
create function jobs.publish_arrays(
  tasks        text[],
  bodies       jsonb              default null,
  scheduled_at timestamptz[]      default null,
  delays       double precision[] default null,
  timeouts     numeric[]          default null,
  priorities   integer[]          default null,
  max_retries  integer[]          default null,
  queue        text               default null,
  now          timestamptz        default null
) returns bigint[] language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := coalesce(publish_arrays.now, pg_catalog.now());
  v_queue text := coalesce(publish_arrays.queue, 'default');
  v_n integer := coalesce(cardinality(publish_arrays.tasks), 0);
  v_bad record;
  v_ids bigint[];
begin
  if coalesce(jsonb_typeof(publish_arrays.bodies), 'array') <> 'array'
     or coalesce(jsonb_array_length(publish_arrays.bodies), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.scheduled_at), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.delays), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.timeouts), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.priorities), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.max_retries), v_n) <> v_n then
    perform jobs.raise_invalid('PD017', 'jobs', 'every array must hold one element per task (bodies: a JSON array)');
  end if;
  select j.ord, j.task, j.timeout, j.priority, j.max_retries into v_bad
  from unnest(publish_arrays.tasks, publish_arrays.timeouts, publish_arrays.priorities, publish_arrays.max_retries)
         with ordinality as j(task, timeout, priority, max_retries, ord)
  where j.task is null or j.task !~ '^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$' or length(j.task) > 200
     or j.timeout <= 0 or j.timeout > 86400
     or j.priority < -1000000 or j.priority > 1000000
     or j.max_retries < 0 or j.max_retries > 1000
  order by j.ord limit 1;
  if found then
    perform jobs.check_task(v_bad.task, format('jobs[%s].task', v_bad.ord));
    perform jobs.check_options(v_bad.timeout, v_bad.priority, v_bad.max_retries, format('jobs[%s].', v_bad.ord));
  end if;
  perform jobs.admit(v_queue, v_n);
  perform jobs.notify('pgdrain_queued', v_queue);

  with inserted as (
    insert into jobs.job_queue (task, body, scheduled_at, timeout, priority, max_retries, created_at, queue)
    select j.task, b.body, coalesce(j.scheduled_at, v_now + make_interval(secs => j.delay), v_now),
           coalesce(j.timeout, 60), coalesce(j.priority, 0), coalesce(j.max_retries, 3), v_now, v_queue
    from unnest(publish_arrays.tasks, publish_arrays.scheduled_at, publish_arrays.delays, publish_arrays.timeouts,
                publish_arrays.priorities, publish_arrays.max_retries)
           with ordinality as j(task, scheduled_at, delay, timeout, priority, max_retries, ord)
    left join jsonb_array_elements(publish_arrays.bodies) with ordinality as b(body, ord) using (ord)
    order by j.ord
    returning job_id
  )
  select array_agg(i.job_id order by i.job_id) into v_ids from inserted i;
  return coalesce(v_ids, '{}');
end $$;

-- Any number of jobs in one statement, as an array of jobs.bulk_job (null
-- fields take the defaults): jobs.publish_arrays, for SQL callers. Returns
-- the ids in order.
create function jobs.publish_bulk(jobs jobs.bulk_job[], now timestamptz default null, queue text default null)
returns setof bigint language sql security definer set search_path = pg_catalog, pg_temp as $$
  select unnest(jobs.publish_arrays(
    coalesce(array_agg(j.task order by j.ord), '{}'), jsonb_agg(j.body order by j.ord),
    array_agg(j.scheduled_at order by j.ord), null, array_agg(j.timeout order by j.ord),
    array_agg(j.priority order by j.ord), array_agg(j.max_retries order by j.ord),
    publish_bulk.queue, publish_bulk.now))
  from unnest(publish_bulk.jobs) with ordinality as j(task, body, scheduled_at, timeout, priority, max_retries, ord)
$$;
