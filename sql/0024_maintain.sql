-- pgdrain 0024: maintenance: expiring leases, archiving and deleting old
-- jobs, on a schedule.

-- Maintenance -----------------------------------------------------------------

-- Ended jobs moved out of jobs.job by jobs.maintain(archive => true). Same
-- columns as jobs.job: a later migration adding one there adds it here too.
create table jobs.job_archive (like jobs.job including all);

-- Retention as jobs.maintain can subtract it from now: at most 36500 days (a
-- hundred years, as maintain() takes it in TS); '9999 years' would fail every
-- pass with "timestamp out of range". Keeping ended jobs for good: 36500 days.
create function jobs.check_retention(p_retention interval)
returns void language plpgsql as $$
begin
  if p_retention is null or p_retention < interval '0' or p_retention > interval '36500 days' then
    perform jobs.raise_invalid('PDC03', 'retention', format(
      'must be an interval between 0 and 36500 days (a hundred years: ended jobs kept for good), such as ''7 days'', got %s',
      coalesce(quote_literal(p_retention), 'null')));
  end if;
end $$;

-- jobs.maintain's retention: removes ended jobs that ended before p_before
-- from jobs.job (moved to jobs.job_archive when p_archive), at most p_max,
-- oldest first, with the throttle windows they hold. Its rows taken SKIP
-- LOCKED, it waits on no row, so expiry's lock order is unchanged. p_only:
-- of these ids only; none given outside READ COMMITTED, it goes through
-- jobs.remove_ended_apart (sql/0041), which gives them.
create function jobs.remove_ended(p_before timestamptz, p_archive boolean, p_max integer, p_only bigint[] default null,
                                  out removed integer, out archived integer, out left_rows integer)
language plpgsql as $$
declare
  v_gone bigint[];
  v_gone_keys text[];
begin
  if p_only is null and not jobs.read_committed() then
    select a.removed, a.archived, a.left_rows into removed, archived, left_rows
    from jobs.remove_ended_apart(p_before, p_archive, p_max) a;
    return;
  end if;
  left_rows := 0;
  with old as (
    select j.job_id from jobs.job j
    where j.ended_at < p_before and (p_only is null or j.job_id = any(p_only))
    order by j.ended_at
    limit p_max
    for update skip locked
  ), gone as (
    delete from jobs.job j using old where j.job_id = old.job_id returning j.*
  ), kept as (
    insert into jobs.job_archive select * from gone where p_archive returning 1
  )
  -- The throttle windows (sql/0032) the deleted jobs hold go with them, as
  -- jobs.delete_jobs lets them go: kept, a throttled publish of the key
  -- would answer a job that no longer exists. An archived job still is one
  -- (getJob and waitFor find it in jobs.job_archive) and holds its window,
  -- unless its end frees it (jobs.frees_window; jobs.throttle_lock reads
  -- that in jobs.job_archive too: this drops the row). At most p_max,
  -- one probe per keyed job.
  select (select count(*) from gone), (select count(*) from kept), f.ids, f.keys
  into removed, archived, v_gone, v_gone_keys
  from (select array_agg(g.job_id) as ids, array_agg(g.dedupe_key) as keys from gone g
        where g.dedupe_key is not null and (not p_archive or jobs.frees_window(g.status, g.attempts, g.error))) f;
  if v_gone is not null then
    perform jobs.forget_windows(v_gone, v_gone_keys);
  end if;
end $$;

-- jobs.maintain's ended throttle windows (sql/0032): deletes at most p_max
-- whose until has passed at p_now (no publish reads them), and counts them,
-- so that a full share tells run_maintenance and TS maintain() that more are
-- left. p_only: of these keys only (outside READ COMMITTED, as
-- jobs.remove_ended: jobs.delete_ended_windows_apart).
create function jobs.delete_ended_windows(p_now timestamptz, p_max integer, p_only text[] default null,
                                          out windows integer, out left_rows integer)
language plpgsql as $$
begin
  if p_only is null and not jobs.read_committed() then
    select a.windows, a.left_rows into windows, left_rows from jobs.delete_ended_windows_apart(p_now, p_max) a;
    return;
  end if;
  left_rows := 0;
  delete from jobs.throttle t using (
    select o.dedupe_key from jobs.throttle o where o.until <= p_now and (p_only is null or o.dedupe_key = any(p_only))
    order by o.until limit p_max for update skip locked) old
  where t.dedupe_key = old.dedupe_key;
  get diagnostics windows = row_count;
end $$;

