-- pgdrain 0023: running recurring jobs: every due one (drains call
-- jobs.publish_due_schedules; pg_cron calls jobs.run_schedule, sql/0048; a
-- bounded queue's lock is waited for before, jobs.tick_queues, sql/0040).

-- Whether a 40001's detail (pg_exception_detail) is SERIALIZABLE's
-- read/write-dependency failure ('Reason code: …', never translated): the
-- whole transaction's (every write of a pivot fails so), to be raised, not a
-- row changed since the snapshot, which a block may leave to its changer.
create function jobs.transaction_conflict(p_detail text)
returns boolean language sql immutable as $$ select p_detail like 'Reason code:%' $$;

-- Publishes one job for each drain-run schedule whose tick is due and moves
-- its next_run_at past `now`. Ticks missed while nothing claimed become one
-- job (scheduled at the first of them), or none for overlap 'skip' while a
-- job of the schedule is active (one skipped tick); with backfill, one job
-- per tick of the window (at most 100 a call); a replace tick whose dedupe
-- key another transaction holds stays due (jobs.dedupe_key_busy), as does
-- any tick whose publish would wait on a lock (but jobs.schedule's own; a
-- bounded queue's lock is taken before, jobs.tick_queues). Returns the ticks
-- that wrote a job (not those a keep answered with its holder).
-- The searches for the schedules' next ticks share one tick's budget
-- (sql/0019: jobs.max_tick_steps() steps), so this call's searches cost at
-- most that: once it is spent the schedules left stay due, and the next
-- call publishes them (each call starts with the one due longest). A
-- schedule whose next tick cannot be computed within a whole budget (with
-- backfill: at all) is stopped (jobs.tick_or_stop): its due tick published
-- (or skipped) as any, then next_run_at null, why in last_error, until
-- jobs.schedule is called for it again. Other errors: recorded, retried.
-- FOR UPDATE SKIP LOCKED: of many drains calling this at once one takes a
-- due row, the others skip it or, once it has committed, find it no longer
-- due: each tick is published once. With none due, one index probe.
-- Its bounded queues' locks first (jobs.tick_queues; not in jobs.schedule's
-- call: it holds its row and waits on its tick, and publishes that tick
-- alone: other schedules' rows, locked to its commit, closed cycles with
-- app transactions), then the ticks (jobs.publish_ticks).
create function jobs.publish_due_schedules(now timestamptz default null)
returns integer language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := jobs.clock(publish_due_schedules.now);
begin
  return jobs.publish_ticks(v_now, case when coalesce(current_setting('pgdrain.tick_wait', true), '') = ''
                                        then (jobs.tick_queues(v_now, true)).lost else '{}' end);
end $$;

-- jobs.publish_due_schedules' ticks, its bounded queues' locks taken:
-- p_lost, the queues whose rows are left alone (jobs.tick_queues' lost).
-- Called apart by a claim (jobs.pick) and jobs.maintain after their
-- settle and expiry, which wait for serial keys: with a schedule's row
-- locked here (to commit), an app transaction holding such a key that then
-- changed the schedule (jobs.schedule waits for the row) closed a cycle
-- (40P01). Here a tick waits for no lock (but jobs.schedule's own, below).
create function jobs.publish_ticks(p_now timestamptz, p_lost text[])
returns integer language plpgsql as $$
declare
  c_stopped constant text := 'stopped until jobs.schedule is called for it again: ';  -- jobs.stopped_schedules
  v_now timestamptz := p_now;
  r jobs.recurring;
  v_id bigint;
  v_count integer := 0;
  v_tick timestamptz;
  v_from timestamptz;
  v_last timestamptz;
  v_n integer;
  v_made integer;  -- of them, the ticks that wrote a job
  v_lock_timeout text;
  v_budget text := current_setting('pgdrain.tick_steps', true);  -- a caller's, given back at the end
  v_left bigint;  -- the steps the schedules before this one left
  v_kept bigint;  -- and those this one's searches left, so far
  v_next timestamptz;
  v_stop text;  -- why its next tick cannot be computed within a budget (jobs.tick_or_stop): stopped
  v_job bigint;  -- a backfill tick's job, its publish not yet kept
  v_error text;
  v_hint text;
  v_detail text;
  v_out boolean;  -- a search ran out of steps
  v_due boolean;  -- a tick whose publish and next failed, left due
  v_wait boolean;  -- the tick of the schedule jobs.schedule is changing: its publish waits on locks
  v_nowait boolean;  -- this tick's publish takes only locks free at once (lock_timeout 1ms), else left due
  v_lost text[] := coalesce(p_lost, '{}');  -- bounded queues whose lock another call waits for: their rows left alone
  -- jobs.schedule's call: its own schedule's row only. Others' rows, locked to the app
  -- transaction's commit, closed a cycle when it went on to wait for a key whose holder
  -- then called jobs.schedule for one of them (40P01); the drains publish their ticks.
  v_only text := nullif(current_setting('pgdrain.tick_wait', true), '');
  v_rc boolean := jobs.read_committed();
  v_mine text[];  -- outside READ COMMITTED: the due rows locked before the loop (null: any)
begin
  perform jobs.tick_steps_give(jobs.max_tick_steps());
  -- REPEATABLE READ or SERIALIZABLE (an app's call, or every drain's under such a default):
  -- locking a row another call changed after the snapshot raises 40001, which failed the
  -- caller for another schedule's state. Its due rows are locked first (jobs.lock_due_ticks:
  -- such a row is left to that call, still due or its tick), and the loop takes only those.
  if not v_rc then v_mine := jobs.lock_due_ticks(v_now, v_lost, v_only); end if;
  for r in
    select * from jobs.recurring s
    where s.runner = 'drains' and s.next_run_at <= v_now and coalesce(s.queue, 'default') <> all(v_lost)
      and (v_only is null or s.name = v_only) and (v_mine is null or s.name = any(v_mine))
    order by s.next_run_at
    for update skip locked
  loop
    v_left := jobs.tick_steps_left();
    exit when v_left <= 0;  -- spent: the schedules left stay due
    v_kept := v_left;
    v_stop := null;
    v_wait := coalesce(r.name = current_setting('pgdrain.tick_wait', true), false);
    -- A retry (next_run_at a minute after a tick whose publish failed) is that tick's.
    r.next_run_at := coalesce(r.retry_tick, r.next_run_at);
    begin
      if r.overlap = 'skip' and exists (select from jobs.job_queue q where q.dedupe_key = jobs.schedule_key(r)) then
        select t.next_at, t.stop into v_next, v_stop from jobs.tick_or_stop(r.cron, v_now, r.tz) t;
        update jobs.recurring s
        set next_run_at = v_next, skipped_ticks = s.skipped_ticks + 1, last_skipped_at = r.next_run_at,
            retry_tick = null,
            last_error = coalesce(c_stopped || v_stop || ' at ' || v_now, s.last_error)
        where s.name = r.name;
        continue;
      end if;
      -- keep_waiting takes the replace's locks too (jobs.publish).
      if r.dedupe_mode in ('keep_waiting', 'replace', 'replace_keep_time') and jobs.dedupe_key_busy(r.dedupe_key) then
        continue;  -- still due: the next claim publishes it
      end if;
      -- A tick publishes only with the locks it needs free at once (lock_timeout
      -- 1ms; 55P03 below leaves it due for the next claim): its bounded
      -- queue's was taken before the loop, before any row (jobs.tick_queues),
      -- or that queue's rows were left alone (v_lost), or it is left due. A
      -- wait here holds this row and the locks of the ticks before it: for a
      -- key's uncommitted publish (for as long as it stays open; ticks take
      -- keys in tick order, not the keys' lock order: two claims crossing two
      -- keys deadlocked), for a queue made bounded after tick_queues looked,
      -- or in a claim carrying outcomes (the leases of the jobs it acks
      -- passing). jobs.schedule's call (v_wait) waits for its own tick: it
      -- drops a tick left due.
      v_nowait := not v_wait;
      v_lock_timeout := current_setting('lock_timeout');
      if v_nowait then
        perform set_config('lock_timeout', '1ms', true);
      end if;
      if r.backfill is null then
        v_id := jobs.publish(task => r.task, body => r.body, scheduled_at => r.next_run_at, timeout_seconds => r.timeout,
                             priority => r.priority, max_retries => r.max_retries, now => v_now, queue => r.queue,
                             dedupe_key => jobs.schedule_key(r), dedupe_mode => r.dedupe_mode, serial_key => r.serial_key,
                             group_id => r.group_id, group_tier => r.group_tier,
                             attributes => jobs.schedule_attributes(r.name, r.next_run_at));
        if v_nowait then
          perform set_config('lock_timeout', v_lock_timeout, true);
        end if;
        select t.next_at, t.stop into v_next, v_stop from jobs.tick_or_stop(r.cron, v_now, r.tz) t;
        update jobs.recurring s
        set next_run_at = v_next, last_run_at = r.next_run_at, last_job_id = v_id, retry_tick = null,
            last_error = c_stopped || v_stop || ' at ' || v_now
        where s.name = r.name;
        v_count := v_count + case when jobs.schedule_key(r) is null then 1 else jobs.tick_made(v_id, r.name, r.next_run_at) end;
        continue;
      end if;
      -- Backfill: ticks before the window are dropped (the run of them
      -- counted as one skipped tick, as overlap 'skip' counts a run), then
      -- one job per tick, oldest first, at most 100 per call, and once one
      -- is published, no more once its searches took half a budget (the
      -- schedules due after it get steps this call): next_run_at stays at
      -- the first tick not published, which the next call goes on from. A
      -- tick whose next fails (a rule this pgdrain does not parse) is
      -- published, then the schedule stopped: no next tick to go on from.
      v_tick := r.next_run_at;
      v_from := v_now - make_interval(secs => r.backfill::float8);
      if v_tick < v_from then
        select t.next_at, t.stop into v_tick, v_stop from jobs.tick_or_stop(r.cron, v_from - interval '1 microsecond', r.tz, true) t;
        v_kept := jobs.tick_steps_left();
      end if;
      v_last := null;
      v_n := 0;
      v_made := 0;
      while v_stop is null and v_tick <= v_now and v_n < 100
            and not (v_n > 0 and v_left - jobs.tick_steps_left() >= jobs.max_tick_steps() / 2) loop
        -- Each search of a COUNT rule counts from DTSTART, so many ticks can
        -- cost more than the budget that pays for any one: out of a budget
        -- spent in part, this tick's publish is undone and the next call
        -- goes on from it (the ticks before it stay published).
        begin
          v_job := jobs.publish(task => r.task, body => r.body, scheduled_at => v_tick, timeout_seconds => r.timeout,
                                priority => r.priority, max_retries => r.max_retries, now => v_now, queue => r.queue,
                                dedupe_key => jobs.schedule_key(r), dedupe_mode => r.dedupe_mode, serial_key => r.serial_key,
                                group_id => r.group_id, group_tier => r.group_tier,
                                attributes => jobs.schedule_attributes(r.name, v_tick));
          select t.next_at, t.stop into v_next, v_stop from jobs.tick_or_stop(r.cron, v_tick, r.tz, true) t;
        exception when others then
          get stacked diagnostics v_hint = pg_exception_hint;
          if sqlstate = 'PDC01' and v_hint = jobs.tick_steps_hint() then
            perform jobs.tick_steps_give(0);
            v_kept := 0;
            exit;
          end if;
          raise;
        end;
        v_kept := jobs.tick_steps_left();
        v_id := v_job;
        v_last := v_tick;
        v_n := v_n + 1;
        v_made := v_made + case when jobs.schedule_key(r) is null then 1 else jobs.tick_made(v_job, r.name, v_tick) end;
        v_tick := v_next;
      end loop;
      if v_nowait then
        perform set_config('lock_timeout', v_lock_timeout, true);
      end if;
      update jobs.recurring s
      set next_run_at = v_tick, last_run_at = coalesce(v_last, s.last_run_at), retry_tick = null,
          last_job_id = case when v_n = 0 then s.last_job_id else v_id end,
          last_error = case when v_stop is not null then c_stopped || v_stop || ' at ' || v_now
                            when v_n = 0 then s.last_error end,
          skipped_ticks = s.skipped_ticks + (r.next_run_at < v_from)::integer,
          last_skipped_at = case when r.next_run_at < v_from then r.next_run_at else s.last_skipped_at end
      where s.name = r.name;
      v_count := v_count + v_made;  -- here: the block's rollback on an error would not undo a count
    exception when others then
      -- The rollback gave back the steps its searches took (out of steps:
      -- the whole rest of the budget): taken again.
      get stacked diagnostics v_hint = pg_exception_hint, v_detail = pg_exception_detail;
      -- SERIALIZABLE's read/write dependencies (detail 'Reason code: …'): the
      -- transaction's, not this tick's (every write of a pivot fails so): it
      -- fails whole, its ticks due (a drain sends it again).
      if sqlstate = '40001' and jobs.transaction_conflict(v_detail) then raise; end if;
      v_out := sqlstate = 'PDC01' and v_hint = jobs.tick_steps_hint();
      perform jobs.tick_steps_give(case when v_out then 0 else v_kept end);
      -- A tick that would have waited (lock_timeout set above; the
      -- subtransaction's rollback restored it): still due, the next claim
      -- publishes it.
      if sqlstate = '55P03' and v_nowait then
        continue;
      end if;
      -- Outside READ COMMITTED, a key its publish takes changed after the snapshot (40001):
      -- still due, the next call publishes it (jobs.schedule's own tick records the error).
      if sqlstate = '40001' and not v_rc and not v_wait then
        continue;
      end if;
      -- Out of a budget the schedules before it spent in part
      -- (jobs.tick_or_stop raised): still due, the first of the next call's
      -- (the rest wait too, the budget spent).
      exit when v_out and v_left < jobs.max_tick_steps();
      v_error := format('%s (SQLSTATE %s) at %s', sqlerrm, sqlstate, v_now);
      -- A schedule that cannot publish (its queue was dropped, it is full)
      -- or whose next tick fails but for the budget (a rule a later pgdrain
      -- no longer parses) must not stop the claim that called us: record
      -- why, try next minute (its publish undone; published as the tick
      -- that failed, retry_tick). With backfill (its
      -- publish failed), at the next tick (a job's scheduled_at is its
      -- tick), the ticks not published counted as one skipped; that tick
      -- out of a whole budget, stopped; failing but for the budget, none
      -- to go to: its tick stays due for the next claim.
      v_stop := null;
      v_due := false;
      v_next := case when r.backfill is null then date_trunc('minute', v_now) + interval '1 minute' end;
      if r.backfill is not null then
        begin
          select t.next_at, t.stop into v_next, v_stop from jobs.tick_or_stop(r.cron, v_now, r.tz) t;
        exception when others then
          get stacked diagnostics v_hint = pg_exception_hint;
          v_out := sqlstate = 'PDC01' and v_hint = jobs.tick_steps_hint();
          perform jobs.tick_steps_give(case when v_out then 0 else v_kept end);
          exit when v_out and v_left < jobs.max_tick_steps();
          -- Out of what its own searches left (its window's first tick, the
          -- ticks before the one that failed): no proof it needs more than a
          -- budget, so not stopped, nor that error recorded. Due at the tick
          -- that failed (those before it dropped, counted): the next claim
          -- it heads goes on from it, its searches with a whole budget.
          v_stop := case when not v_out then format('%s (SQLSTATE %s)', sqlerrm, sqlstate) end;
          v_due := not v_out;
          v_next := case when v_out then coalesce(v_tick, r.next_run_at) else r.next_run_at end;
        end;
        v_error := v_error || coalesce('; its next tick: ' || v_stop, '');
      end if;
      update jobs.recurring s
      set next_run_at = v_next,
          retry_tick = case when r.backfill is null then r.next_run_at end,
          skipped_ticks = s.skipped_ticks + (r.backfill is not null and v_next is distinct from r.next_run_at)::integer,
          last_skipped_at = case when r.backfill is not null and v_next is distinct from r.next_run_at then r.next_run_at
                                 else s.last_skipped_at end,
          last_error = case when v_stop is not null and not v_due then c_stopped else '' end || v_error
      where s.name = r.name;
    end;
  end loop;
  perform set_config('pgdrain.tick_steps', coalesce(v_budget, ''), true);
  return v_count;
end $$;

-- A claim's ticks (jobs.pick, a tick due; they wait for no lock), then what is left of its
-- budget p_budget (seconds, null: any): the claimed jobs' leases start after them
-- (jobs.claim_json, p_clock: no now given), so a job that fits only counting from p_now
-- would run past the drain's deadline. Counted from p_now, as claim_json's waitedMs.
create function jobs.pick_ticks(p_now timestamptz, p_lost text[], p_budget numeric, p_clock boolean)
returns numeric language plpgsql as $$
begin
  perform jobs.publish_ticks(p_now, p_lost);
  if p_budget is null or not p_clock then return p_budget; end if;
  return greatest(0, p_budget - date_part('epoch', clock_timestamp() - p_now)::numeric);
end $$;
