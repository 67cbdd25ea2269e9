-- pgdrain 0013: settling deliveries (ack, nack, release), one statement per batch (jobs.settle_arrays).

-- Settles many deliveries at once, given as column arrays: element i of
-- each array belongs to delivery i (results, errors, retry_at and ms may be
-- null, or hold nulls; given, one element per delivery: PD008 names the array
-- that has not, a retry_at at ±infinity, or an ms below 0, NaN or infinite;
-- PD007 now at ±infinity). outcomes[i] is one of
--   ack      job ids[i], attempt attempts[i] succeeded with results[i], taking ms[i] ms
--   nack     it failed with errors[i]: retry (at retry_at[i], else after the backoff
--            from the call, jobs.call_time: the job's own retry policy, else its
--            queue's, by jobs.queue_backoff; else jobs.backoff)
--   fail     it failed with errors[i]: no retry (a null error of a nack or fail:
--            jobs.settle_error's default; one past 8192 characters is cut, jobs.cut_error)
--   release  give it back unstarted, its attempt not spent; with retry_at[i], it runs again then (a snooze:
--            SnoozeJob, ctx.rateLimit); errors[i], why (drain(): no connection came free in time), heads its
--            last_error (jobs.release_error); the 26th such in a row is a nack instead (jobs.unstarted_bound)
-- An outcome applies only while that delivery runs: the job is still on that
-- attempt and leased (by worker_id, when given). So a drain whose lease
-- expired and whose job went to another drain cannot settle the newer
-- delivery, and a delivery already settled (nacked, released, or expired by
-- a claim) cannot be settled again, by a late ack either: counted as stale
-- (but see jobs.settle_resent, sql/0044, for a settle sent again); so is one
-- for attempt 0 or below (no delivery has it: a job leased at attempt 0 is a
-- dependant a cascade deferred, jobs.after_end, which only its expiry ends).
-- A release gives the attempt back, so the next delivery has the same
-- attempt number: only worker_id tells the two apart, and a drain passes it.
-- A nack with retries left schedules the job again; with none left, it fails.
-- A job whose cancel was requested while it ran (jobs.cancel) ends cancelled on any
-- outcome but ack (the work was done: a success). This is drain()'s form: arrays cost the server far less to
-- read than JSON. Returns {"succeeded", "failed", "cancelled", "retried",
-- "released", "stale"}, "cancelled_ids" (the deliveries it ended cancelled,
-- as id:attempt: '12:1,15:3') when any, "stale_ids" (those it found stale,
-- '12:1,15:2') when any, "never_started_ids" (the releases it made nacks)
-- when any: deliveries, as a settle may carry two of one job.
create function jobs.settle_arrays(
  ids      bigint[],
  attempts integer[],
  outcomes text[],
  results  jsonb[]            default null,
  errors   text[]             default null,
  retry_at timestamptz[]      default null,
  ms       double precision[] default null,
  now      timestamptz        default null,
  worker_id text              default null
) returns jsonb language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := jobs.clock(settle_arrays.now);
  v_bad text;
  v_n integer;  -- deliveries given
  v_result jsonb;
  v_deps boolean;
  v_ended bigint[];
  v_ok bigint[];
  v_bad_ids bigint[];
  v_keys text[];
  v_own_dead boolean;
  v_nacks boolean;
  v_policies jsonb;
  v_releases boolean;
  v_retried integer := 0;
  v_released integer := 0;
  v_touched bigint[] := '{}'; -- retried or released by this call
  v_touched_at integer[] := '{}'; -- the attempts of their deliveries it settled, as v_touched
  v_from timestamptz;  -- what a retry's backoff counts from (jobs.call_time)
  v_never text;  -- the releases made nacks (jobs.unstarted_bound), as id:attempt
begin
  v_n := coalesce(cardinality(settle_arrays.ids), 0);
  if coalesce(cardinality(settle_arrays.attempts), 0) <> v_n or coalesce(cardinality(settle_arrays.outcomes), 0) <> v_n then
    perform jobs.raise_invalid('PD008', 'outcomes', 'ids, attempts and outcomes must have one element per delivery');
  end if;
  -- So do results, errors, retry_at and ms when given: a shorter errors would
  -- end the last deliveries with no error recorded, a longer one drop some.
  v_bad := case when cardinality(settle_arrays.results) <> v_n then 'results' when cardinality(settle_arrays.errors) <> v_n then 'errors'
                when cardinality(settle_arrays.retry_at) <> v_n then 'retry_at' when cardinality(settle_arrays.ms) <> v_n then 'ms' end;
  if v_bad is not null then
    perform jobs.raise_invalid('PD008', v_bad, format('must be null or hold one element per delivery, as ids does (%s)', v_n));
  end if;
  -- Array operators first (a tenth of the cost of reading the arrays as
  -- rows, on every batch); the rows only to name what is wrong. A null
  -- element is never contained (<@), so a null outcome fails that test.
  if array_position(settle_arrays.ids, null) is not null or array_position(settle_arrays.attempts, null) is not null
     or not settle_arrays.outcomes <@ array['ack', 'nack', 'fail', 'release'] then
    perform jobs.raise_bad_outcomes(settle_arrays.ids, settle_arrays.attempts, settle_arrays.outcomes);
  end if;
  -- Errors past jobs.cut_error's bound, cut once here for the whole statement. Only a batch
  -- with a nack, fail or release with a reason has errors: acks pay nothing; one with errors,
  -- a size read per error (octet_length, from the header) unless one is that long.
  if settle_arrays.errors is not null and exists (select 1 from unnest(settle_arrays.errors) e where octet_length(e) > 8192) then
    settle_arrays.errors := array(select jobs.cut_error(x.e) from unnest(settle_arrays.errors) with ordinality as x(e, i) order by x.i);
  end if;
  v_nacks := 'nack' = any(settle_arrays.outcomes);
  v_releases := 'release' = any(settle_arrays.outcomes);
  -- A retry or a snooze at ±infinity would break job_queue_scheduled_at_finite deep in the update below: refused
  -- here, naming the field (before jobs.unstarted_bound drops some). Only a batch with a nack or a release looks.
  if (v_nacks or v_releases) and settle_arrays.retry_at && array['infinity', '-infinity']::timestamptz[] then
    perform jobs.raise_invalid('PD008', 'retry_at', 'must hold finite times or nulls, got infinity');
  end if;
  -- A release with a reason of a job given back so unstarted 25 times in a row is a nack, retried after the backoff (jobs.unstarted_bound).
  if settle_arrays.errors is not null and v_releases then
    select b.outcomes, b.errors, b.never, b.retry_at into settle_arrays.outcomes, settle_arrays.errors, v_never, settle_arrays.retry_at
    from jobs.unstarted_bound(settle_arrays.ids, settle_arrays.attempts, settle_arrays.outcomes, settle_arrays.errors, settle_arrays.retry_at,
                              settle_arrays.worker_id) b;
    v_nacks := v_nacks or v_never is not null;
  end if;
  -- A duration (kept as duration_ms) below 0, NaN or infinite is none: two comparisons per element
  -- in C (about 3 us a batch of 500), no rows but to name the first. NaN sorts above Infinity.
  if 0 > any(settle_arrays.ms) or 'Infinity' <= any(settle_arrays.ms) then
    perform jobs.raise_invalid('PD008', 'ms', format('must hold finite numbers of milliseconds, 0 or more, or nulls, got %s',
      (select x from unnest(settle_arrays.ms) x where x < 0 or x >= 'Infinity' limit 1)));
  end if;

  -- Retries and releases first, each only when the batch has one: a batch of
  -- acks then pays for nothing but its delete and its history insert.
  if v_nacks then
    v_from := jobs.call_time(settle_arrays.now, v_now);  -- once per statement, only for a batch with a nack
    -- The retry policies of the batch's queues that have one (jobs.queue.retry_*),
    -- read once for the statement, not per job; a job of any other queue
    -- waits jobs.backoff(attempt), which users may have replaced.
    if exists (select 1 from jobs.queue r
               where r.retry_delay is not null or r.retry_backoff is not null or r.retry_delay_max is not null) then
      select jsonb_object_agg(r.name, jsonb_build_array(r.retry_delay, r.retry_backoff, r.retry_delay_max))
      into v_policies
      from jobs.queue r
      where (r.retry_delay is not null or r.retry_backoff is not null or r.retry_delay_max is not null)
        and r.name in (select q.queue from unnest(settle_arrays.ids, settle_arrays.outcomes) as x(id, outcome)
                       join jobs.job_queue q on q.job_id = x.id where x.outcome = 'nack');
    end if;
    with o as (
      select * from unnest(settle_arrays.ids, settle_arrays.attempts, settle_arrays.outcomes,
                           settle_arrays.errors, settle_arrays.retry_at) as x(id, attempt, outcome, error, retry_at)
      where x.outcome = 'nack' and x.attempt > 0
    ), retried as (
      update jobs.job_queue q
      set lease_until = null, lease_holder = null,
          -- The backoff from the call's time (v_from): a nack inside a transaction
          -- open longer than it would otherwise schedule a retry already due
          -- at commit, with no backoff at all.
          scheduled_at = coalesce(o.retry_at, v_from + case
            -- The job's own policy (jobs.publish's retry_*), read only here: for jobs that retry.
            when q.retry_delay is not null or q.retry_backoff is not null or q.retry_delay_max is not null
            then jobs.queue_backoff(q.attempt, q.retry_delay, q.retry_backoff, q.retry_delay_max)
            when v_policies ? q.queue
            then jobs.queue_backoff(q.attempt, (v_policies->q.queue->>0)::numeric, (v_policies->q.queue->>1)::boolean,
                                    (v_policies->q.queue->>2)::numeric)
            else jobs.backoff(q.attempt) end),
          last_error = jobs.settle_error(o.outcome, o.error), unstarted = 0, snoozed = 0
      from o
      where q.job_id = o.id and q.attempt = o.attempt and q.attempt <= q.max_retries
        -- A CASE, not "lease_until is not null": as in the delete below.
        and q.cancel_requested_at is null and case when q.lease_until is null then false else true end
        and (settle_arrays.worker_id is null or q.worker_id = settle_arrays.worker_id)
      returning q.job_id, q.attempt
    )
    select count(*), coalesce(array_agg(job_id), '{}'), coalesce(array_agg(attempt), '{}')
    into v_retried, v_touched, v_touched_at from retried;
  end if;
  if v_releases then  -- a give-back or a snooze: jobs.settle_releases
    select r.released, v_touched || r.ids, v_touched_at || r.attempts into v_released, v_touched, v_touched_at
    from jobs.settle_releases(settle_arrays.ids, settle_arrays.attempts, settle_arrays.outcomes, settle_arrays.retry_at,
                              settle_arrays.errors, settle_arrays.worker_id) r;
  end if;

  v_deps := exists (select 1 from jobs.dependency); -- asked again below, after the statement
  with o as materialized (
    select * from unnest(settle_arrays.ids, settle_arrays.attempts, settle_arrays.outcomes, settle_arrays.results,
                         settle_arrays.errors, settle_arrays.ms) as x(id, attempt, outcome, result, error, ms)
    where x.attempt > 0
  ), ending as (
    delete from jobs.job_queue q using o
    where q.job_id = o.id and q.attempt = o.attempt
      -- The delivery still runs. A CASE, not "lease_until is not null": with
      -- that, statistics from a queue of pending jobs (no lease anywhere) make
      -- the planner read the lease index, over every running job and every
      -- dead entry, instead of probing the primary key once per outcome.
      and case when q.lease_until is null then false else true end
      and (settle_arrays.worker_id is null or q.worker_id = settle_arrays.worker_id)
      and (o.outcome in ('ack', 'fail') or (o.outcome = 'nack' and q.attempt > q.max_retries)
           or (q.cancel_requested_at is not null and o.outcome in ('nack', 'release')))
    returning q.*, o.outcome, o.result, o.error, o.ms
  ), ended as (
    insert into jobs.job (job_id, task, body, status, result, error, attempts, priority, max_retries,
                          timeout, scheduled_at, created_at, started_at, ended_at, duration_ms,
                          queue, dedupe_key, serial_key, attributes, worker_id,
                          retry_delay, retry_backoff, retry_delay_max, dead_letter, expires_at, group_id, group_tier)
    select e.job_id, e.task, e.body,
           case when e.outcome = 'ack' then 'success'
                when e.cancel_requested_at is not null then 'cancelled' else 'failure' end,
           e.result,
           case when e.outcome = 'ack' then e.last_error
                -- Cut whole (each part alone is within the bound; together they may not be).
                when e.cancel_requested_at is not null then jobs.cut_error(coalesce(e.cancel_reason, 'cancelled')
                     || coalesce(E'\n' || e.error, ''))
                else jobs.settle_error(e.outcome, e.error) end,
           e.attempt, e.priority, e.max_retries, e.timeout, e.scheduled_at,
           e.created_at, e.started_at, v_now,
           coalesce(e.ms, extract(epoch from v_now - e.started_at) * 1000),
           e.queue, e.dedupe_key, e.serial_key, e.attributes, e.worker_id,
           e.retry_delay, e.retry_backoff, e.retry_delay_max, e.dead_letter, e.expires_at, e.group_id, e.group_tier
    from ending e
    returning job_id, status, serial_key, dead_letter
  ), counts as (
    select count(*) filter (where status = 'success') as succeeded,
           count(*) filter (where status = 'failure') as failed,
           count(*) filter (where status = 'cancelled') as cancelled,
           array_agg(job_id) as ids,
           array_agg(job_id) filter (where v_deps and status = 'success') as ok_ids,
           array_agg(job_id) filter (where v_deps and status <> 'success') as bad_ids,
           array_agg(serial_key) filter (where serial_key is not null) as keys,
           -- Read from the rows in hand: jobs.route_dead_letters' early exit.
           coalesce(bool_or(status = 'failure' and dead_letter is not null), false) as own_dead
    from ended
  )
  select jsonb_build_object(
    'succeeded', c.succeeded,
    'failed',    c.failed,
    'cancelled', c.cancelled,
    'retried',   v_retried,
    'released',  v_released,
    'stale',     cardinality(settle_arrays.ids) - c.succeeded - c.failed - c.cancelled - v_retried - v_released),
    c.ids, c.ok_ids, c.bad_ids, c.keys, c.own_dead
  into v_result, v_ended, v_ok, v_bad_ids, v_keys, v_own_dead
  from counts c;
  if v_ended is not null then
    -- Which jobs it ended cancelled (a nack or release that met a cancel
    -- requested while the job ran): "cancelled_ids", as id:attempt in one
    -- comma-separated text, only when there are any, so a drain's report
    -- does not say it will retry them. Read back only then: acks pay nothing.
    if (v_result->>'cancelled')::integer > 0 then
      v_result := v_result || jsonb_build_object('cancelled_ids',
        (select string_agg(j.job_id || ':' || j.attempts, ',') from jobs.job j where j.job_id = any(v_ended) and j.status = 'cancelled'));
    end if;
    perform jobs.notify_ids('pgdrain_completed', v_ended);
    -- Only when one failed: a batch of acks pays nothing for it.
    if (v_result->>'failed')::integer > 0 then
      perform jobs.route_dead_letters(v_ended, v_now, v_own_dead);
    end if;
    -- Asked again after the statement, with a snapshot of its own: a
    -- dependant published while the delete waited on its dependency's row
    -- (locked by jobs.lock_dependencies) is visible only now, and must not
    -- be stranded. (Before it, the ask spares plain batches the split.)
    if not v_deps and exists (select 1 from jobs.dependency) then
      v_deps := true;
      select array_agg(j.job_id) filter (where j.status = 'success'), array_agg(j.job_id) filter (where j.status <> 'success')
      into v_ok, v_bad_ids from jobs.job j where j.job_id = any(v_ended);
    end if;
    if v_deps or v_keys is not null then
      perform jobs.after_end(v_ok, v_bad_ids, v_keys, v_now);
    end if;
  end if;
  if (v_result->>'stale')::integer > 0 then  -- which, and those a worker's earlier settle applied: jobs.settle_stale
    v_result := jobs.settle_stale(v_result, settle_arrays.ids, settle_arrays.attempts, settle_arrays.outcomes, settle_arrays.errors,
                                  settle_arrays.worker_id, v_ended, v_touched, v_touched_at);
  end if;
  if v_never is not null then  -- with those jobs.settle_resent named (releases an earlier call made nacks)
    v_result := v_result || jsonb_build_object('never_started_ids', concat_ws(',', v_never, v_result->>'never_started_ids')); end if;
  return v_result;
end $$;
