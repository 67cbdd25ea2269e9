-- pgdrain 0045: the rare branches of jobs.pick (sql/0011), jobs.settle_arrays
-- (sql/0013) and jobs.publish_keyed (sql/0005), kept apart so that those
-- functions stay readable. Each is called only on its branch: a claim or a
-- settle of plain jobs (drain()'s) calls none of them, nor does a publish
-- of keyed jobs whose keys no running job holds.

-- jobs.pick's refusal of a claim of a queue with max_running or
-- group_concurrency outside READ COMMITTED (its count would be low): 0A000,
-- naming the queue, its limits and the isolation level.
create function jobs.raise_pick_isolation(p_queue text, p_max_running integer, p_group_cap integer)
returns void language plpgsql as $$
begin
  raise exception 'a claim of queue % (%) must run in a READ COMMITTED transaction, not %',
    quote_literal(p_queue), concat_ws(', ', 'max_running ' || p_max_running, 'group_concurrency ' || p_group_cap),
    upper(current_setting('transaction_isolation'))
    using errcode = '0A000', hint = 'where the database''s or the role''s default_transaction_isolation is another, '
      || 'set it for the role that claims: alter role … set default_transaction_isolation = ''read committed''';
end $$;

-- How many claimable jobs (up to 1000) a group-limited claim of p_queue
-- stepped over between the head it found (p_found) and the first job it
-- took (p_taken); 1000 when it took that job at another priority. jobs.pick
-- remembers p_taken as the group-limited claims' head only when they are
-- many (1000: the backlog of a group at its cap, which every claim would read
-- again); fewer cost little to read again, and a claim that starts past them
-- would leave a job whose group's slot came free waiting behind newer ones
-- for up to a second.
create function jobs.pick_stepped(p_queue text, p_found jobs.head, p_taken jobs.head)
returns integer language plpgsql as $$
declare
  v_stepped integer;
begin
  if (p_taken).priority <> (p_found).priority then
    return 1000;
  end if;
  select count(*) into v_stepped from (
    select 1 from jobs.job_queue q
    where q.queue = p_queue and q.lease_until is null and q.waiting_deps = 0 and not q.serial_wait
      and q.priority = (p_found).priority and (q.scheduled_at, q.job_id) >= ((p_found).scheduled_at, (p_found).job_id)
      and (q.scheduled_at, q.job_id) < ((p_taken).scheduled_at, (p_taken).job_id)
    order by q.scheduled_at, q.job_id
    limit 1000) s;
  return v_stepped;
end $$;

-- jobs.pick's filtered claim of a queue without group_concurrency: up to
-- p_n due jobs whose attributes contain p_filter (its GIN index), locked
-- (FOR UPDATE SKIP LOCKED), in claim order; the other arguments as
-- jobs.pick's (p_like: its pattern as a LIKE pattern; p_pick_at: the clock
-- an expires_at is compared with). Null when none.
create function jobs.pick_filtered(p_queue text, p_filter jsonb, p_now timestamptz, p_like text, p_max_timeout numeric,
                                   p_exclude jsonb[], p_pick_at timestamptz, p_n integer)
returns bigint[] language plpgsql as $$
declare
  v_ids bigint[];
begin
  select array_agg(p.job_id) into v_ids from (
    select q.job_id from jobs.job_queue q
    where q.attributes @> p_filter
      and q.queue = p_queue and q.lease_until is null and q.waiting_deps = 0 and not q.serial_wait
      and q.scheduled_at <= p_now
      and (q.task like p_like or p_like is null and q.task not like 'sql:%')
      and (p_max_timeout is null or q.timeout <= p_max_timeout)
      and (p_exclude is null or not q.attributes @> any(p_exclude))
      and (q.expires_at is null or q.expires_at > p_pick_at)
    order by q.priority desc, q.scheduled_at, q.job_id
    limit p_n
    for update skip locked) p;
  return v_ids;
end $$;

-- jobs.settle_arrays' refusal of a batch whose ids, attempts or outcomes
-- hold a null or an outcome it does not know: PD008 outcomes, naming the
-- first such outcome (as text; 'null' for a null one).
create function jobs.raise_bad_outcomes(p_ids bigint[], p_attempts integer[], p_outcomes text[])
returns void language plpgsql as $$
declare
  v_bad text;
