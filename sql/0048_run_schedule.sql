-- pgdrain 0048: the tick pg_cron runs for a schedule (jobs.run_schedule). The
-- recurring jobs table and using pg_cron are sql/0021; the drains' ticks
-- (jobs.publish_due_schedules) sql/0023.
--
-- Errors: PDC02 name (no schedule of that name).

-- Publishes the schedule's job now and records it; pg_cron calls this at
-- each tick. Returns the job id (with a dedupe_key, that of the job holding
-- it, as jobs.publish answers), or null when nothing was published: the
-- tick failed (last_error says why), overlap 'skip' found a job of the
-- schedule still active (skipped_ticks counts it), or drains run this
-- schedule now (a tick pg_cron started as the schedule was handed to them:
-- the drains publish it, so it must not be published twice).
-- A 40001 before its catch-all (jobs.lock_schedule's row lock, the row
-- changed after a REPEATABLE READ or SERIALIZABLE snapshot) is not recorded
-- in last_error, and cannot be: that transaction may not update the row
-- either (the same 40001), and the error rolls it back whole. pg_cron's
-- command runs it READ COMMITTED (jobs.pg_cron_schedule), where the lock
-- waits and reads the row as changed: no 40001. A caller's own call in such
-- a transaction gets the 40001 itself, to retry.
create function jobs.run_schedule(name text, now timestamptz default null)
returns bigint language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := jobs.clock(run_schedule.now);
  r jobs.recurring;
  v_id bigint;
  v_skip boolean;  -- overlap 'skip' and a job of it active: nothing to publish
begin
  -- Into a bounded queue, its publishers' lock before the row, as jobs.schedule
  -- and a claim's tick take them: with the row held its publish waited for
  -- that lock, and an app transaction that published to the queue, then
  -- changed or removed this schedule, closed a cycle (40P01). None for a
  -- tick overlap 'skip' skips (jobs.lock_schedule).
  v_skip := jobs.lock_schedule(run_schedule.name, v_now);
  select * into r from jobs.recurring s where s.name = run_schedule.name;
  if not found then
    perform jobs.raise_invalid('PDC02', 'name', case when run_schedule.name is null then 'must be a schedule''s name, got null'
                                                     else format('no schedule named %s', quote_literal(run_schedule.name)) end);
  end if;
  if r.runner <> 'pg_cron' then
    return null;
  end if;
  if v_skip then
    update jobs.recurring s set skipped_ticks = s.skipped_ticks + 1, last_skipped_at = v_now where s.name = r.name;
    return null;
  end if;
  begin
    -- Its tick: the minute pg_cron fired it in (pg_cron ticks on whole minutes).
    v_id := jobs.publish(task => r.task, body => r.body, timeout_seconds => r.timeout, priority => r.priority,
                         max_retries => r.max_retries, now => v_now, queue => r.queue, dedupe_key => jobs.schedule_key(r),
                         dedupe_mode => r.dedupe_mode, serial_key => r.serial_key,
                         group_id => r.group_id, group_tier => r.group_tier,
                         attributes => jobs.schedule_attributes(r.name, date_trunc('minute', v_now)));
  exception when others then
    -- As when drains run it: the tick is recorded as failed (queue full,
    -- say) where jobs.schedules shows it, not only in pg_cron's run log.
    update jobs.recurring s set last_error = format('%s (SQLSTATE %s) at %s', sqlerrm, sqlstate, v_now)
    where s.name = r.name;
    return null;
  end;
  update jobs.recurring s set last_run_at = v_now, last_job_id = v_id, last_error = null
  where s.name = r.name;
  return v_id;
end $$;
