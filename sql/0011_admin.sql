-- pgdrain 0011: cancelling a job; changing queued jobs as a set: cancel,
-- reschedule or fail many at once; and redrive, which puts dead letters (and,
-- by id, cancelled jobs) back.
--
-- Each function first locks the jobs it may change (jobs.lock_jobs), and
-- only then reads their state and changes them, in statements of their own:
-- a job claimed or settled before the lock is changed as it is under the
-- lock, never half. Then, as jobs.cancel: dependants of jobs ended here end
-- as cancelled, and a serial key's lock is taken only for a key whose head
-- this call ended, while holding that head's row.

-- Serial-key lock volume. Ending a key's head takes the key's lock until
-- commit (jobs.after_end hands the key on), one entry of PostgreSQL's shared
-- lock table each (jobs.max_serial_keys). So an admin call ends at most 500
-- heads itself (those past them: jobs.heads_past_bound), and its cascade of
-- dependants takes at most 500 keys less those (jobs.ending_keys, which
-- jobs.lock_jobs tries; jobs.after_end, given them as p_keys, defers the
-- heads of other keys to the next claims' expiry).

-- Of the waiting jobs among p_ids, the serial-key heads past the first
-- jobs.max_serial_keys(): those that ran before (attempt > 0, a retry
-- pending) come first, as only a job that never ran can be deferred
-- (jobs.cancel_bulk), then job_id order.
create function jobs.heads_past_bound(p_ids bigint[])
returns bigint[] language sql stable as $$
  select coalesce(array_agg(h.job_id), '{}')
  from (select q.job_id, row_number() over (order by q.attempt = 0, q.job_id) as k
        from jobs.job_queue q
        where q.job_id = any(p_ids) and q.lease_until is null and q.serial_key is not null and not q.serial_wait) h
  where h.k > jobs.max_serial_keys()
$$;

-- The serial-key heads among the dependants of p_ended that the cascade
-- of an admin call ends at once, with p_budget keys to take; jobs.after_end
-- defers the others (given these heads' keys as p_keys). Level by level
-- (the dependants of the jobs the level before ended), the first heads in
-- job_id order while the budget lasts, as jobs.after_end's own budget; the
-- heads past it are deferred and cascade no further, the other dependants
-- end and do. (A job waiting behind a head that ends here becomes its
-- key's head meanwhile: jobs.after_end ends it too, its key being held.)
-- p_ended are still in jobs.job_queue here: left out as dependants.
create function jobs.cascade_heads(p_ended bigint[], p_budget integer)
returns bigint[] language plpgsql stable as $$
declare
  v_level bigint[] := p_ended;
  v_done bigint[] := p_ended;
  v_x bigint[];
  v_ended bigint[];
  v_past bigint[];
  v_heads bigint[] := '{}';
  v_left integer := greatest(0, p_budget);
begin
  while cardinality(v_level) > 0 loop
    select coalesce(array_agg(x.id), '{}') into v_x
    from (select d.job_id as id from jobs.dependency d where d.depends_on = any(v_level)
          except select unnest(v_done)) x
    where exists (select 1 from jobs.job_queue q where q.job_id = x.id);
    select coalesce(array_agg(h.job_id) filter (where h.k <= v_left), '{}'),
           coalesce(array_agg(h.job_id) filter (where h.k > v_left), '{}')
    into v_ended, v_past
    from (select q.job_id, row_number() over (order by q.job_id) as k from jobs.job_queue q
          where q.job_id = any(v_x) and q.serial_key is not null and not q.serial_wait) h;
    v_heads := v_heads || v_ended;
    v_left := v_left - cardinality(v_ended);
    v_level := array(select unnest(v_x) except select unnest(v_past));
    v_done := v_done || v_level;
  end loop;
  return v_heads;
end $$;

-- The serial keys an admin call ending the waiting jobs among p_ids (all
-- locked) takes, sorted: those of the heads among them within the bound
-- (jobs.heads_past_bound), then those of the heads their cascade ends at
-- once (jobs.cascade_heads) with the budget left; at most
-- jobs.max_serial_keys(). jobs.lock_jobs tries them; the caller, before it
-- changes anything, gives them to jobs.after_end (p_keys).
create function jobs.ending_keys(p_ids bigint[])
returns text[] language plpgsql stable as $$
declare
  v_direct bigint[];
  v_heads bigint[];
begin
  v_direct := array(select q.job_id from jobs.job_queue q where q.job_id = any(p_ids) and q.lease_until is null
                    except select unnest(jobs.heads_past_bound(p_ids)));
  v_heads := array(select q.job_id from jobs.job_queue q
                   where q.job_id = any(v_direct) and q.serial_key is not null and not q.serial_wait);
  v_heads := v_heads || jobs.cascade_heads(v_direct, jobs.max_serial_keys() - cardinality(v_heads));
  return array(select distinct q.serial_key from jobs.job_queue q where q.job_id = any(v_heads) order by 1);
end $$;

-- Locks the jobs among p_ids still in jobs.job_queue (with p_not_running,
-- only those not running) and returns their ids. With p_ending, it also
-- locks what ending those not running touches (jobs.after_end): their
-- dependants, all the way down, the dependency rows between them, and for
-- each serial key whose head ends, the key's lock and its next job. The
-- heads past the bound (jobs.heads_past_bound) are left out as ending (the
-- caller defers them, or refuses), and only the keys of jobs.ending_keys
-- are tried: at most jobs.max_serial_keys().
-- It never waits while holding some of these: settles and jobs.after_end
-- lock rows in no particular order, so a wait while holding could close a
-- cycle (a deadlock; job_id order alone is not enough). A claim skips them
-- meanwhile (SKIP LOCKED). When one is busy (a claim, a settle, another
-- admin call), it lets all go, waits for the job that was busy, alone, and
-- tries again; after 100 tries it waits for them in job_id order.
create function jobs.lock_jobs(p_ids bigint[], p_not_running boolean, p_ending boolean)
returns bigint[] language plpgsql as $$
declare
  v_locked bigint[];
  v_ending bigint[];
  v_free bigint[];
  v_busy bigint;
  v_got boolean;
  v_keys text[];
  v_direct bigint[];
begin
  for i in 1..100 loop
    begin
      select coalesce(array_agg(l.job_id), '{}') into v_locked
      from (select q.job_id from jobs.job_queue q
            where q.job_id = any(p_ids) and (not p_not_running or q.lease_until is null)
            order by q.job_id for update nowait) l;
      if p_ending then
        -- Read once locked; no dependant can be added meanwhile (jobs.lock_dependencies waits).
        v_direct := array(select q.job_id from jobs.job_queue q where q.job_id = any(v_locked) and q.lease_until is null
                          except select unnest(jobs.heads_past_bound(v_locked)));
        with recursive ending(id) as (
          select unnest(v_direct)
          union
          select d.job_id from jobs.dependency d join ending e on d.depends_on = e.id
        )
        select coalesce(array_agg(e.id), '{}') into v_ending from ending e;
        perform from (select q.job_id from jobs.job_queue q where q.job_id = any(v_ending)
                      order by q.job_id for update nowait) l;
        perform from (select 1 from jobs.dependency d where d.job_id = any(v_ending) or d.depends_on = any(v_ending)
                      for update nowait) l;
        v_keys := jobs.ending_keys(v_locked);
        -- The keys' locks, as jobs.lock_serial_keys takes them (tried here).
        v_got := v_keys = '{}'
                 or (select bool_and(pg_try_advisory_xact_lock(736038, hashtext(k))) from unnest(v_keys) k);
        if not coalesce(v_got, true) then
          raise sqlstate '55P03'; -- lock_not_available: let all go and try again
        end if;
        -- Each such key's next job, which jobs.after_end makes its head.
        perform from (select q.job_id from jobs.job_queue q
                      where q.job_id in (select min(w.job_id) from jobs.job_queue w
                                         where w.serial_key = any(v_keys) and w.serial_wait and w.job_id <> all(v_ending)
                                         group by w.serial_key)
                      order by q.job_id for update nowait) l;
      end if;
      return v_locked;
    exception when lock_not_available then
      null; -- the block's locks are released with it
    end;
    -- Which job is busy: those free are taken and let go again at once.
    begin
      select coalesce(array_agg(l.job_id), '{}') into v_free
      from (select q.job_id from jobs.job_queue q
            where q.job_id = any(p_ids) and (not p_not_running or q.lease_until is null)
            for update skip locked) l;
      raise sqlstate 'PDA99';
    exception when sqlstate 'PDA99' then
      null;
    end;
    select min(q.job_id) into v_busy from jobs.job_queue q
    where q.job_id = any(p_ids) and q.job_id <> all(v_free) and (not p_not_running or q.lease_until is null);
    -- None of p_ids: a dependant, a dependency row or a key was busy; a short pause.
    if v_busy is null then
      perform pg_sleep(0.001 * i);
    else
      begin
        perform from jobs.job_queue q where q.job_id = v_busy for update;
        raise sqlstate 'PDA99';
      exception when sqlstate 'PDA99' then
        null;
      end;
    end if;
  end loop;
  -- ORDER BY comes before the locking: rows are locked in job_id order.
  select coalesce(array_agg(l.job_id), '{}') into v_locked
  from (select q.job_id from jobs.job_queue q
        where q.job_id = any(p_ids) and (not p_not_running or q.lease_until is null)
        order by q.job_id for update) l;
  return v_locked;
end $$;

-- job_ids must be an array without nulls (empty: nothing to do).
create function jobs.check_job_ids(p_ids bigint[])
returns void language plpgsql immutable as $$
begin
  if p_ids is null or array_position(p_ids, null) is not null then
    perform jobs.raise_invalid('PD005', 'job_ids', 'must be an array of job ids without nulls');
  end if;
end $$;

-- Ends jobs that are not running (the caller holds their rows) as status
-- with result at p_now: moved from jobs.job_queue to jobs.job, attempts as
-- they were, their own dependency rows deleted, pgdrain_completed notified.
-- The error: p_error, followed by the job's last error on the next line
-- when p_after_last; a null p_error keeps the last error (as an ack does).
-- The end jobs.cancel, cancel_bulk, fail and complete give waiting jobs;
-- their dependants and serial keys are the caller's (jobs.after_end).
-- A null p_status writes no history row: jobs.delete_jobs (sql/0018).
create function jobs.end_waiting(p_ids bigint[], p_status text, p_error text, p_after_last boolean, p_result jsonb,
                                 p_now timestamptz)
returns void language plpgsql as $$
begin
  -- The delete runs in full whatever the insert keeps (a data-modifying CTE).
  with gone as (
    delete from jobs.job_queue q where q.job_id = any(p_ids) returning q.*
  )
  insert into jobs.job (job_id, task, body, status, result, error, attempts, priority, max_retries, timeout,
                        scheduled_at, created_at, started_at, ended_at, duration_ms,
                        queue, dedupe_key, serial_key, attributes, worker_id,
                        retry_delay, retry_backoff, retry_delay_max, dead_letter, expires_at, group_id, group_tier)
  select g.job_id, g.task, g.body, p_status, p_result,
         case when p_error is null then g.last_error
              when p_after_last then p_error || coalesce(E'\n' || g.last_error, '') else p_error end,
         g.attempt, g.priority, g.max_retries, g.timeout, g.scheduled_at, g.created_at, g.started_at, p_now, null,
         g.queue, g.dedupe_key, g.serial_key, g.attributes, g.worker_id,
         g.retry_delay, g.retry_backoff, g.retry_delay_max, g.dead_letter, g.expires_at, g.group_id, g.group_tier
  from gone g where p_status is not null;
  delete from jobs.dependency d where d.job_id = any(p_ids);
  perform jobs.notify_ids('pgdrain_completed', p_ids);
end $$;

-- Cancels a job. A job not yet running (pending, scheduled, or waiting on
-- dependencies or its serial key) ends at once in jobs.job as cancelled and
-- never runs: returns 'cancelled'. A running job is marked (it keeps its
-- dedupe and serial keys until it ends; a keep-mode publish with its dedupe
-- key takes the key over, jobs.publish): its drain sees
-- the mark within a few seconds (best effort) and fires the handler's
-- AbortSignal; whatever its delivery then reports except an ack ends it as
-- cancelled, without retry: returns 'cancelling'. Returns null when the job
-- is not active (unknown, or already ended). Dependants of a cancelled job
-- end as cancelled too.
create function jobs.cancel(job_id bigint, reason text default null, now timestamptz default null)
returns text language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := coalesce(cancel.now, pg_catalog.now());
  v_lease timestamptz;
  v_waiting boolean;
  v_key text;
  v_held text[];
begin
  -- Not a plain FOR UPDATE of the job: holding it, the delete of its
  -- dependency rows below waited for a settle of its dependency, which holds
  -- them and waits for this row (to cancel or unblock it): a deadlock.
  if jobs.lock_jobs(array[cancel.job_id], false, true) = '{}' then
    return null;
  end if;
  v_held := jobs.ending_keys(array[cancel.job_id]);
  select q.lease_until, q.serial_wait, q.serial_key into v_lease, v_waiting, v_key from jobs.job_queue q where q.job_id = cancel.job_id;
  if v_lease is not null then
    update jobs.job_queue q
    set cancel_requested_at = coalesce(q.cancel_requested_at, v_now),
        cancel_reason = coalesce(q.cancel_reason, 'cancelled: ' || coalesce(cancel.reason, 'by request'))
    where q.job_id = cancel.job_id;
    return 'cancelling';
  end if;
  perform jobs.end_waiting(array[cancel.job_id], 'cancelled', 'cancelled: ' || coalesce(cancel.reason, 'by request'),
                           false, null, v_now);
  -- A job waiting behind its serial key's head leaves the head as it is: no
  -- key to pass on, so no key lock taken while holding this row's (a head
  -- that ends takes that lock first, then this row's: a deadlock).
  perform jobs.after_end(null, array[cancel.job_id], case when not v_waiting then array[v_key] end, v_now, false, null, v_held);
  return 'cancelled';
end $$;

-- Cancels many jobs, as jobs.cancel does each: one not yet running
-- (pending, scheduled, blocked) ends at once as cancelled, its dependants
-- too; a running one gets a cancel request its drain sees. Returns how many
-- were cancelled or cancel-requested (ended and unknown ids are not counted).
-- Of the serial-key heads not running, 500 end here (jobs.heads_past_bound);
-- those past them, which never ran, are deferred as a cascade defers a
-- dependant (jobs.after_end): cancel requested, lease passed, dedupe key
-- freed, so the next claims' expiry (or jobs.maintain) ends them as
-- cancelled, with reason, and hands their keys on. More than 500 such heads
-- that ran before (a retry pending: a late settle of that attempt would
-- apply to one deferred) is PD005 job_ids: cancel them in several calls.
create function jobs.cancel_bulk(job_ids bigint[], reason text default null, now timestamptz default null)
returns integer language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := coalesce(cancel_bulk.now, pg_catalog.now());
  v_reason text := 'cancelled: ' || coalesce(cancel_bulk.reason, 'by request');
  v_locked bigint[];
  v_running bigint[];
  v_queued bigint[];
  v_keys text[];
  v_later bigint[];
  v_ran integer;
  v_held text[];
begin
  perform jobs.check_job_ids(cancel_bulk.job_ids);
  v_locked := jobs.lock_jobs(cancel_bulk.job_ids, false, true);
  -- Read once locked: as they are now, and stay until this commits.
  v_later := jobs.heads_past_bound(v_locked);
  select count(*) into v_ran from jobs.job_queue q where q.job_id = any(v_later) and q.attempt > 0;
  if v_ran > 0 then
    perform jobs.raise_invalid('PD005', 'job_ids', format('at most %s of the jobs one call cancels may head their '
      || 'serial keys and have run before, a retry pending (each takes its key''s lock until commit, from '
      || 'PostgreSQL''s shared lock table; those that never ran are deferred), got %s: cancel them in several calls',
      jobs.max_serial_keys(), jobs.max_serial_keys() + v_ran));
  end if;
  v_held := jobs.ending_keys(v_locked);
  select array_agg(q.job_id) filter (where q.lease_until is not null),
         array_agg(q.job_id) filter (where q.lease_until is null and l.id is null),
         -- A waiting job hands no turn on (see jobs.cancel).
         array_agg(q.serial_key) filter (where q.lease_until is null and l.id is null and q.serial_key is not null
                                           and not q.serial_wait)
  into v_running, v_queued, v_keys
  from jobs.job_queue q left join unnest(v_later) l(id) on l.id = q.job_id
  where q.job_id = any(v_locked);

  if v_running is not null then
    update jobs.job_queue q
    set cancel_requested_at = coalesce(q.cancel_requested_at, v_now),
        cancel_reason = coalesce(q.cancel_reason, v_reason)
    where q.job_id = any(v_running);
  end if;
  if v_queued is not null then
    perform jobs.end_waiting(v_queued, 'cancelled', v_reason, false, null, v_now);
    perform jobs.lock_serial_keys(v_keys);
    perform jobs.after_end(null, v_queued, v_keys, v_now, false, null, v_held);
  end if;
  -- After jobs.after_end, which defers those among them that depend on one
  -- ended here with its own reason: this call's reason is theirs. As there
  -- (jobs.ended_dedupe_key): passed now, dedupe key freed into last_error.
  if cardinality(v_later) > 0 then
    update jobs.job_queue q
    set lease_until = least(v_now, pg_catalog.now()), cancel_requested_at = v_now, cancel_reason = v_reason,
        dedupe_key = null, last_error = coalesce('freed dedupe key: ' || q.dedupe_key, q.last_error)
    where q.job_id = any(v_later);
  end if;
  return coalesce(cardinality(v_running), 0) + coalesce(cardinality(v_queued), 0) + cardinality(v_later);
end $$;

-- Moves jobs not yet running (pending, scheduled, blocked) to run_at, gives
-- them priority, max_retries (0 to 1000) and/or sets the attempts they have
-- spent (attempt: 0 gives a job all its runs back); running and ended jobs
-- are left alone and not counted. A job keeps its place in its serial key
-- (job_id order) and its dependencies: rescheduling a key's head later holds
-- the key's other jobs back with it, and its expiry (PD007 run_at for a time
-- at or past it). Every job keeps a run left: attempt at most its
-- max_retries (PD007 attempt, or PD003 max_retries when only that is given).
-- Returns how many were changed.
create function jobs.reschedule(job_ids bigint[], run_at timestamptz default null, priority integer default null,
                                now timestamptz default null, max_retries integer default null,
                                attempt integer default null)
returns integer language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_ids bigint[];
  v_late record;
begin
  perform jobs.check_job_ids(reschedule.job_ids);
  if reschedule.run_at is null and reschedule.priority is null and reschedule.max_retries is null
     and reschedule.attempt is null then
    perform jobs.raise_invalid('PD007', 'run_at',
      'give run_at, priority, max_retries or attempt, one or more (all are null)');
  end if;
  if not isfinite(reschedule.run_at) then
    perform jobs.raise_invalid('PD007', 'run_at', format('must be a finite time, got %s', reschedule.run_at));
  end if;
  perform jobs.check_options(null, reschedule.priority, reschedule.max_retries);
  if reschedule.attempt < 0 or reschedule.attempt > coalesce(reschedule.max_retries, 1000) then
    perform jobs.raise_invalid('PD007', 'attempt', format('must be 0 to %s (the attempts spent; at most max_retries, '
      || 'a run left), got %s', coalesce(reschedule.max_retries, 1000), reschedule.attempt));
  end if;
  -- Only jobs not running: a running one's settle is not waited for.
  v_ids := jobs.lock_jobs(reschedule.job_ids, true, false);
  if v_ids = '{}' then
    return 0;
  end if;
  -- A job keeps its expiry (a queue's expire_in was counted when it was
  -- published): moved to or past it, it could never run. Nothing is moved.
  select q.job_id, q.expires_at into v_late from jobs.job_queue q
  where q.job_id = any(v_ids) and q.expires_at <= reschedule.run_at order by q.job_id limit 1;
  if found then
    perform jobs.raise_invalid('PD007', 'run_at', format(
      'must be before the expiry of job %s (%s): it would never run; cancel it and publish it again instead',
      v_late.job_id, to_char(v_late.expires_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')));
  end if;
  -- Each job keeps a run left (a claim counts attempt past max_retries
  -- without looking; the settle would end it after one more run).
  if reschedule.max_retries is not null or reschedule.attempt is not null then
    select q.job_id, q.attempt, q.max_retries into v_late from jobs.job_queue q
    where q.job_id = any(v_ids)
      and coalesce(reschedule.attempt, q.attempt) > coalesce(reschedule.max_retries, q.max_retries)
    order by q.job_id limit 1;
    if found and reschedule.attempt is not null then
      perform jobs.raise_invalid('PD007', 'attempt', format(
        'must be at most the max_retries of job %s (%s), got %s: give max_retries too to raise it',
        v_late.job_id, v_late.max_retries, reschedule.attempt));
    elsif found then
      perform jobs.raise_invalid('PD003', 'max_retries', format(
        'must be at least the attempts job %s has spent (%s), got %s: give attempt too to reset them',
        v_late.job_id, v_late.attempt, reschedule.max_retries));
    end if;
  end if;
  -- Lowering attempt reuses delivery numbers ((job_id, attempt) names one):
  -- a settle of an old delivery whose lease expired, sent with no or the
  -- same worker_id, could settle the new one of that number.
  update jobs.job_queue q
  set scheduled_at = coalesce(reschedule.run_at, q.scheduled_at), priority = coalesce(reschedule.priority, q.priority),
      max_retries = coalesce(reschedule.max_retries, q.max_retries), attempt = coalesce(reschedule.attempt, q.attempt)
  where q.job_id = any(v_ids);
  perform jobs.notify('pgdrain_queued', x.queue)
  from (select distinct q.queue from jobs.job_queue q where q.job_id = any(v_ids) order by 1) x;
  return cardinality(v_ids);
end $$;

-- Refuses (PD005 job_ids) an admin call that would end more serial-key
-- heads than jobs.max_serial_keys(): each takes its key's lock until commit.
-- p_which: the jobs the call ends ('jobs one call fails'); p_verb: how to
-- say "do it in several calls" ('fail').
create function jobs.check_heads(p_keys text[], p_which text, p_verb text)
returns void language plpgsql stable as $$
begin
  if cardinality(p_keys) > jobs.max_serial_keys() then
    perform jobs.raise_invalid('PD005', 'job_ids', format('at most %s of the %s may head their serial keys (each takes '
      || 'its key''s lock until commit, from PostgreSQL''s shared lock table), got %s: %s them in several calls',
      jobs.max_serial_keys(), p_which, cardinality(p_keys), p_verb));
  end if;
end $$;

-- Ends jobs not yet running (pending, scheduled, blocked) as failures with
-- reason ('failed: <reason>', the job's last error on the next line): they
-- are dead letters, which jobs.redrive runs again (and, in a queue with a
-- dead_letter queue, are copied there: jobs.route_dead_letters). Their
-- dependants end as cancelled, as after any failure (500 keyed heads among
-- them at once, the rest through the next claims' expiry: jobs.after_end).
-- Running jobs are left alone and not counted (cancel them to stop them).
-- Returns how many failed. At most 500 of them may head their serial keys
-- (each takes the key's lock): PD005 job_ids past that (a failure cannot
-- be deferred as a cancel is).
create function jobs.fail(job_ids bigint[], reason text default null, now timestamptz default null)
returns integer language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := coalesce(fail.now, pg_catalog.now());
  v_ids bigint[];
  v_keys text[];
  v_held text[];
  v_own boolean;
begin
  perform jobs.check_job_ids(fail.job_ids);
  v_ids := jobs.lock_jobs(fail.job_ids, true, true);
  if v_ids = '{}' then
    return 0;
  end if;
  select array_agg(q.serial_key) filter (where q.serial_key is not null and not q.serial_wait),
         coalesce(bool_or(q.dead_letter is not null), false) into v_keys, v_own
  from jobs.job_queue q where q.job_id = any(v_ids);
  perform jobs.check_heads(v_keys, 'jobs one call fails', 'fail');
  v_held := jobs.ending_keys(v_ids);
  perform jobs.end_waiting(v_ids, 'failure', 'failed: ' || coalesce(fail.reason, 'by request'), true, null, v_now);
  perform jobs.route_dead_letters(v_ids, v_now, v_own);
  perform jobs.lock_serial_keys(v_keys);
  perform jobs.after_end(null, v_ids, v_keys, v_now, false, null, v_held);
  return cardinality(v_ids);
end $$;

-- Runs dead letters again, in one statement: all of them, or those matching
-- every filter given (job_ids, a task LIKE pattern where only % is a
-- wildcard, queue, ended_after, an error LIKE pattern). Each goes back to
-- pending under its own job id with a fresh set of retries; its error stays in
-- last_error. A job whose dedupe key is active again is left in place, and of
-- dead letters sharing a key only the oldest goes back.
-- Returns how many were redriven.
-- With include_cancelled, cancelled jobs among job_ids go back too
-- (required with it: every cancel of history would otherwise match). A
-- cancelled dependant goes back without its dependencies, even one still
-- active: it runs as soon as it is due. Ids given that are not put back,
-- nor left in place for their dedupe key, are named in a notice with where
-- they are (archived, still queued, ...).
-- Each serial key it puts back jobs of takes the key's lock until commit:
-- one call takes at most 500 keys, those of the oldest dead letters; the
-- dead letters of the keys past them stay, and a notice says how many and
-- to call it again (each call puts back the next keys, until it returns 0).
create function jobs.redrive(
  job_ids     bigint[]    default null,
  task        text        default null,
  queue       text        default null,
  ended_after timestamptz default null,
  error_like  text        default null,
  now         timestamptz default null,
  include_cancelled boolean default false
) returns integer language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := coalesce(redrive.now, pg_catalog.now());
  v_statuses text[] := case when redrive.include_cancelled then array['failure', 'cancelled'] else array['failure'] end;
  v_matched bigint[];
  v_ids bigint[];
  v_keys text[];
  v_count integer := 0;
  v_missing text;
  v_later integer;
  v_later_keys integer;
begin
  if redrive.include_cancelled and redrive.job_ids is null then
    perform jobs.raise_invalid('PD005', 'job_ids', 'must be given with include_cancelled (cancelled jobs go back by id)');
  end if;
  select array_agg(j.job_id) into v_matched
  from (
    select j.job_id from jobs.job j
    where j.status = any(v_statuses)
      and (redrive.job_ids is null or j.job_id = any(redrive.job_ids))
      and (redrive.task is null or j.task like replace(replace(redrive.task, '\', '\\'), '_', '\_'))
      and (redrive.queue is null or j.queue = redrive.queue)
      and (redrive.ended_after is null or j.ended_at > redrive.ended_after)
      and (redrive.error_like is null or j.error like redrive.error_like)
      and exists (select 1 from jobs.queue x where x.name = j.queue)
    for update of j skip locked
  ) j;
  -- Cheap: only for the ids given, and only when some did not match.
  if redrive.job_ids is not null and coalesce(cardinality(v_matched), 0) < cardinality(redrive.job_ids) then
    select string_agg(format('%s (%s)', m.id, m.where_), ', ' order by m.id) into v_missing
    from (
      select d.id, case
               when exists (select 1 from jobs.job_queue q where q.job_id = d.id) then 'still queued'
               when j.status = 'cancelled' then 'cancelled: give include_cancelled'
               when j.status is not null then j.status || case when j.status = 'failure' then ': filtered out, or being redriven' else '' end
               when exists (select 1 from jobs.job_archive a where a.job_id = d.id) then 'archived by jobs.maintain: redrive reads jobs.job only'
               else 'unknown, or deleted by retention' end as where_
      from (select distinct x as id from unnest(redrive.job_ids) x where x is not null
            and x <> all(coalesce(v_matched, '{}'))) d
      left join jobs.job j on j.job_id = d.id
      order by d.id limit 20
    ) m;
    -- None left when the ids only repeat: no notice then.
    if v_missing is not null then
      raise notice 'pgdrain: not redriven: %', v_missing;
    end if;
  end if;
  if v_matched is null then
    return 0;
  end if;
  -- From here as in sql/0007.
  with c as (
    select distinct on (coalesce(p.dedupe_key, p.job_id::text), p.dedupe_key is null) p.job_id, p.serial_key
    from jobs.job p
    where p.job_id = any(v_matched)
      and (p.dedupe_key is null or not exists (select 1 from jobs.job_queue q where q.dedupe_key = p.dedupe_key))
    order by coalesce(p.dedupe_key, p.job_id::text), p.dedupe_key is null, p.job_id
  ), k as (
    -- Keys in the order of their oldest dead letter; those past the bound wait for the next call.
    select c.serial_key, row_number() over (order by min(c.job_id)) > jobs.max_serial_keys() as later
    from c where c.serial_key is not null group by c.serial_key
  )
  select array_agg(c.job_id) filter (where not coalesce(k.later, false)),
         array_agg(distinct c.serial_key) filter (where not k.later),
         count(*) filter (where k.later), count(distinct c.serial_key) filter (where k.later)
  into v_ids, v_keys, v_later, v_later_keys
  from c left join k on k.serial_key = c.serial_key;
  -- Bounded queues' locks in their order (hashtext, as jobs.publish_event), not the names'.
  perform jobs.admit(x.queue, x.n::integer)
  from (select j.queue, count(*) as n from jobs.job j where j.job_id = any(v_ids) group by j.queue
        order by hashtext(j.queue), j.queue) x;
  perform jobs.lock_serial_keys(v_keys);
  -- A dependant cancelled after one dependency failed keeps the rows of its
  -- others still active (jobs.after_end deletes only the failed one's): back
  -- without them, or their success would count it below zero, never to run.
  if redrive.include_cancelled then
    delete from jobs.dependency d where d.job_id = any(v_ids);
  end if;
  with back as (
    insert into jobs.job_queue (job_id, task, body, scheduled_at, timeout, priority, max_retries,
                                created_at, last_error, queue, dedupe_key, serial_key, serial_wait, attributes,
                                retry_delay, retry_backoff, retry_delay_max, dead_letter, group_id, group_tier)
    overriding system value
    select p.job_id, p.task, p.body, v_now, p.timeout, p.priority, p.max_retries, p.created_at, p.error,
           p.queue, p.dedupe_key, p.serial_key, p.serial_key is not null, p.attributes,
           p.retry_delay, p.retry_backoff, p.retry_delay_max, p.dead_letter, p.group_id, p.group_tier
    from jobs.job p
    where p.job_id = any(v_ids)
    on conflict do nothing
    returning job_id
  ), gone as (
    delete from jobs.job j using back b where j.job_id = b.job_id returning 1
  )
  select count(*) into v_count from gone;
  if v_keys is not null then
    perform jobs.after_end(null, null, v_keys, v_now);
  end if;
  if v_count > 0 then
    perform jobs.notify('pgdrain_queued', coalesce(redrive.queue, '*'));
  end if;
  if v_later > 0 then
    raise notice 'pgdrain: % matching dead letters of % more serial keys left in place: one call puts back at most % serial keys (each takes a lock until commit); call jobs.redrive again',
      v_later, v_later_keys, jobs.max_serial_keys();
  end if;
  if v_count + v_later < cardinality(v_matched) then
    raise notice 'pgdrain: % of % matching dead letters left in place: an active job, or an older dead letter going back, holds their dedupe key',
      cardinality(v_matched) - v_count - v_later, cardinality(v_matched);
  end if;
  return v_count;
end $$;
