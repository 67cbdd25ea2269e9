-- pgdrain 0047: maintenance run until caught up, as pg_cron runs it
-- (jobs.run_maintenance), and its pg_cron jobs (jobs.schedule_maintenance).
-- One pass (jobs.maintain, jobs.check_retention) is sql/0024.

-- Maintenance until caught up, as pg_cron runs it (jobs.schedule_maintenance):
-- jobs.maintain passes of at most 10,000 rows, each committed on its own,
-- until a pass finds less to do, max_rows (null: no cap) are removed, or
-- `budget` seconds have passed (50: done before a once-a-minute run is due).
-- One maintain call a minute with its 100,000 rows falls behind past ~1,700
-- ended jobs/s; here, on a backlog, no pass holds its locks or its snapshot
-- for long. A run killed midway keeps the passes it committed and rolls back
-- the one it was in (each deletes and archives its rows in one statement);
-- two runs at once take different rows (SKIP LOCKED). A procedure, as only
-- a CALLed procedure may commit; it cannot be security definer, so it runs as
-- its caller (pg_cron: the role that scheduled it): the owner of schema jobs
-- or pgdrain_admin. It commits, so it is called on its own: not inside BEGIN,
-- and as the only statement of a pg_cron command. report: maintain's counts
-- summed, "passes", "caughtUp" (false while the last pass still found a full
-- share of jobs, leases, throttle windows or tick misses to do, or left some).
create procedure jobs.run_maintenance(
  retention interval default '7 days',
  archive   boolean  default false,
  budget    numeric  default 50,
  max_rows  integer  default null,
  inout report jsonb default null
) language plpgsql as $$
declare
  v_path text := pg_catalog.current_setting('search_path');
  v_deadline timestamptz;
  v_budget numeric;
  v_step integer;
  v_pass jsonb;
  v_removed bigint := 0;
  v_passes integer := 0;
  v_done boolean := false;
  v_counts jsonb := '{"expired": 0, "ticks": 0, "deleted": 0, "archived": 0, "windows": 0, "misses": 0, "left": 0}';
begin
  -- As in jobs.drain_sql: the path pinned, again after every COMMIT.
  perform pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
  perform jobs.check_retention(run_maintenance.retention);
  if run_maintenance.budget is null or run_maintenance.budget <= 0 or run_maintenance.budget > 86400 then
    perform jobs.raise_invalid('PDC03', 'budget', format('must be greater than 0 and at most 86400 seconds, got %s', run_maintenance.budget));
  end if;
  if run_maintenance.max_rows is not null and (run_maintenance.max_rows < 1 or run_maintenance.max_rows > 1000000000) then
    perform jobs.raise_invalid('PDC03', 'max_rows', format('must be null (no cap) or between 1 and 1000000000, got %s', run_maintenance.max_rows));
  end if;
  -- The whole CALL is one statement to statement_timeout (common on managed
  -- databases): end well before it, or the report is lost with the call.
  select least(run_maintenance.budget, case when t.setting::numeric > 0 then t.setting::numeric / 1000 * 0.8 end)
  into v_budget from pg_catalog.pg_settings t where t.name = 'statement_timeout';
  v_deadline := clock_timestamp() + make_interval(secs => v_budget);
  loop
    v_step := least(10000, coalesce(run_maintenance.max_rows - v_removed, 10000));
    -- A pass waiting on a lock (a CREATE INDEX on jobs.job, a serial key's
    -- lock) waits only until the budget ends, then the run stops there.
    perform pg_catalog.set_config('lock_timeout',
      greatest(1, extract(epoch from v_deadline - clock_timestamp()) * 1000)::bigint::text, true);
    begin
      v_pass := jobs.maintain(run_maintenance.retention, coalesce(run_maintenance.archive, false), v_step,
                              prune_run_log => v_passes = 0);
    exception when lock_not_available then
      exit;
    end;
    select jsonb_object_agg(k, (v_counts->>k)::bigint + (v_pass->>k)::bigint) into v_counts
    from jsonb_object_keys(v_counts) k;
    v_removed := v_removed + (v_pass->>'deleted')::bigint + (v_pass->>'archived')::bigint;
    v_passes := v_passes + 1;
    commit;
    perform pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    -- Caught up when a pass did less than it could, of each kind of work,
    -- and left none of it for a change after its snapshot (sql/0041).
    v_done := (v_pass->>'deleted')::bigint + (v_pass->>'archived')::bigint < v_step
              and (v_pass->>'expired')::bigint < v_step and (v_pass->>'windows')::bigint < v_step
              and (v_pass->>'misses')::bigint < v_step and (v_pass->>'left')::bigint = 0;
    exit when v_done or v_removed >= coalesce(run_maintenance.max_rows, v_removed + 1) or clock_timestamp() >= v_deadline;
  end loop;
  report := v_counts || jsonb_build_object('passes', v_passes, 'caughtUp', v_done);
  perform pg_catalog.set_config('search_path', v_path, true);
end $$;

-- Registers maintenance with pg_cron (one call, idempotent): pgdrain:maintain
-- calls jobs.run_maintenance at `cron` (for up to `budget` seconds), and
-- pgdrain:vacuum vacuums jobs.job_queue every 10 minutes so a busy queue
-- table stays small. Returns the two job ids.
create function jobs.schedule_maintenance(
  cron      text     default '* * * * *',
  retention interval default '7 days',
  archive   boolean  default false,
  budget    numeric  default 50
) returns bigint[] language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
  perform jobs.cron_next(schedule_maintenance.cron);
  perform jobs.check_retention(schedule_maintenance.retention);
  if schedule_maintenance.budget is null or schedule_maintenance.budget <= 0 or schedule_maintenance.budget > 86400 then
    perform jobs.raise_invalid('PDC03', 'budget', format('must be greater than 0 and at most 86400 seconds, got %s', schedule_maintenance.budget));
  end if;
  if not jobs.has_pg_cron() then
    perform jobs.require_extension('pg_cron', 'jobs.schedule_maintenance',
      'without it, call select jobs.maintain() from any scheduler; drains expire leases on their own');
  end if;
  return array[
    jobs.pg_cron_schedule('pgdrain:maintain', schedule_maintenance.cron,
      format('call jobs.run_maintenance(%L::interval, %s, %s)', schedule_maintenance.retention,
             case when schedule_maintenance.archive then 'true' else 'false' end, schedule_maintenance.budget)),
    jobs.pg_cron_schedule('pgdrain:vacuum', '*/10 * * * *', 'vacuum (analyze) jobs.job_queue')];
end $$;
