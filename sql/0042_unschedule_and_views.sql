-- pgdrain 0042: removing a recurring job (jobs.unschedule) and the views that
-- list them (jobs.schedules, jobs.stopped_schedules); jobs.schedule, which
-- creates or changes one, is sql/0022.

-- Removes a schedule (and its pg_cron job). Returns false if there was none.
create function jobs.unschedule(name text)
returns boolean language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_runner text;
begin
  delete from jobs.recurring r where r.name = unschedule.name returning r.runner into v_runner;
  -- Its misses (jobs.tick_miss) with it, as jobs.schedule deletes them.
  delete from jobs.tick_miss m where m.schedule = unschedule.name
    and m.due in (select o.due from jobs.tick_miss o where o.schedule = unschedule.name for update skip locked);
  return jobs.pg_cron_unschedule('pgdrain:schedule:' || unschedule.name, coalesce(v_runner = 'pg_cron', false))
         or v_runner is not null;
end $$;

create view jobs.schedules as
select r.name, r.cron, r.task, r.body, r.timeout, r.priority, r.max_retries, r.queue, r.runner,
       case when r.runner = 'pg_cron' then 'pgdrain:schedule:' || r.name end as pg_cron_job,
       case when r.runner = 'pg_cron' then jobs.cron_tick(r.cron, now(), r.tz) else r.next_run_at end as next_run_at,
       r.last_run_at, r.last_job_id, r.last_error, r.created_at, r.updated_at,
       r.overlap, coalesce(r.tz, 'UTC') as tz, r.skipped_ticks, r.last_skipped_at, r.backfill,
       r.serial_key, r.dedupe_key, r.dedupe_mode, r.group_id, r.group_tier
from jobs.recurring r;

-- Schedules a tick stopped (jobs.publish_due_schedules: their next tick
-- not computable within a tick's budget, or with backfill not at all),
-- which fire no more until jobs.schedule is called for them again: for
-- stats (pgdrain stats, GET /stats and /metrics, the dashboard) to show
-- beside the queue's counts. stopped_tick: the last tick it published or
-- skipped, the one whose next could not be computed.
create view jobs.stopped_schedules as
select r.name, r.task, r.queue, greatest(r.last_run_at, r.last_skipped_at) as stopped_tick, r.last_error
from jobs.recurring r
where r.runner = 'drains' and r.next_run_at is null
  and r.last_error like 'stopped until jobs.schedule is called for it again: %';
