-- pgdrain 0003: retries, events, what follows a job's end, and lease expiry.

-- Retries --------------------------------------------------------------------

-- Delay before retry number `attempt` (1 = the first retry): exponential with
-- "equal jitter", so attempt k waits between 5*2^(k-1)/2 and 5*2^(k-1)
-- seconds, capped at one hour. Replace this function to change the policy.
create function jobs.backoff(attempt integer)
returns interval language sql volatile as $$
  select make_interval(secs => d / 2 + random() * d / 2)
  from (select least(3600.0, 5.0 * power(2, greatest(backoff.attempt, 1) - 1)) as d) s
$$;

-- Delay before retry number `attempt` of a job that has a retry policy of
-- its own (any of jobs.job_queue.retry_* set: jobs.publish's), or whose queue
-- has (jobs.queue.retry_*): jobs.settle_arrays calls this then, the job's
-- first, jobs.backoff otherwise. Base `delay` seconds (null: 5), never
-- more than `delay_max` (null: an hour, or `delay` when that is longer).
-- Exponential (null or true): equal jitter as jobs.backoff, between d/2 and
-- d for d = min(cap, delay * 2^(attempt-1)). Fixed (false): min(cap, delay)
-- exactly, no jitter, as asked (spread retries out with exponential).
create function jobs.queue_backoff(attempt integer, delay numeric, exponential boolean, delay_max numeric)
returns interval language sql volatile as $$
  select make_interval(secs => case when x.fixed then x.d else x.d / 2 + random() * x.d / 2 end)
  from (select f.fixed,
               least(f.cap, case when f.fixed then f.base
                                 else f.base * power(2::float8, least(greatest(queue_backoff.attempt, 1), 1000) - 1) end) as d
        from (select coalesce(not queue_backoff.exponential, false) as fixed,
                     -- To the millisecond first: a delay under float8's range (1e-400, which the
                     -- checks let through as at least 0) would fail every claim's expiry of it.
                     round(coalesce(queue_backoff.delay, 5), 3)::float8 as base,
                     round(coalesce(queue_backoff.delay_max, greatest(3600, queue_backoff.delay)), 3)::float8 as cap) f) x
$$;

-- Events ---------------------------------------------------------------------

-- Events are NOTIFYs on three channels: pgdrain_queued (payload: the queue
-- name), pgdrain_picked and pgdrain_completed (payload: job ids). One per
-- statement, never one per job; delivered at commit, and only then.
-- A transaction that notifies takes a cluster-wide lock from its commit
-- until it ends, so notifying commits do not group-commit: for many
-- concurrent single-job publishers, turn events off with
--   alter database mydb set pgdrain.events = off;   (or per role / session)
-- waitFor and subscribe then hear nothing. Off is any of PostgreSQL's
-- spellings of a false boolean (off, false, no, 0, in any case).
create function jobs.events_on()
returns boolean language sql stable as $$
  select lower(trim(coalesce(current_setting('pgdrain.events', true), ''))) not in ('off', 'of', 'false', 'f', 'no', 'n', '0')
$$;

create function jobs.notify(p_channel text, p_payload text)
returns void language plpgsql as $$
begin
  if jobs.events_on() then
    perform pg_notify(p_channel, p_payload);
  end if;
end $$;

