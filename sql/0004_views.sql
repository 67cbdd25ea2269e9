-- pgdrain 0004: views for watching the queue from psql or a dashboard.

-- Every job, queued or ended, with one state:
-- scheduled (not yet due) | pending | running | expired | success | failure.
create view jobs.all as
select q.job_id, q.task, q.body,
       case when q.lease_until is null and q.scheduled_at > now() then 'scheduled'
            when q.lease_until is null then 'pending'
            when q.lease_until > now() then 'running'
            else 'expired' end as state,
       null::jsonb as result, q.last_error as error, q.attempt as attempts, q.priority,
       q.max_retries, q.timeout, q.scheduled_at, q.created_at, q.started_at, q.lease_until,
       null::timestamptz as ended_at, null::double precision as duration_ms
from jobs.job_queue q
union all
select j.job_id, j.task, j.body, j.status, j.result, j.error, j.attempts, j.priority,
       j.max_retries, j.timeout, j.scheduled_at, j.created_at, j.started_at, null,
       j.ended_at, j.duration_ms
from jobs.job j;

-- Jobs a consumer holds now, with the time left on their lease.
create view jobs.running as
select q.job_id, q.task, q.body, q.attempt, q.max_retries, q.timeout, q.started_at, q.lease_until,
       q.lease_until - now() as time_left
from jobs.job_queue q
where q.lease_until > now();

-- Jobs whose lease ended without an ack; the next consume hands them out
-- again (or fails them when their retries are spent).
create view jobs.expired as
select q.job_id, q.task, q.body, q.attempt, q.max_retries, q.timeout, q.started_at, q.lease_until,
       now() - q.lease_until as overdue
from jobs.job_queue q
where q.lease_until <= now();

-- Counts by task and state, with the oldest due job's wait for pending work.
create view jobs.stats as
select task, state, count(*)::bigint as jobs,
       max(now() - scheduled_at) filter (where state = 'pending' and scheduled_at <= now()) as oldest_due
from (
  select q.task, q.scheduled_at,
         case when q.lease_until is null and q.scheduled_at > now() then 'scheduled'
              when q.lease_until is null then 'pending'
              when q.lease_until > now() then 'running'
              else 'expired' end as state
  from jobs.job_queue q
  union all
  select j.task, j.scheduled_at, j.status from jobs.job j
) s
group by task, state;
