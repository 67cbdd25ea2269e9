-- pgdrain 0031: job progress (a handler's ctx.progress), on the running job only.
--
-- jobs.job_queue.progress holds {"attempt": n, "value": <any JSON>, "at": <time>}:
-- the last value the handler of delivery n reported. No claim or settle
-- touches it, so the hot path pays nothing for it: a job waiting for its
-- retry keeps the progress of the attempt that failed, and a new delivery
-- shows it (tagged with the older attempt) until it reports its own. An
-- ended job has none: jobs.job keeps its result, which covers the end.
-- Nullable with no default: adding it rewrites no row.
alter table jobs.job_queue add column progress jsonb;

-- Stores progress on a delivery that still runs: job job_id on attempt
-- attempt, leased (by worker_id, when given), as settles match it
-- (sql/0013). Answers false, changing nothing, when that delivery is over:
-- settled, timed out and nacked, released, or handed out again.
create function jobs.set_progress(job_id bigint, attempt integer, progress jsonb, worker_id text default null)
returns boolean language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_rows integer;
begin
  -- An update per call: a bound keeps a runaway value from bloating the queue table.
  -- jsonb's text puts a space after each , and : so it is under twice the
  -- compact JSON TypeScript measures (64 KiB there): anything TS lets through passes.
  if octet_length(set_progress.progress::text) > 131072 then
    perform jobs.raise_invalid('PD020', 'progress',
      format('must be at most 131072 bytes as jsonb text (64 KiB of compact JSON), got %s', octet_length(set_progress.progress::text)));
  end if;
  update jobs.job_queue q
  set progress = jsonb_build_object('attempt', q.attempt, 'value', coalesce(set_progress.progress, 'null'::jsonb),
                                    'at', pg_catalog.now())
  where q.job_id = set_progress.job_id and q.attempt = set_progress.attempt and q.lease_until is not null
    and (set_progress.worker_id is null or q.worker_id = set_progress.worker_id);
  get diagnostics v_rows = row_count;
  return v_rows > 0;
end $$;

-- jobs.all shows it too (null for ended jobs), then the job's expiry (a
-- waiting job's, kept in jobs.job once it ended) and its own retry
-- policy (jobs.publish's retry_*; all null: its queue's), then its own
-- dead-letter queue (jobs.publish's dead_letter; null: its queue's, if any), then its
-- group and tier (jobs.publish's group_id, group_tier), then its releases unstarted in a
-- row and its snoozes in a row (jobs.job_queue.unstarted, snoozed; null for ended jobs).
-- This is the view's final definition (sql/0016 made it).
create or replace view jobs.all as
select q.job_id, q.task, q.body, jobs.state_of(q.lease_until, q.scheduled_at, q.waiting_deps, q.serial_wait) as state,
       null::jsonb as result, q.last_error as error, q.attempt as attempts, q.priority,
       q.max_retries, q.timeout, q.scheduled_at, q.created_at, q.started_at, q.lease_until,
       null::timestamptz as ended_at, null::double precision as duration_ms,
       q.queue, q.dedupe_key, q.serial_key, q.attributes, q.worker_id, q.progress,
       q.expires_at, q.retry_delay, q.retry_backoff, q.retry_delay_max, q.dead_letter,
       q.group_id, q.group_tier, q.unstarted, q.snoozed
from jobs.job_queue q
union all
select j.job_id, j.task, j.body, j.status, j.result, j.error, j.attempts, j.priority,
       j.max_retries, j.timeout, j.scheduled_at, j.created_at, j.started_at, null,
       j.ended_at, j.duration_ms, j.queue, j.dedupe_key, j.serial_key, j.attributes, j.worker_id, null,
       j.expires_at, j.retry_delay, j.retry_backoff, j.retry_delay_max, j.dead_letter,
       j.group_id, j.group_tier, null::smallint, null::integer
from jobs.job j;
