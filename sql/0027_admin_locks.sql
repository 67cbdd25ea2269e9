-- pgdrain 0027: what admin changes of queued jobs build on: locking the jobs,
-- ending waiting jobs and their dependants.
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
-- (jobs.cancel_bulk), then job_id order. p_deferred: the deferred ones
-- among p_ids count as waiting (jobs.lock_jobs).
create function jobs.heads_past_bound(p_ids bigint[], p_deferred boolean default false)
returns bigint[] language sql stable as $$
  select coalesce(array_agg(h.job_id), '{}')
  from (select q.job_id, row_number() over (order by q.attempt = 0, q.job_id) as k
        from jobs.job_queue q
        where q.job_id = any(p_ids) and (q.lease_until is null or p_deferred and q.attempt = 0)
          and q.serial_key is not null and not q.serial_wait) h
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
create function jobs.ending_keys(p_ids bigint[], p_deferred boolean default false)
returns text[] language plpgsql stable as $$
declare
  v_direct bigint[];
  v_heads bigint[];
begin
  v_direct := array(select q.job_id from jobs.job_queue q
                    where q.job_id = any(p_ids) and (q.lease_until is null or p_deferred and q.attempt = 0)
                    except select unnest(jobs.heads_past_bound(p_ids, p_deferred)));
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
-- are tried: at most jobs.max_serial_keys(). p_deferred (jobs.delete_jobs):
-- dependants a cascade deferred (attempt 0, lease passed) end too, as waiting.
-- It never waits while holding some of these: settles and jobs.after_end
-- lock rows in no particular order, so a wait while holding could close a
-- cycle (a deadlock; job_id order alone is not enough). A claim skips them
-- meanwhile (SKIP LOCKED). When one is busy (a claim, a settle, another
-- admin call), it lets all go, waits for the job that was busy, alone, and
-- tries again; after 100 tries it waits for them in job_id order.
create function jobs.lock_jobs(p_ids bigint[], p_not_running boolean, p_ending boolean, p_deferred boolean default false)
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
        v_direct := array(select q.job_id from jobs.job_queue q
                          where q.job_id = any(v_locked) and (q.lease_until is null or p_deferred and q.attempt = 0)
                          except select unnest(jobs.heads_past_bound(v_locked, p_deferred)));
        -- Started from their dependants, as jobs.after_end's: started from the
        -- jobs themselves, the join ran at least once, and with most rows on
        -- a few dependencies (one parent of many children) the planner read
        -- the whole table for it, in every call ending a job without any.
        with recursive ending(id) as (
          select d.job_id from jobs.dependency d where d.depends_on = any(v_direct)
          union
          select d.job_id from jobs.dependency d join ending e on d.depends_on = e.id
        )
        select coalesce(array_agg(x.id), '{}') into v_ending
        from (select unnest(v_direct) as id union select e.id from ending e) x;
        perform from (select q.job_id from jobs.job_queue q where q.job_id = any(v_ending)
                      order by q.job_id for update nowait) l;
        perform from (select 1 from jobs.dependency d where d.job_id = any(v_ending) or d.depends_on = any(v_ending)
                      for update nowait) l;
        v_keys := jobs.ending_keys(v_locked, p_deferred);
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
-- when p_after_last, cut whole (jobs.cut_error: each part alone may be up to
-- the bound, a reason of 8192 characters after 'cancelled: ' past it); a
-- null p_error keeps the last error (as an ack does).
-- The end jobs.cancel, cancel_bulk, fail and complete give waiting jobs;
-- their dependants and serial keys are the caller's (jobs.after_end).
-- A null p_status writes no history row: jobs.delete_jobs (sql/0036).
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
              when p_after_last then jobs.cut_error(p_error || coalesce(E'\n' || g.last_error, '')) else jobs.cut_error(p_error) end,
         g.attempt, g.priority, g.max_retries, g.timeout, g.scheduled_at, g.created_at, g.started_at, p_now, null,
         g.queue, g.dedupe_key, g.serial_key, g.attributes, g.worker_id,
         g.retry_delay, g.retry_backoff, g.retry_delay_max, g.dead_letter, g.expires_at, g.group_id, g.group_tier
  from gone g where p_status is not null;
  delete from jobs.dependency d where d.job_id = any(p_ids);
  perform jobs.notify_ids('pgdrain_completed', p_ids);
end $$;
