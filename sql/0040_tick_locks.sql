-- pgdrain 0040: ticks into bounded queues: waiting for their publishers'
-- lock (a claim's, jobs.tick_queues), and taking it before a schedule's row
-- (pg_cron's jobs.run_schedule, jobs.schedule: jobs.lock_schedule).

-- How long a claim waits for a bounded queue's publishers' lock for its tick
-- (jobs.tick_queues), the tick p_overdue past the first claim that failed to
-- take it (0: none did): pgdrain.tick_wait_ms
-- (default 500 ms; '2s' as lock_timeout takes it, jobs.setting_ms), longer
-- as claims keep failing (a tenth of how long, up to ten times that; a drain's
-- claim: a tenth of its budget at most), within the role's lock_timeout and
-- half its statement_timeout. Waiters are served in turn: a tick gets the lock between one publisher's holds at once, and between
-- several overlapping ones' once its wait outgrows their queue. Unbounded,
-- an app transaction holding the lock held up a drain of any queue past its
-- deadline, and the jobs its claim took lost the wait from their timeouts.
-- pgdrain.tick_budget: the claim's max_timeout, set by jobs.claim_json for
-- its call only; a value that is no number (set by hand) is refused, PDC03
-- naming it (jobs.maintain checks both where a claim reads them).
create function jobs.tick_wait_bound(p_lock_timeout text, p_overdue interval default interval '0')
returns text language plpgsql stable as $$
declare
  v_ms bigint := greatest(coalesce(jobs.setting_ms('pgdrain.tick_wait_ms'), 500), 1);  -- '2s', '500ms', 500
  v_budget text := nullif(current_setting('pgdrain.tick_budget', true), '');
begin
  -- What numeric takes, but an exponent past 4 digits (that may overflow it).
  if v_budget !~ '^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,4})?\s*$' and v_budget !~* '^\s*(nan|[+-]?inf|[+-]?infinity)\s*$' then
    perform jobs.raise_invalid('PDC03', 'pgdrain.tick_budget', format(
      'must be a number of seconds or empty: a claim sets it to its max_timeout for its own call, got %s: RESET it (the wait''s setting is pgdrain.tick_wait_ms)',
      left(quote_literal(v_budget), 80)));
  end if;
  v_ms := least(greatest(v_ms, (extract(epoch from p_overdue) * 100)::bigint), v_ms * 10, 2147483647);
  -- A drain's claim: a tenth of its budget at most (jobs.claim_json); cast
  -- once within v_ms (least takes v_ms over a NaN, Infinity or 1e17 budget).
  v_ms := least(v_ms, greatest(1, coalesce(v_budget::numeric * 100, v_ms)));
  -- Half of statement_timeout at most, the other half the claim's: cut short
  -- by it, the wait failed the whole claim (57014), not the tick alone.
  v_ms := least(v_ms, greatest(1, coalesce(extract(epoch from nullif(current_setting('statement_timeout')::interval, '0')) * 500, v_ms))::bigint);
  if p_lock_timeout::interval > interval '0' and p_lock_timeout::interval < make_interval(secs => v_ms / 1000.0) then
    return p_lock_timeout;
  end if;
  return v_ms || 'ms';
end $$;

-- What jobs.tick_wait_bound refuses in this session's pgdrain.tick_wait_ms
-- or pgdrain.tick_budget (its role's, its database's or its own): the
-- error's message (PDC03's, naming the setting and the rule), else null.
-- For `pgdrain stats` and the dashboard (one call in the statement they
-- make): a claim that would wait for a bounded queue's tick fails on it.
create function jobs.tick_settings_error()
returns text language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
begin
  perform jobs.tick_wait_bound('0');
  return null;
exception when sqlstate 'PDC03' then
  return sqlerrm;
end $$;

-- Whether schedule r's tick publishes nothing: overlap 'skip' and a job of
-- it still active (its dedupe key held). Such a tick takes no queue's lock.
-- (PL/pgSQL, not SQL: its plan is kept for the session; as SQL, not
-- inlined for its subquery, it was planned at every call, 0.3 ms.)
create function jobs.skips_tick(r jobs.recurring)
returns boolean language plpgsql stable as $$
begin
  return r.overlap = 'skip' and exists (select from jobs.job_queue q where q.dedupe_key = jobs.schedule_key(r));
end $$;

-- The bounded queues with a tick due at p_now that would publish (not one
-- overlap 'skip' skips: jobs.skips_tick), oldest first (a keyed one's
-- too: this wait holds no key, its keys are taken after, only free). One
-- call a queue (736045, to commit) waits for its publishers' locks (jobs.admit)
-- before publish_due_schedules locks a row (waiting with one, jobs.schedule
-- in an app transaction holding that lock closed a cycle; not waiting, a tick
-- starved): p_wait, the first it wins (waited; '': none won or the wait
-- ended, the tick left due, its jobs.tick_miss row added if none; null: none
-- due). Its two locks share one bound (jobs.tick_wait_bound): the second
-- waits for what the first left of it. lost: queues another call
-- waits for: their rows, locked here, the waiter skipped (SKIP LOCKED).
create function jobs.tick_queues(p_now timestamptz, p_wait boolean, out waited text, out lost text[])
returns record language plpgsql as $$
declare
  q text;
  v_due timestamptz;
  v_name text;  -- the schedule of that tick
  v_missed timestamptz;  -- its jobs.tick_miss row's missed_at
  v_timeout text;
  v_bound text;
  v_until timestamptz;  -- when the wait's bound ends
  v_left bigint;  -- ms left of it after the first lock
begin
  lost := '{}';
  -- None waited for outside READ COMMITTED: the snapshot, older than the wait, would miss what
  -- the holder committed (its tick publishes only with the locks free at once, jobs.publish_ticks).
  if not jobs.read_committed() then return; end if;
  -- From the bounded queues, each one probe (recurring_queue_due_idx): not a
  -- read of every due row, which a claim paid while any tick was due.
  for q, v_due, v_name in select x.name, d.due, d.name from jobs.queue x
           cross join lateral (select s.next_run_at as due, s.name from jobs.recurring s
                               where coalesce(s.queue, 'default') = x.name and s.runner = 'drains' and s.next_run_at <= p_now
                                 and not (s.overlap = 'skip' and exists (select from jobs.job_queue j
                                                                         where j.dedupe_key = jobs.schedule_key(s)))  -- jobs.skips_tick
                               order by s.next_run_at limit 1) d
           where x.max_size is not null order by d.due loop
    if p_wait and waited is null and pg_try_advisory_xact_lock(736045, hashtext(q)) then
      waited := q;
      v_timeout := current_setting('lock_timeout');
      -- Overdue from the first claim that failed to publish this tick (not
      -- from the tick: the first claim after a quiet spell, or of a schedule
      -- started in the past, waits the setting, not ten times it).
      select m.missed_at into v_missed from jobs.tick_miss m where m.schedule = v_name and m.due = v_due;
      v_bound := jobs.tick_wait_bound(v_timeout, p_now - coalesce(v_missed, p_now));
      v_until := clock_timestamp() + v_bound::interval;
      perform set_config('lock_timeout', v_bound, true);
      begin
        perform pg_advisory_xact_lock_shared(736041, hashtext(q));
        v_left := floor(1000 * extract(epoch from v_until - clock_timestamp()));
        if v_left >= 1 then
          perform set_config('lock_timeout', v_left || 'ms', true);
          perform pg_advisory_xact_lock(736037, hashtext(q));
        elsif not pg_try_advisory_xact_lock(736037, hashtext(q)) then
          raise sqlstate '55P03';  -- the bound spent: the second lock only if free
        end if;
      exception when lock_not_available or deadlock_detected then
        waited := '';
        lost := lost || q;
      end;
      if waited = '' and v_missed is null then  -- the first failure for this tick: its wait grows from now
        -- Waiting for no one: a transaction adding or deleting the same row
        -- (a claim of a schedule since moved, jobs.maintain) keeps it.
        perform set_config('lock_timeout', '1ms', true);
        begin
          insert into jobs.tick_miss (schedule, due, missed_at) values (v_name, v_due, p_now) on conflict do nothing;
        exception when lock_not_available then null;
        end;
      end if;
      perform set_config('lock_timeout', v_timeout, true);
    elsif p_wait and waited is null then
      lost := lost || q;
    else
      begin  -- a probe: the rollback lets it go (a session lock a cancel cut short would stay)
        if not pg_try_advisory_xact_lock_shared(736045, hashtext(q)) then
          lost := lost || q;
        end if;
        raise sqlstate 'PDA96';
      exception when sqlstate 'PDA96' then null;
      end;
    end if;
  end loop;
  waited := coalesce(waited, case when cardinality(lost) > 0 then '' end);
end $$;

-- The bounded queue whose publishers' lock schedule r's tick takes before
-- its row, or null: none bounded, nothing to publish (p_skip: jobs.skips_tick),
-- or no tick: p_cron null, pg_cron's (jobs.run_schedule: a pg_cron
-- schedule's); else jobs.schedule's, a drains' tick due at p_now that a new
-- runner (p_runner), expression (p_cron) or zone (p_tz) publishes first.
-- No row (r all null: a new or removed schedule) or no next_run_at: none
-- (as null, the test let 'default' through: lock_schedule looped for good).
create function jobs.tick_lock_queue(r jobs.recurring, p_skip boolean, p_now timestamptz, p_cron text,
                                     p_tz text, p_runner text)
returns text language plpgsql stable as $$
begin
  if p_skip or not coalesce(case when p_cron is null then r.runner = 'pg_cron'
                                 else r.runner = 'drains' and r.next_run_at <= p_now
                                      and (p_runner <> 'drains' or r.cron <> p_cron or r.tz is distinct from p_tz) end, false) then
    return null;
  end if;
  return (select q.name from jobs.queue q where q.name = coalesce(r.queue, 'default') and q.max_size is not null);
end $$;

-- Locks schedule p_name's row (FOR UPDATE), having taken first the
-- publishers' locks of the bounded queue its tick publishes into
-- (jobs.tick_lock_queue; arguments as it takes them), the order a publish
-- and a claim's tick take them: with the row held, a publish waiting for
-- that lock closed a cycle with an app transaction that published to the
-- queue, then changed or removed the schedule (40P01). The queue is read
-- before the row is locked, and again after: a schedule moved to another
-- queue in between (jobs.schedule), or whose skipped tick now publishes
-- (its job ended), lets the row go (a subtransaction's rollback) and starts
-- again from that queue. Returns whether its tick publishes nothing
-- (jobs.skips_tick, as read with the row locked: the caller skips it, its
-- queue not locked); false when there is no such schedule.
create function jobs.lock_schedule(p_name text, p_now timestamptz, p_cron text default null,
                                   p_tz text default null, p_runner text default null)
returns boolean language plpgsql as $$
declare
  r jobs.recurring;
  v_queue text;  -- the queue whose locks were taken (null: none)
  v_need text;   -- the queue the row, locked, needs
  v_skip boolean;
begin
  loop
    select jobs.tick_lock_queue(s, jobs.skips_tick(s), p_now, p_cron, p_tz, p_runner) into v_queue
    from jobs.recurring s where s.name = p_name;
    begin
      perform pg_advisory_xact_lock_shared(736041, hashtext(v_queue)), pg_advisory_xact_lock(736037, hashtext(v_queue))
      where v_queue is not null;
      select * into r from jobs.recurring s where s.name = p_name for update;
      v_skip := found and jobs.skips_tick(r);
      v_need := jobs.tick_lock_queue(r, v_skip, p_now, p_cron, p_tz, p_runner);
      exit when v_need is null or v_need = v_queue;
      raise sqlstate 'PDA97';
    exception when sqlstate 'PDA97' then null;  -- the row and that queue's locks let go: again
    end;
  end loop;
  return v_skip;
end $$;

-- jobs.publish_ticks outside READ COMMITTED: locks the drains' due rows (as
-- its loop's query selects them: p_lost's queues left alone; p_only, that
-- schedule's alone) and returns their names. A row another call changed
-- after this snapshot (ticked, or changed by jobs.schedule) raises 40001 on
-- its lock: then each row is locked in its own block, and that one left to
-- the call that changed it (still due or its tick, as the next call sees).
-- SERIALIZABLE's read/write-dependency 40001 (detail 'Reason code: …') is
-- no changed row but the transaction's: raised, it fails whole (sql/0041).
-- All at once first, as the READ COMMITTED loop's fetch (10 rows a fetch)
-- locks them: of many drains at once, one takes them all and publishes
-- alone. One at a time, drains publishing side by side waited on each
-- other's job_queue inserts (lock_timeout 1ms, the tick left due).
create function jobs.lock_due_ticks(p_now timestamptz, p_lost text[], p_only text)
returns text[] language plpgsql as $$
declare
  v_names text[];
  v_name text;
  v_detail text;
begin
  begin
    select coalesce(array_agg(d.name), '{}') into v_names from (
      select s.name from jobs.recurring s
      where s.runner = 'drains' and s.next_run_at <= p_now and coalesce(s.queue, 'default') <> all(p_lost)
        and (p_only is null or s.name = p_only)
      order by s.next_run_at
      for update skip locked) d;
    return v_names;
  exception when serialization_failure then
    get stacked diagnostics v_detail = pg_exception_detail;
    if jobs.transaction_conflict(v_detail) then raise; end if;
    v_names := '{}';
  end;
  for v_name in
    select s.name from jobs.recurring s
    where s.runner = 'drains' and s.next_run_at <= p_now and coalesce(s.queue, 'default') <> all(p_lost)
      and (p_only is null or s.name = p_only)
    order by s.next_run_at
  loop
    begin
      perform from jobs.recurring s where s.name = v_name for update skip locked;
      if found then v_names := v_names || v_name; end if;
    exception when serialization_failure then  -- changed since this snapshot: left to that call
      get stacked diagnostics v_detail = pg_exception_detail;
      if jobs.transaction_conflict(v_detail) then raise; end if;
    end;
  end loop;
  return v_names;
end $$;

-- jobs.maintain's delete of tick misses after its 40001 (a miss another
-- call deleted after this snapshot): those of p_misses (ctids, as listed)
-- still there, locked apart (jobs.lockable_apart, sql/0041's, called only
-- once it exists), are deleted. A miss is only ever inserted and deleted:
-- one changed since is gone, not left (but when p_max were listed: more may
-- be behind it); left are those not reached, and all if the delete meets
-- another (one a session held, deleted since): undone, to the next pass.
create function jobs.delete_misses_apart(p_misses tid[], p_max integer, out misses integer, out left_rows integer)
language plpgsql as $$
declare
  v_detail text;
begin
  select l.p_keys, l.left_rows - case when cardinality(p_misses) < p_max then l.changed_rows else 0 end into p_misses, left_rows
  from jobs.lockable_apart('jobs.tick_miss', 'ctid', p_misses) l;
  begin
    delete from jobs.tick_miss m
    where m.ctid in (select o.ctid from jobs.tick_miss o where o.ctid = any(p_misses) for update skip locked);
    get diagnostics misses = row_count;
  exception when serialization_failure then
    get stacked diagnostics v_detail = pg_exception_detail;
    if jobs.transaction_conflict(v_detail) then raise; end if;
    misses := 0;
    left_rows := left_rows + cardinality(p_misses);
  end;
end $$;