-- NOTIFY a channel with job ids, comma-separated: in one notification when
-- they fit under PostgreSQL's 8000-byte payload limit (a batch of 500 ids of
-- up to 14 digits, joined once), else as many per notification as the
-- longest id lets fit (718 ids of up to 10 digits; 395 of bigint's 19).
create function jobs.notify_ids(p_channel text, p_ids bigint[])
returns void language plpgsql as $$
declare
  v_all text;
  v_per integer;
begin
  if not jobs.events_on() or coalesce(cardinality(p_ids), 0) = 0 then
    return;
  end if;
  v_all := array_to_string(p_ids, ',');
  if length(v_all) <= 7900 then
    perform pg_notify(p_channel, v_all);
    return;
  end if;
  v_per := 7900 / (length((select max(x) from unnest(p_ids) x)::text) + 1);
  for i in 0 .. (cardinality(p_ids) - 1) / v_per loop
    perform pg_notify(p_channel, array_to_string(p_ids[i * v_per + 1 : i * v_per + v_per], ','));
  end loop;
end $$;

-- Serial-key lock volume -------------------------------------------------------

-- The most serial-key jobs one jobs.expire call ends (as jobs.publish_arrays
-- takes at most 500 keys; a drain's settle statement ends at most as many;
-- an admin call takes at most as many: jobs.ending_keys, sql/0011), and the most
-- keys one jobs.after_end takes (or its caller's, if more). A key's lock
-- (jobs.lock_serial_keys) is one entry of PostgreSQL's lock table, held
-- until commit; that table (about max_locks_per_transaction x
-- max_connections entries, 6,400 on a default server) is shared by every
-- session, and a full one fails any statement of any session that needs a
-- lock ("out of shared memory", 53200).
create function jobs.max_serial_keys()
returns integer language sql immutable as $$ select 500 $$;

-- After jobs end ------------------------------------------------------------

-- The dedupe key a job ends with: its own, or the one a cascade freed when
-- it deferred the job (jobs.after_end keeps it in last_error, 'freed dedupe
-- key: <key>': a deferred job never ran, so it has no error of its own).
create function jobs.ended_dedupe_key(p_dedupe_key text, p_attempt integer, p_last_error text)
returns text language sql immutable as $$
  select coalesce(p_dedupe_key, case when p_attempt = 0 and starts_with(p_last_error, 'freed dedupe key: ')
                                     then substr(p_last_error, 19) end)
$$;

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
-- sends its claim again; README says to retry a publish). Skipping keyed
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
      -- job (README: publish them again); kept in last_error (it never ran)
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
-- (jobs.hold_queue, sql/0002); the insert then reads the queues again, so a
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

-- Leases ---------------------------------------------------------------------

-- Settles up to n expired leases: a job with retries left goes back to pending
-- at once (its attempt stays counted; a retry policy spaces nacks, not
-- this), the others end as failures (or as
-- cancelled, when a cancel was requested while they ran, or by a cascade
-- past its bound: jobs.after_end). consume calls it
-- first, so expiry needs no daemon; callers may also call it on their own.
-- It also ends up to n waiting jobs (not running, not blocked by
-- dependencies) whose expires_at has passed as failures, 'expired: not
-- started before <expires_at>', ended at their expiry: the same end, so
-- their dependants, serial key, dedupe key, dead letter and events go as a
-- failed lease's do. Returns how many of both it settled.
-- Of those that end, at most jobs.max_serial_keys() hold a serial key (each
-- end takes its key's lock): the leases past it stay passed for the next call.
-- With `after`, only leases that passed after it: a drain's claim passes
-- the point up to which its session found none (jobs.remembered_lease_floor),
-- so it does not read the lease-index entries of the jobs settled before.
create function jobs.expire(n integer default 1000, now timestamptz default null, after timestamptz default null)
returns integer language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
  return (select e.leases + e.waiting from jobs.expire_due(expire.n, coalesce(expire.now, pg_catalog.now()), expire.after) e);
end $$;

-- jobs.expire's work, each kind only when asked (p_leases, p_waiting: a
-- claim asks for what its probes found), with its counts apart (jobs.maintain's).
create function jobs.expire_due(n integer, p_now timestamptz, p_after timestamptz,
                                p_leases boolean default true, p_waiting boolean default true,
                                out leases integer, out waiting integer)
language plpgsql as $$
declare
  v_ended bigint[];
  v_keys text[];
  v_deps boolean;
  v_own boolean;
begin
  with expired as (
    select q.job_id, q.lease_until as at, false as stale,
           q.serial_key is not null and (q.attempt > q.max_retries or q.cancel_requested_at is not null) as keyed_end
    from jobs.job_queue q
    where p_leases and q.lease_until <= p_now and q.lease_until > coalesce(p_after, '-infinity')
    order by q.lease_until
    limit expire_due.n
    for update skip locked
  ), stale as (
    -- job_queue_expires_idx. Blocked ones wait for their dependencies first
    -- (ended here, their dependency rows would be deleted while holding
    -- their row: a settle of a dependency locks in the other order).
    -- Only a key's head hands its turn on (takes the key's lock, holding this
    -- row): one waiting behind it ends as jobs.cancel ends one, no key lock
    -- (a settle of the head holds that lock, then locks the next job's row).
    select q.job_id, q.expires_at as at, true as stale, q.serial_key is not null and not q.serial_wait as keyed_end
    from jobs.job_queue q
    where p_waiting and q.expires_at <= p_now and q.lease_until is null and q.waiting_deps = 0
    order by q.expires_at
    limit expire_due.n
    for update skip locked
  ), taken as (
    select e.job_id, e.stale from (
      select e.job_id, e.stale, e.keyed_end,
             count(*) filter (where e.keyed_end) over (order by e.at, e.job_id) as k
      from (select * from expired union all select * from stale) e) e
    where not e.keyed_end or e.k <= jobs.max_serial_keys()
  ), spent as (
    delete from jobs.job_queue q using taken e
    where q.job_id = e.job_id and (e.stale or q.attempt > q.max_retries or q.cancel_requested_at is not null)
    returning q.*, e.stale
  ), failed as (
    insert into jobs.job (job_id, task, body, status, error, attempts, priority, max_retries,
                          timeout, scheduled_at, created_at, started_at, ended_at, duration_ms,
                          queue, dedupe_key, serial_key, attributes, worker_id,
                          retry_delay, retry_backoff, retry_delay_max, dead_letter, expires_at, group_id, group_tier)
    select s.job_id, s.task, s.body,
           case when s.cancel_requested_at is null then 'failure' else 'cancelled' end,
           case when s.cancel_requested_at is not null then coalesce(s.cancel_reason, 'cancelled')
                -- In UTC, whatever the session's time zone: 'expired: not started before 2030-01-01T09:00:00.000Z'.
                when s.stale then format('expired: not started before %s',
                                         to_char(s.expires_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
                else format('timed out: no ack within %s seconds (attempt %s of %s)', s.timeout, s.attempt, s.max_retries + 1) end,
           s.attempt, s.priority, s.max_retries, s.timeout, s.scheduled_at, s.created_at, s.started_at,
           case when s.stale then s.expires_at else s.lease_until end,
           case when not s.stale then extract(epoch from s.lease_until - s.started_at) * 1000 end,
           s.queue,
           -- A dependant a cascade deferred (jobs.after_end) gets its dedupe key back.
           jobs.ended_dedupe_key(s.dedupe_key, s.attempt, s.last_error),
           s.serial_key, s.attributes, s.worker_id, s.retry_delay, s.retry_backoff, s.retry_delay_max, s.dead_letter,
           s.expires_at, s.group_id, s.group_tier
    from spent s
    returning job_id, serial_key, status = 'failure' and dead_letter is not null as own_dead_letter
  ), retried as (
    update jobs.job_queue q
    set lease_until = null,
        -- At once, whatever its retry policy (which spaces nacks): the lease was
        -- the wait, and an expired job goes to the next consume (DESIGN).
        scheduled_at = q.lease_until,
        last_error = format('timed out: no ack within %s seconds (attempt %s of %s)', q.timeout, q.attempt, q.max_retries + 1)
    from taken e
    where q.job_id = e.job_id and not e.stale and q.attempt <= q.max_retries and q.cancel_requested_at is null
    returning 1
  )
  select (select count(*) from spent where not spent.stale) + (select count(*) from retried),
         (select count(*) from spent where spent.stale),
         (select array_agg(job_id) from failed),
         (select array_agg(s.serial_key) from spent s where s.serial_key is not null and not s.serial_wait),
         (select bool_or(own_dead_letter) from failed)
  into leases, waiting, v_ended, v_keys, v_own;
  if v_ended is not null then
    perform jobs.notify_ids('pgdrain_completed', v_ended);
    perform jobs.route_dead_letters(v_ended, p_now, v_own);
    v_deps := exists (select 1 from jobs.dependency);
    if v_deps or v_keys is not null then
      perform jobs.after_end(null, case when v_deps then v_ended end, v_keys, p_now);
    end if;
  end if;
end $$;

-- Up to when the session's last remembering claim found no passed lease
-- (its now; null when none did, or when the last probe that read the lease
-- index from its start ran more than ten seconds of p_now ago). The lease
-- index starts with the entries of every job settled since the last vacuum,
-- and once their leases have passed (after their timeout) a probe from the
-- start reads all of them: tens of milliseconds per claim on a busy queue
-- with short timeouts. A drain's claim probes only the leases that passed
-- since. What it costs: a lease that passed before that point but was not
-- there to see (written by a transaction that began earlier and ran longer
-- than the job's timeout) is expired by the next probe from the start,
-- within ten seconds.
create function jobs.remembered_lease_floor(p_now timestamptz)
returns timestamptz language plpgsql stable as $$
declare
  v_parts text[] := regexp_match(current_setting('pgdrain.lease_floor', true), '^(-?\d{1,18})\|(-?\d{1,18})$');
  v_now bigint := (extract(epoch from p_now) * 1000000)::bigint;
begin
  if v_parts is null or v_parts[1]::bigint > v_now or v_now - v_parts[2]::bigint > 10000000 then
    return null;
  end if;
  return timestamptz 'epoch' + v_parts[1]::bigint * interval '1 microsecond';
end $$;

-- Remembers that a claim at p_now found no passed lease; p_full: its probe
-- read the lease index from the start (else the last such probe is kept).
create function jobs.remember_lease_floor(p_now timestamptz, p_full boolean)
returns void language plpgsql as $$
declare
  v_now text := (extract(epoch from p_now) * 1000000)::bigint::text;
begin
  perform set_config('pgdrain.lease_floor',
                     v_now || '|' || case when p_full then v_now
                                          else split_part(current_setting('pgdrain.lease_floor', true), '|', 2) end,
                     false);
end $$;