-- One maintenance pass: settles expired leases, publishes due drain-run
-- ticks, and removes ended jobs older than `retention` from jobs.job (moved
-- to jobs.job_archive when archive is true) and the throttle windows they
-- hold (sql/0032: jobs.forget_windows), at most max_rows of each, along
-- with pg_cron's run log of pgdrain's own jobs past the same age (skipped
-- when this role may not delete from it), and at most max_rows ended dedupe
-- throttle windows (sql/0032) and jobs.tick_miss rows of ticks no longer
-- due. One transaction: a backlog larger
-- than max_rows takes more passes (jobs.run_maintenance). Outside READ
-- COMMITTED, a row another session changed after its snapshot is left to
-- that session, the rest done (sql/0041), not the pass failed with 40001. Returns
-- {"expired", "ticks", "deleted", "archived", "windows", "misses", "left"}
-- (windows: the ended throttle windows deleted; misses: those tick_miss
-- rows; expired: jobs.expire's count, the leases settled and the waiting
-- jobs ended past their expires_at together; left: the ended jobs, windows,
-- leases and tick misses its snapshot showed due that it left for a change
-- since, to the next pass; always 0 under READ COMMITTED).
create function jobs.maintain(
  retention interval    default '7 days',
  archive   boolean     default false,
  max_rows  integer     default 100000,
  now       timestamptz default null,
  prune_run_log boolean default true
) returns jsonb language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := jobs.clock(maintain.now);
  v_ticks integer;
  v_removal record;  -- jobs.remove_ended's removed, archived
  v_windowing record;  -- jobs.delete_ended_windows's windows, left_rows
  v_expiry record;  -- jobs.expire_due's leases, waiting, left_rows
  v_lost text[];  -- bounded queues whose ticks another call waits for (jobs.tick_queues)
  v_misses integer;
  v_misses_left integer := 0;
  v_prune text;
  v_detail text;
begin
  perform jobs.check_retention(maintain.retention);
  if maintain.max_rows is null or maintain.max_rows < 1 or maintain.max_rows > 10000000 then
    perform jobs.raise_invalid('PDC03', 'max_rows', format('must be between 1 and 10000000, got %s', maintain.max_rows));
  end if;
  -- A bad pgdrain.tick_wait_ms (or tick_budget) is refused on every pass
  -- (PDC03 naming it), not only once a bounded queue's tick is due; only
  -- where a claim reads it (a drains' schedule into a bounded queue): else
  -- it is read by nothing, and refusing it stopped all maintenance.
  if exists (select from jobs.recurring s join jobs.queue q on q.name = coalesce(s.queue, 'default')
             where s.runner = 'drains' and q.max_size is not null) then
    perform jobs.tick_wait_bound('0');
  end if;
  -- Ticks' queue locks first, before expiry's serial-key locks, as jobs.claim_json takes them;
  -- the ticks (their rows locked) after the expiry, as a claim's (jobs.publish_ticks says why).
  v_lost := (jobs.tick_queues(v_now, true)).lost;

  -- Retention before expiry: a job expiry ends is dated when its lease ran
  -- out (often past a short retention), and would otherwise be deleted by
  -- this very pass, never seen as a dead letter.
  v_removal := jobs.remove_ended(v_now - maintain.retention, maintain.archive, maintain.max_rows);
  v_windowing := jobs.delete_ended_windows(v_now, maintain.max_rows);
  v_expiry := jobs.expire_due(maintain.max_rows, v_now, null);
  v_ticks := jobs.publish_ticks(v_now, v_lost);
  -- Misses of claims' tick waits (jobs.tick_miss, sql/0021; after this pass's ticks) whose
  -- tick is no longer the schedule's next_run_at (published, moved on, the
  -- schedule changed or removed): nothing reads them. At most max_rows.
  -- Outside READ COMMITTED, one another call removed after this snapshot
  -- (another pass, jobs.schedule) raises 40001: not a failed pass; those
  -- still there are deleted apart (sql/0041), those not reached left, in "left".
  begin
    delete from jobs.tick_miss m using (
      select o.schedule, o.due from jobs.tick_miss o
      where not exists (select from jobs.recurring s where s.name = o.schedule and s.next_run_at = o.due)
      limit maintain.max_rows for update skip locked) old
    where m.schedule = old.schedule and m.due = old.due;
    get diagnostics v_misses = row_count;
  exception when serialization_failure then
    get stacked diagnostics v_detail = pg_exception_detail;
    if jobs.transaction_conflict(v_detail) then raise; end if;
    select d.misses, d.left_rows into v_misses, v_misses_left from jobs.delete_misses_apart(array(select o.ctid from jobs.tick_miss o
      where not exists (select from jobs.recurring s where s.name = o.schedule and s.next_run_at = o.due)
      limit maintain.max_rows), maintain.max_rows) d;
  end;

  -- Not for a role without USAGE on schema cron (managed PostgreSQL): the
  -- rest of the pass must not fail for it.
  -- It reads all of pg_cron's log (no index on it): run_maintenance asks it of its first pass only.
  -- Outside READ COMMITTED, rows another pass deleted after this snapshot raise 40001: the prune
  -- undone, left to that pass and the next run's first; not in "left" (later passes do not prune).
  if maintain.prune_run_log and jobs.has_pg_cron() and jobs.pg_cron_lacks(true) is null then
    v_prune := 'delete from cron.job_run_details d using cron.job j
                where d.jobid = j.jobid and j.jobname like ''pgdrain:%'' and d.end_time < $1';
    if jobs.read_committed() then
      execute v_prune using v_now - maintain.retention;
    else
      begin
        execute v_prune using v_now - maintain.retention;
      exception when serialization_failure then
        get stacked diagnostics v_detail = pg_exception_detail;
        if jobs.transaction_conflict(v_detail) then raise; end if;
      end;
    end if;
  end if;
  return jsonb_build_object('expired', v_expiry.leases + v_expiry.waiting, 'ticks', v_ticks,
                            'deleted', v_removal.removed - v_removal.archived, 'archived', v_removal.archived,
                            'windows', v_windowing.windows, 'misses', v_misses,
                            'left', v_removal.left_rows + v_windowing.left_rows + v_expiry.left_rows + v_misses_left);
end $$;

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
