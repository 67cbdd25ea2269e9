-- pgdrain 0009: lease expiry: jobs whose drain stopped answering go back or
-- fail.

-- Leases ---------------------------------------------------------------------

-- Settles up to n expired leases: a job with retries left goes back to pending
-- at once (its attempt stays counted; a retry policy spaces nacks, not
-- this), the others end as failures (or as
-- cancelled, when a cancel was requested while they ran, or by a cascade
-- past its bound: jobs.after_end). consume calls it
-- first, so expiry needs no daemon; callers may also call it on their own.
-- It also ends up to n waiting jobs (not running, not blocked by
-- dependencies) whose expires_at has passed as failures, 'expired: not
-- started before <expires_at>' (a job that ran and waited for its retry: its
-- last error on the next line), ended at their expiry: the same end, so
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
  -- Null would be LIMIT NULL (no bound at all), a negative a raw LIMIT error.
  if expire.n is null or expire.n < 0 then
    perform jobs.raise_invalid('PD005', 'n', format('must be 0 or more, got %s', coalesce(expire.n::text, 'null')));
  end if;
  return (select e.leases + e.waiting from jobs.expire_due(expire.n, jobs.clock(expire.now), expire.after) e);
end $$;

-- What an expired lease's error adds: whose outcome never came. A drain that
-- ran the job may have died, or settled it while the database was gone (its
-- report, its error, says how many outcomes it could not record).
create function jobs.no_outcome_from(p_worker_id text) returns text language sql immutable as $$
  select case when p_worker_id is null then '' else format(
    ': its lease passed with no outcome from worker %s (it stopped or was killed, or its settle could not reach the database)',
    p_worker_id) end
$$;

-- jobs.expire's work, each kind only when asked (p_leases, p_waiting: a
-- claim asks for what its probes found), with its counts apart (jobs.maintain's).
-- p_holder: a drain's claim (jobs.claim_json's holder) leaves the passed
-- leases of its own deliveries alone. Their jobs still run in that drain,
-- whose timer for each is due (it fires at the lease's end, by the drain's
-- clock): a claim sent as it came due and run once the lease had passed
-- would retry the job at once (its backoff skipped) or hand it out again,
-- and the drain's own nack would come stale. Any other claim (another
-- drain's, a successor's after a crash: a new holder, whatever its worker
-- id), jobs.expire and jobs.maintain take them back as ever. p_only: of
-- these jobs only; none given outside READ COMMITTED, it goes through
-- jobs.expire_apart (sql/0041), which gives them.
create function jobs.expire_due(n integer, p_now timestamptz, p_after timestamptz,
                                p_leases boolean default true, p_waiting boolean default true,
                                p_holder bigint default null, p_only bigint[] default null,
                                out leases integer, out waiting integer, out left_rows integer)
language plpgsql as $$
declare
  v_ended bigint[];
  v_keys text[];
  v_deps boolean;
  v_own boolean;
begin
  if p_only is null and not jobs.read_committed() then
    select a.leases, a.waiting, a.left_rows into leases, waiting, left_rows
    from jobs.expire_apart(n, p_now, p_after, p_leases, p_waiting, p_holder) a;
    return;
  end if;
  left_rows := 0;
  with expired as (
    select q.job_id, q.lease_until as at, false as stale,
           q.serial_key is not null and (q.attempt > q.max_retries or q.cancel_requested_at is not null) as keyed_end
    from jobs.job_queue q
    where p_leases and q.lease_until <= p_now and q.lease_until > coalesce(p_after, '-infinity')
      and (p_holder is null or q.lease_holder is distinct from p_holder) and (p_only is null or q.job_id = any(p_only))
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
      and (p_only is null or q.job_id = any(p_only))
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
                -- A job that ran and waited for its retry keeps its last error (what ended that run: a
                -- handler's, a lease that passed) on the next line, as jobs.cancel and jobs.fail keep it.
                when s.stale then jobs.cut_error(format('expired: not started before %s',
                                         to_char(s.expires_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
                                         || coalesce(E'\n' || s.last_error, ''))
                else format('timed out: no ack within %s seconds (attempt %s of %s)', s.timeout, s.attempt, s.max_retries + 1)
                     || jobs.no_outcome_from(s.worker_id) end,
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
    set lease_until = null, lease_holder = null,
        -- At once, whatever its retry policy (which spaces nacks): the lease was
        -- the wait, and an expired job goes to the next consume (DESIGN).
        scheduled_at = q.lease_until, unstarted = 0, snoozed = 0,
        last_error = format('timed out: no ack within %s seconds (attempt %s of %s)', q.timeout, q.attempt, q.max_retries + 1)
                     || jobs.no_outcome_from(q.worker_id)
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
  -- The floor is no earlier than the probe from the start (as remembered;
  -- else, out of the clock's range, it failed every claim): else none.
  if v_parts is null or v_parts[1]::bigint > v_now or v_now - v_parts[2]::bigint > 10000000
     or v_parts[1]::bigint < v_parts[2]::bigint then
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
