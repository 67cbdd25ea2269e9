-- pgdrain 0016: views for watching the queue and its dead letters.

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

-- jobs.redrive, which runs them again, is in sql/0029_redrive.sql.
