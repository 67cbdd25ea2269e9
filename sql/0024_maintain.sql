-- pgdrain 0024: maintenance: expiring leases, archiving and deleting old
-- jobs, one pass (jobs.maintain). Run until caught up and on a schedule
-- (jobs.run_maintenance, jobs.schedule_maintenance): sql/0047.

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
