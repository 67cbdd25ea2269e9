-- pgdrain 0008: what follows a job's end: dependants, serial keys, dead
-- letters.

-- The serial-key locks a cascade takes (jobs.after_end, not an admin
-- call's: those hold their keys) before it ends the dependants of
-- p_unsuccessful: first those of the jobs that ended (p_serial_keys, as
-- jobs.lock_serial_keys takes them), then those of the dependants that head
-- their keys (within p_budget, in job_id order: the ones jobs.after_end
-- ends), in the locks' order. A head's key is waited for only when its lock
-- comes after every serial-key lock this transaction holds, as a bulk
-- publish's one sorted run takes them; one before is tried, and if another
-- transaction holds it the head is answered (deferred by jobs.after_end: its
-- cancel requested, the next expiry ends it). Waiting for it, the cascade
-- (holding a later key) deadlocked with a bulk publish holding it and
-- waiting for that later key. Returns the heads answered; with no keyed
-- head among the dependants, it takes nothing (one probe).
create function jobs.lock_head_keys(p_unsuccessful bigint[], p_serial_keys text[], p_budget integer)
returns bigint[] language plpgsql as $$
declare
  v_max integer;
  v_head record;
  v_busy bigint[];
begin
  for v_head in
    select h.job_id, h.serial_key from (
      select q.job_id, q.serial_key, row_number() over (order by q.job_id) as k
      from jobs.job_queue q
      where q.job_id in (select d.job_id from jobs.dependency d where d.depends_on = any(p_unsuccessful))
        and q.serial_key is not null and not q.serial_wait) h
    where h.k <= p_budget
    order by hashtext(h.serial_key), h.serial_key
  loop
    if v_busy is null then
      v_busy := '{}';
      perform jobs.lock_serial_keys(p_serial_keys);
      -- The last serial-key lock held (pg_locks shows an int4 key as an unsigned oid).
      select max(case when l.objid::bigint >= 2147483648 then l.objid::bigint - 4294967296 else l.objid::bigint end)::integer
        into v_max
      from pg_catalog.pg_locks l
      where l.locktype = 'advisory' and l.classid = 736038 and l.objsubid = 2 and l.pid = pg_catalog.pg_backend_pid()
        and l.granted;
    end if;
    if v_max is null or hashtext(v_head.serial_key) > v_max then
      perform pg_advisory_xact_lock(736038, hashtext(v_head.serial_key));
      v_max := hashtext(v_head.serial_key);
    elsif not pg_try_advisory_xact_lock(736038, hashtext(v_head.serial_key)) then
      v_busy := v_busy || v_head.job_id;
    end if;
  end loop;
  return v_busy;
end $$;

-- Called by every path that ends jobs (settle, expire, cancel) for the ended
-- jobs that matter here, so plain jobs cost nothing:
-- - dependants of succeeded jobs have one dependency fewer to wait for;
-- - dependants of jobs that failed or were cancelled end as cancelled
--   (and so, in turn, do their own dependants);
-- - a serial key whose job ended hands its turn to its next job (job_id order).
-- The dependants it changes are locked first, all of them (those cancelled
-- in turn too, all the way down), in job_id order: locked in plan order, level
-- by level, two ends sharing dependants (a diamond) could each hold one
-- another waits for, a deadlock. job_id order agrees with the rest: a
-- dependant's id is greater than its dependencies', which the ending
-- transaction holds, and publishers lock dependencies in job_id order.
-- A cancelled dependant that heads a serial key takes the key's lock, to
-- hand it on: a cascade takes at most jobs.max_serial_keys() locks, less the
-- caller's keys (p_budget: what its recursion has left). The heads past that,
-- in job_id order, are not ended here ("deferred"): their cancel is
-- requested and their lease set to have passed (attempt 0: no delivery, so
-- no max_running slot, and no settle applies to them), so the next
-- jobs.expire (any claim's, or jobs.maintain's) ends them as cancelled,
-- within its own bound, and they hand their keys on and cancel their own
-- dependants then. Each stays its key's head meanwhile: a publish of the key
-- waits behind it, as ever; its dedupe key is free at once.
-- A cascade takes the keys of the heads it ends after those of the jobs
-- that ended, waiting only for a key whose lock comes after every one it
-- holds (jobs.lock_head_keys: a head whose key is busy is deferred as
-- above), so it waits in one order with a bulk publish of the same keys.
-- A drain's claim takes key locks in two runs, each sorted: its settle's
-- ends (and their cascade), then its expiry's; up to 1,000 in all. A bulk
-- publish sharing keys of both runs can deadlock with it (40P01: the drain
-- sends its claim again; docs/typescript-api.md says to retry a publish). Skipping keyed
-- ends in an expiry after a keyed settle was tried: a drain that kept
-- settling keyed jobs then never ended a crashed one, nor a deferred head.
-- (Unbounded, a job with thousands of keyed dependants could not end: its
-- settle, then every claim's expiry of it, failed on a full lock table.)
-- p_locked: the caller (its own recursion) has locked them.
-- p_keys (an admin call's, jobs.lock_jobs): the keys it holds; a head among
-- the dependants then ends only when its key is one of them, else it is
-- deferred as above (the budget is not used).
create function jobs.after_end(p_succeeded bigint[], p_unsuccessful bigint[], p_serial_keys text[],
                               p_now timestamptz, p_locked boolean default false, p_budget integer default null,
                               p_keys text[] default null)
returns void language plpgsql as $$
declare
  v_key text;
  v_cancelled bigint[];
  v_keys text[];
  v_budget integer;
  v_busy bigint[];
begin
  if not p_locked and cardinality(p_unsuccessful) > 0 then
    -- FOR UPDATE: most of them end here (deleted), with their own dependants.
    perform from (select q.job_id from jobs.job_queue q
                  where q.job_id in (with recursive ending(id) as (
                                       select d.job_id from jobs.dependency d where d.depends_on = any(p_unsuccessful)
                                       union
                                       select d.job_id from jobs.dependency d join ending e on d.depends_on = e.id)
                                     select e.id from ending e
                                     union all
                                     select d.job_id from jobs.dependency d where d.depends_on = any(p_succeeded))
                  order by q.job_id for update) l;
  elsif not p_locked and cardinality(p_succeeded) > 0 then
    -- NO KEY UPDATE, as the update below: a publish depending on one of them
    -- (FOR KEY SHARE) is not waited for.
    perform from (select q.job_id from jobs.job_queue q
                  where q.job_id in (select d.job_id from jobs.dependency d where d.depends_on = any(p_succeeded))
                  order by q.job_id for no key update) l;
  end if;

  if cardinality(p_succeeded) > 0 then
    with done as (
      delete from jobs.dependency d where d.depends_on = any(p_succeeded) returning d.job_id
    )
    update jobs.job_queue q set waiting_deps = q.waiting_deps - c.n
    from (select done.job_id, count(*)::integer as n from done group by done.job_id) c
    where q.job_id = c.job_id;
  end if;

  if cardinality(p_unsuccessful) > 0 then
    v_budget := greatest(0, coalesce(p_budget, jobs.max_serial_keys()
                  - (select count(distinct k)::integer from unnest(p_serial_keys) k where k is not null)));
    if p_keys is null then
      v_busy := jobs.lock_head_keys(p_unsuccessful, p_serial_keys, v_budget);
    end if;
    with dependants as (
      delete from jobs.dependency d where d.depends_on = any(p_unsuccessful) returning d.job_id, d.depends_on
    ), x as (
      select x.job_id, min(x.depends_on) as cause from dependants x group by x.job_id
    ), later as (
      -- The key heads past the budget (each head's key is its own: one head per key).
      select h.job_id from (select q.job_id, q.serial_key, row_number() over (order by q.job_id) as k
                            from jobs.job_queue q join x on x.job_id = q.job_id
                            where q.serial_key is not null and not q.serial_wait) h
      where case when p_keys is null then h.k > v_budget or h.job_id = any(v_busy) else not h.serial_key = any(p_keys) end
    ), deferred as (
      -- Passed now (least: a caller's now may run ahead of the clock). A drain
      -- whose session found no passed lease since may see it only within ten
      -- seconds (jobs.remembered_lease_floor); other claims at once.
      -- Its dedupe key is freed at once, so a publish of the key writes a new
      -- job (docs/job-keys.md: publish them again); kept in last_error (it never ran)
      -- for jobs.expire to put back in its history.
      update jobs.job_queue q
      set lease_until = least(p_now, pg_catalog.now()), cancel_requested_at = p_now,
          cancel_reason = format('cancelled: dependency %s did not succeed', x.cause),
          dedupe_key = null, last_error = coalesce('freed dedupe key: ' || q.dedupe_key, q.last_error) -- jobs.ended_dedupe_key
      from x where q.job_id = x.job_id and x.job_id in (select l.job_id from later l)
    ), gone as (
      delete from jobs.job_queue q using x
      where q.job_id = x.job_id and not exists (select 1 from later l where l.job_id = x.job_id)
      returning q.*, x.cause
    ), ended as (
      insert into jobs.job (job_id, task, body, status, error, attempts, priority, max_retries, timeout,
                            scheduled_at, created_at, started_at, ended_at, duration_ms,
                            queue, dedupe_key, serial_key, attributes, worker_id,
                            retry_delay, retry_backoff, retry_delay_max, dead_letter, expires_at, group_id, group_tier)
      select g.job_id, g.task, g.body, 'cancelled', format('cancelled: dependency %s did not succeed', g.cause),
             g.attempt, g.priority, g.max_retries, g.timeout, g.scheduled_at, g.created_at, g.started_at,
             p_now, null, g.queue,
             -- One a cascade deferred before (another of its dependencies) gets its dedupe key back.
             jobs.ended_dedupe_key(g.dedupe_key, g.attempt, g.last_error),
             g.serial_key, g.attributes, g.worker_id, g.retry_delay, g.retry_backoff, g.retry_delay_max, g.dead_letter,
             g.expires_at, g.group_id, g.group_tier
      from gone g
      returning job_id
    )
    -- Only a key whose head was cancelled needs its next job promoted: taking
    -- the key lock for a waiting one, while holding its dependency's row (a
    -- cancel), deadlocks with a head's end that waits for that row.
    select (select array_agg(e.job_id) from ended e),
           (select array_agg(g.serial_key) from gone g where g.serial_key is not null and not g.serial_wait)
    into v_cancelled, v_keys;
  end if;

  -- The same lock as jobs.publish takes, so a job published meanwhile is seen;
  -- in jobs.lock_serial_keys' order (the lock's, hashtext, not the key's text).
  for v_key in select u.k from (select distinct k from unnest(p_serial_keys) k where k is not null) u
               order by hashtext(u.k), u.k loop
    perform pg_advisory_xact_lock(736038, hashtext(v_key));
    loop
      update jobs.job_queue q set serial_wait = false
      where q.job_id = (select min(x.job_id) from jobs.job_queue x where x.serial_key = v_key and x.serial_wait)
        and not exists (select 1 from jobs.job_queue x where x.serial_key = v_key and not x.serial_wait);
      exit when found;
      -- The first waiting job may have been deleted (jobs.cancel) while this
      -- update waited for its row: look again, with a new snapshot.
      exit when not exists (select 1 from jobs.job_queue x where x.serial_key = v_key and x.serial_wait)
             or exists (select 1 from jobs.job_queue x where x.serial_key = v_key and not x.serial_wait);
    end loop;
  end loop;

  if cardinality(v_cancelled) > 0 then
    perform jobs.notify_ids('pgdrain_completed', v_cancelled);
    perform jobs.after_end(null, v_cancelled, v_keys, p_now, true, v_budget - coalesce(cardinality(v_keys), 0), p_keys);
  end if;
end $$;

-- Dead letters ----------------------------------------------------------------

-- Called by every path that ends jobs as failures (jobs.settle_arrays, so
-- ack/nack/settle and the drains; jobs.expire; jobs.fail), with the jobs it
-- ended, only when one failed. Each that failed for good (status 'failure',
-- not cancelled) with a dead-letter queue is published there, in the same
-- transaction: its own (jobs.publish's dead_letter, kept in jobs.job) when
-- it has one, whatever its queue's; else its queue's dead_letter. (Its own
-- gone, deleted after a redrive put it back, its queue's is used.) A new
-- job with its task, body and priority; its
-- attributes plus "dead_letter": {"job_id", "queue", "error", "attempts"} (the
-- failed job; a key of that name in its own attributes is replaced); its error
-- as last_error; the timeout and max_retries of the dead-letter queue's
-- defaults, else its own, and its own retry policy unless the dead-letter
-- queue has one; its group and tier (the dead-letter queue's
-- group_concurrency caps it, if it has one); no dedupe or serial key, no
-- dependencies, no dead letter of its own (it follows its new queue's). A dead
-- letter is never refused: the dead-letter queue's max_size is not checked
-- (it may go above it, and publishes to it then get PD010), and a paused one
-- keeps it until resumed. The failed job stays in jobs.job, as ever.
-- Each dead-letter queue written to is held first against a delete
-- (jobs.hold_queue, sql/0003); the insert then reads the queues again, so a
-- route removed and its queue deleted while this waited sends nothing there.
-- p_own: whether a job among them failed with a dead letter of its own (the
-- caller sees it in the rows it ended; true when it cannot tell). Without
-- one, and with no queue naming a dead_letter, this returns after one read
-- of jobs.queue: a failing batch of plain jobs pays nothing more.
create function jobs.route_dead_letters(p_ended bigint[], p_now timestamptz, p_own boolean default true)
returns void language plpgsql as $$
declare
  v_queues text[];
begin
  if not coalesce(p_own, true) and not exists (select 1 from jobs.queue q where q.dead_letter is not null) then
    return;
  end if;
  -- Both the job's own and its queue's: which one it goes to is read below.
  perform jobs.hold_queue(x.name)
  from (select distinct x.name from jobs.job j left join jobs.queue q on q.name = j.queue
        cross join lateral (values (j.dead_letter), (q.dead_letter)) x(name)
        where j.job_id = any(p_ended) and j.status = 'failure' and x.name is not null
        order by x.name) x;
  with sent as (
    insert into jobs.job_queue (task, body, scheduled_at, timeout, priority, max_retries, created_at, last_error,
                                queue, attributes, retry_delay, retry_backoff, retry_delay_max, group_id, group_tier)
    select j.task, j.body, p_now, coalesce(d.default_timeout, j.timeout), j.priority,
           coalesce(d.default_max_retries, j.max_retries), p_now, j.error, d.name,
           coalesce(j.attributes, '{}') || jsonb_build_object('dead_letter', jsonb_build_object(
             'job_id', j.job_id, 'queue', j.queue, 'error', j.error, 'attempts', j.attempts)),
           p.retry_delay, p.retry_backoff, p.retry_delay_max, j.group_id, j.group_tier
    from jobs.job j
    left join jobs.queue q on q.name = j.queue
    left join jobs.queue o on o.name = j.dead_letter
    join jobs.queue d on d.name = coalesce(o.name, q.dead_letter)
    -- The job's own policy, unless the dead-letter queue has one (as its defaults win).
    left join lateral (select j.retry_delay, j.retry_backoff, j.retry_delay_max
                       where d.retry_delay is null and d.retry_backoff is null and d.retry_delay_max is null) p on true
    where j.job_id = any(p_ended) and j.status = 'failure'
    order by j.job_id
    returning queue
  )
  select array_agg(distinct s.queue) into v_queues from sent s;
  perform jobs.notify('pgdrain_queued', x) from unnest(v_queues) x;
end $$;