begin
  select min(coalesce(x.outcome, 'null'))
           filter (where x.outcome is null or x.outcome not in ('ack', 'nack', 'fail', 'release')
                      or x.id is null or x.attempt is null)
  into v_bad
  from unnest(p_ids, p_attempts, p_outcomes) as x(id, attempt, outcome);
  perform jobs.raise_invalid('PD008', 'outcomes',
    format('every element needs id, attempt and an outcome of ack, nack, fail or release (got %s)', v_bad));
end $$;

-- jobs.settle_arrays' releases (outcome release), called only for a batch
-- with one: each delivery that still runs (p_worker_id's, when given) and
-- whose cancel was not requested is given back, its attempt not spent. With
-- a retry_at, a snooze (it ran: unstarted 0, snoozed counts): it runs again
-- then. Its last_error: jobs.release_error. Answers how many, and their jobs
-- and the attempts of the deliveries released.
create function jobs.settle_releases(p_ids bigint[], p_attempts integer[], p_outcomes text[], p_retry_at timestamptz[],
                                     p_errors text[], p_worker_id text,
                                     out released integer, out ids bigint[], out attempts integer[])
language plpgsql as $$
begin
  with o as (
    select * from unnest(p_ids, p_attempts, p_outcomes, p_retry_at, p_errors) as x(id, attempt, outcome, retry_at, error)
    where x.outcome = 'release' and x.attempt > 0
  ), done as (
    update jobs.job_queue q
    set lease_until = null, lease_holder = null, attempt = q.attempt - 1, started_at = null,
        scheduled_at = coalesce(o.retry_at, q.scheduled_at),
        unstarted = case when o.error is not null then q.unstarted + 1 when o.retry_at is not null then 0 else q.unstarted end,
        snoozed = case when o.error is not null then 0 when o.retry_at is not null then least(q.snoozed, 2147483646) + 1 else q.snoozed end,
        last_error = jobs.release_error(q.last_error, o.error, o.retry_at, q.unstarted, q.snoozed)
    from o
    where q.job_id = o.id and q.attempt = o.attempt and case when q.lease_until is null then false else true end
      and q.cancel_requested_at is null
      and (p_worker_id is null or q.worker_id = p_worker_id)
    returning q.job_id, o.attempt
  )
  select count(*), coalesce(array_agg(d.job_id), '{}'), coalesce(array_agg(d.attempt), '{}')
  into released, ids, attempts from done d;
end $$;

-- jobs.settle_arrays' answer (p_result) for a batch with a stale outcome.
-- With a worker_id, those its earlier settle applied count as what they did
-- (jobs.settle_resent); whichever stay stale are named ("stale_ids"), so a
-- drain's report does not list them as failures. The deliveries the call
-- ended (p_ended, their attempts read back here by primary key), retried
-- or released (p_touched, p_touched_at) are left out: their rows now look
-- the same. By delivery (id and attempt), not job: a call may carry a
-- stale outcome of a job's earlier delivery and the next one's, which applied.
create function jobs.settle_stale(p_result jsonb, p_ids bigint[], p_attempts integer[], p_outcomes text[], p_errors text[],
                                  p_worker_id text, p_ended bigint[], p_touched bigint[], p_touched_at integer[])
returns jsonb language plpgsql as $$
declare
  v_settled bigint[];      -- the jobs the call ended, retried or released
  v_settled_at integer[];  -- the attempts of those deliveries, as v_settled
begin
  select coalesce(array_agg(j.job_id), '{}') || p_touched, coalesce(array_agg(j.attempts), '{}') || p_touched_at
  into v_settled, v_settled_at
  from jobs.job j where j.job_id = any(p_ended);
  if p_worker_id is not null then
    return jobs.settle_resent(p_result, p_ids, p_attempts, p_outcomes, p_errors, p_worker_id, v_settled, v_settled_at);
  end if;
  return p_result || jsonb_build_object('stale_ids', (
    select string_agg(x.id || ':' || x.attempt, ',') from unnest(p_ids, p_attempts) as x(id, attempt)
    where x.attempt <= 0 or not exists (select 1 from unnest(v_settled, v_settled_at) as s(id, attempt)
                                        where s.id = x.id and s.attempt = x.attempt)));
end $$;

-- jobs.publish_keyed's count of the passes a keep_waiting key's holder was
-- held in (a key once per pass: p_busy_keys by a settle or a cancel,
-- p_claimed_keys by a claim, counted apart): PD011 dedupe_key once one key
-- was held in four, as jobs.publish gives up after four. Counted by key,
-- not by pass: a bulk of many keys whose running holders drains settle one
-- batch after another finds a new one held in most passes, and made
-- progress in each; each pass that waits counts a key, none more than three
-- times, so the passes end. A holder not started yet that a claim holds
-- counts apart, four passes too: the claims of a drain taking such holders
-- batch after batch, then settling them, would otherwise add to the
-- settles' count of the same key and end bulks in PD011 that made progress
-- in each pass (bench/keep-waiting-stress.ts: one to three in three of four
-- 30 s runs; counted apart, one in about four runs, as without the claims' waits).
create function jobs.check_busy_passes(p_busy_keys text[], p_claimed_keys text[])
returns void language plpgsql immutable as $$
begin
  if exists (select from unnest(p_busy_keys) k group by k having count(*) >= 4)
     or exists (select from unnest(p_claimed_keys) k group by k having count(*) >= 4) then
    perform jobs.raise_invalid('PD011', 'dedupe_key', 'kept changing hands while publishing; try again');
  end if;
end $$;

-- jobs.publish_keyed's wait for the keep_waiting holders a pass found held
-- (p_busy), its own locks let go: each row waited for alone and let go at
-- once (a settle ending two holders holds one while waiting for the other).
create function jobs.wait_busy(p_busy bigint[])
returns void language plpgsql as $$
declare
  v_id bigint;
begin
  foreach v_id in array p_busy loop
    begin
      perform from jobs.job_queue q where q.job_id = v_id for update;
      raise sqlstate 'PDA97';
    exception when sqlstate 'PDA97' then
      null;
    end;
  end loop;
end $$;

-- jobs.publish_keyed's serial keys (p_serials, by position of p_keys) with
-- those of the running holders whose dedupe keys its jobs take over
-- (p_freed, p_freed_serials) at the positions that give none. With
-- p_bounded, PD012 serial_keys past jobs.max_serial_keys() distinct keys, as
-- jobs.publish_arrays bounds the keys it is given (jobs.lock_serial_keys).
create function jobs.keyed_serials(p_keys text[], p_serials text[], p_freed text[], p_freed_serials text[],
                                   p_bounded boolean default false)
returns text[] language plpgsql as $$
declare
  v_serials text[];
begin
  select array_agg(coalesce(x.serial, f.serial) order by x.ord) into v_serials
  from unnest(p_keys, p_serials) with ordinality as x(key, serial, ord)
  left join unnest(p_freed, p_freed_serials) f(key, serial) on f.key = x.key;
  if p_bounded and (select count(distinct k) from unnest(v_serials) k) > jobs.max_serial_keys() then
    perform jobs.raise_invalid('PD012', 'serial_keys', format('must hold at most %s distinct keys in one bulk '
      || 'publish, counting those its jobs take from running jobs being cancelled (keep_waiting: running or '
      || 'waiting to retry) whose dedupe keys they take over (each takes a lock until the publish commits): '
      || 'publish more in several', jobs.max_serial_keys()));
  end if;
  return v_serials;
end $$;

-- jobs.publish_keyed's keep_waiting positions answered with a job another
-- publish wrote since the pass (p_late; p_ids, p_keys: the answer by
-- position): those not started yet are held until commit (FOR KEY SHARE,
-- skipped when another transaction holds them), added to kept; the rest
-- are busy (ordered by id), their keys counted by the key each was
-- answered for: busy_keys (one gone, ended, or started) or claimed_keys
-- (one a claim holds), for jobs.check_busy_passes.
create function jobs.keyed_late(p_late bigint[], p_ids bigint[], p_keys text[], p_now timestamptz, inout kept bigint[],
                                out busy bigint[], out busy_keys text[], out claimed_keys text[])
language plpgsql as $$
begin
  select coalesce(kept, '{}') || coalesce(array_agg(x.job_id), '{}') into kept
  from (select q.job_id from jobs.job_queue q
        where q.job_id = any(p_late)
          and q.lease_until is null and q.attempt = 0 and not coalesce(q.expires_at <= p_now, false)
        for key share skip locked) x;
  select array_agg(l.id order by l.id), array_agg(l.key) filter (where not coalesce(x.waiting, false)),
         array_agg(l.key) filter (where x.waiting)
    into busy, busy_keys, claimed_keys
  from (select distinct p.id, p.key from unnest(p_ids, p_keys) p(id, key) where p.id = any(p_late)) l
  left join lateral (select q.lease_until is null and q.attempt = 0 and not coalesce(q.expires_at <= p_now, false) as waiting
                     from jobs.job_queue q where q.job_id = l.id) x on true
  where l.id <> all(kept);
end $$;
