-- pgdrain 0014: the settle calls over jobs.settle_arrays: settle, ack, nack,
-- release, cancel_requested; and its count of a settle sent again
-- (jobs.settle_resent).

-- A worker's settle sent again (its reply lost, the drain sent it again)
-- finds its outcomes already applied: with a worker_id, an outcome that
-- matches no running delivery but whose own end is there (jobs.job: same
-- attempt, worker and status, and for a failure its error; or, still
-- pending, its retry or its release) is counted as what it did, not as stale.
-- Without one (SQL callers, a transactional ack) it stays stale:
-- another delivery of the same attempt (after a release) could have ended
-- it, and those callers read "succeeded" as their own ack. So, of
-- jobs.settle_arrays' stale outcomes (p_result: its counts), those its
-- earlier settle applied count as what they did; p_settled, p_settled_at: the deliveries (job and attempt) this call
-- ended, retried or released, left out (their rows now look the same); a stale
-- outcome of another delivery of such a job is not. Called only for a batch with a stale outcome and a worker_id:
-- a primary-key probe per stale outcome, so the outcomes that matched a running delivery never read jobs.job. Those that stay stale (attempt 0 or below too) are answered as
-- stale_ids (id:attempt), when any is; releases its earlier settle made nacks, as never_started_ids.
create function jobs.settle_resent(p_result jsonb, p_ids bigint[], p_attempts integer[], p_outcomes text[],
                                   p_errors text[], p_worker_id text, p_settled bigint[], p_settled_at integer[])
returns jsonb language sql stable as $$
  with o as (
    select * from unnest(p_ids, p_attempts, p_outcomes, p_errors) as x(id, attempt, outcome, error)
    where not exists (select 1 from unnest(p_settled, p_settled_at) as s(id, attempt) where s.id = x.id and s.attempt = x.attempt)
  ), applied as (
    -- counted: null when it stays stale.
    select o.id, o.attempt, o.outcome, case when o.attempt > 0 and case o.outcome
      when 'ack' then j.status = 'success'
      -- A release that met a cancel ends the job; else it gave the attempt back, or was a nack (jobs.unstarted_bound).
      -- That nack's error whole, with this release's reason (as jobs.unstarted_bound writes it): not a prefix anyone's nack can write.
      when 'release' then j.status = 'cancelled' or q.attempt = o.attempt - 1 or coalesce(j.error, q.last_error) = jobs.cut_error(format(
        'never started: released unstarted 25 times in a row, so nacked this time, its attempt spent; this time too: %s', o.error))
      -- The error tells this worker's end from its lease's expiry (jobs.expire's
      -- 'timed out: …') or a jobs.fail, which end the same delivery.
      else (j.status = 'failure' and j.error is not distinct from jobs.settle_error(o.outcome, o.error))
        or (j.status = 'cancelled' and (o.error is null or right(j.error, length(o.error) + 1) = E'\n' || o.error
          -- Or cut whole (jobs.cut_error): its marker gives the length of the reason before the error.
          or j.error = jobs.cut_error(rpad(j.error, 8127 + coalesce(substring(j.error from '\((\d+) characters cut\)$')::integer, 0)
                                                   - length(o.error), ' ') || E'\n' || o.error)))
        or (o.outcome = 'nack' and q.attempt = o.attempt and q.last_error is not distinct from jobs.settle_error(o.outcome, o.error))
      end
      then coalesce(j.status, case when q.attempt = o.attempt then 'retried' else 'released' end) end as counted
    from o
    left join jobs.job j on o.attempt > 0 and j.job_id = o.id and j.attempts = o.attempt and j.worker_id = p_worker_id
    left join jobs.job_queue q on o.attempt > 0 and j.job_id is null and q.job_id = o.id and q.worker_id = p_worker_id
      and case when q.lease_until is null then true else false end -- pending again: not a running delivery
  )
  -- Merged into p_result: its cancelled_ids gain those this worker's earlier settle cancelled.
  select p_result || jsonb_build_object(
    'succeeded', (p_result->>'succeeded')::integer + count(*) filter (where a.counted = 'success'),
    'failed',    (p_result->>'failed')::integer + count(*) filter (where a.counted = 'failure'),
    'cancelled', (p_result->>'cancelled')::integer + count(*) filter (where a.counted = 'cancelled'),
    'retried',   (p_result->>'retried')::integer + count(*) filter (where a.counted = 'retried'),
    'released',  (p_result->>'released')::integer + count(*) filter (where a.counted = 'released'),
    'stale',     (p_result->>'stale')::integer - count(a.counted))
    || case when count(*) filter (where a.counted = 'cancelled') = 0 then '{}'::jsonb
            else jsonb_build_object('cancelled_ids', concat_ws(',', p_result->>'cancelled_ids',
                                    string_agg(a.id || ':' || a.attempt, ',') filter (where a.counted = 'cancelled'))) end
    || case when count(*) = count(a.counted) then '{}'::jsonb
            else jsonb_build_object('stale_ids', string_agg(a.id || ':' || a.attempt, ',') filter (where a.counted is null)) end
    || case when bool_or(a.outcome = 'release' and a.counted in ('retried', 'failure')) then jsonb_build_object('never_started_ids',
         string_agg(a.id || ':' || a.attempt, ',') filter (where a.outcome = 'release' and a.counted in ('retried', 'failure'))) else '{}' end
  from applied a
$$;

-- A release's last_error (jobs.settle_arrays): with a reason (p_reason: why
-- its consumer could not start the job; drain(): no connection came free in
-- time), 'released unstarted (3 in a row): <reason>', the count p_unstarted
-- (the job's before this one, jobs.job_queue.unstarted) plus one, the reason on one line
-- (line breaks become spaces), at most 1000 characters; with p_retry_at and
-- no reason, a snooze: 'snoozed until 2030-01-01T09:00:00.000Z (3 in a row)', the count p_snoozed
-- (jobs.job_queue.snoozed) plus one (at most 2147483647: it stays there); with neither, last_error as it was. The line replaces the one an earlier
-- release (p_unstarted > 0) or snooze (p_snoozed > 0) wrote, its first line then (reasons never pile up), above the last
-- run's error, which keeps its first line whatever it says (one that reads as such a line too: the counts are columns,
-- not read from text); cut whole (jobs.cut_error): after one of 8 KiB it is past the bound.
create function jobs.release_error(p_last_error text, p_reason text, p_retry_at timestamptz, p_unstarted integer,
                                   p_snoozed integer)
returns text language sql stable as $$
  select case when p_reason is null and p_retry_at is null then p_last_error else jobs.cut_error(
    case when p_reason is not null
         then format('released unstarted (%s in a row): %s', p_unstarted + 1, left(translate(p_reason, E'\r\n', '  '), 1000))
         else format('snoozed until %s (%s in a row)', to_char(p_retry_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                     least(p_snoozed, 2147483646) + 1) end
    || coalesce(E'\n' || nullif(case when p_unstarted > 0 or p_snoozed > 0
                                     then substr(p_last_error, strpos(p_last_error || E'\n', E'\n') + 1) else p_last_error end, ''), '')) end
$$;

-- Releases with a reason are bounded: a consumer that never has room to start a job (a
-- pool that stays full) would give it back without end. The release of one given back so 25 times in a row already
-- (jobs.job_queue.unstarted) is a nack instead, with an error saying so (replacing last_error, as any nack's; cut whole): its
-- attempt spent, it is retried after the backoff (the release's retry_at dropped: a failed attempt), or fails once
-- its retries are spent (its count starts again). Only a release
-- jobs.settle_arrays applies (that delivery leased, by p_worker_id when given, no cancel requested): a stale one
-- stays a release, stale. Answers jobs.settle_arrays' outcomes, errors and retry_at with those releases made nacks,
-- and those deliveries as id:attempt ('12:1,15:3'; null when none).
create function jobs.unstarted_bound(p_ids bigint[], p_attempts integer[], p_outcomes text[], p_errors text[], p_retry_at timestamptz[],
  p_worker_id text, out outcomes text[], out errors text[], out never text, out retry_at timestamptz[])
language sql stable as $$
  select array_agg(case when b.over then 'nack' else x.outcome end order by x.i),
         array_agg(case when b.over then jobs.cut_error(format('never started: released unstarted 25 times in a row, so nacked '
                                                || 'this time, its attempt spent; this time too: %s', x.error)) else x.error end order by x.i),
         string_agg(x.id || ':' || x.attempt, ',') filter (where b.over),
         case when p_retry_at is not null then array_agg(case when b.over then null else x.retry_at end order by x.i) end
  from unnest(p_ids, p_attempts, p_outcomes, p_errors, p_retry_at) with ordinality as x(id, attempt, outcome, error, retry_at, i)
  cross join lateral (select x.outcome = 'release' and x.error is not null and exists (
    select 1 from jobs.job_queue q
    where q.job_id = x.id and q.attempt = x.attempt and q.unstarted >= 25 and case when q.lease_until is null then false else true end
      and q.cancel_requested_at is null and (p_worker_id is null or q.worker_id = p_worker_id))) as b(over)
$$;

-- jobs.settle_arrays with the deliveries as a JSON array, for SQL callers:
--   {"id": job_id, "attempt": n, "outcome": "ack",     "result": any, "ms": number}
--   {"id": job_id, "attempt": n, "outcome": "nack",    "error": text, "retry_at": timestamptz | null}
--   {"id": job_id, "attempt": n, "outcome": "fail",    "error": text}
--   {"id": job_id, "attempt": n, "outcome": "release", "retry_at": timestamptz | null, "error": text | null}
-- (a release's error: why it was given back unstarted, jobs.release_error; bounded: jobs.unstarted_bound)
create function jobs.settle(outcomes jsonb, now timestamptz default null)
returns jsonb language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_bad text;
  v_ids bigint[];
  v_attempts integer[];
  v_outcomes text[];
  v_results jsonb[];
  v_errors text[];
  v_retry_at timestamptz[];
  v_ms double precision[];
begin
  if settle.outcomes is null or jsonb_typeof(settle.outcomes) <> 'array' then
    perform jobs.raise_invalid('PD008', 'outcomes', 'must be a JSON array');
  end if;
  select min(jsonb_typeof(o.value)) filter (where jsonb_typeof(o.value) <> 'object') into v_bad
  from jsonb_array_elements(settle.outcomes) o;
  if v_bad is not null then
    perform jobs.raise_invalid('PD008', 'outcomes', format('every element must be an object, got %s', v_bad));
  end if;
  -- A misspelt key ("reslt") would be dropped by jsonb_to_recordset, its value lost.
  select format('outcomes[%s].%s', o.ord, k.key) into v_bad
  from jsonb_array_elements(settle.outcomes) with ordinality o(value, ord), jsonb_object_keys(o.value) k(key)
  where k.key not in ('id', 'attempt', 'outcome', 'result', 'error', 'retry_at', 'ms')
  order by o.ord limit 1;
  if v_bad is not null then
    perform jobs.raise_invalid('PD008', 'outcomes', format(
      'unknown field %s (counting from 1): an element takes id, attempt, outcome, result, error, retry_at and ms', v_bad));
  end if;
  -- One aggregation: every array sees the rows in the same order. A value of
  -- the wrong type (an id "x", a retry_at "soon") is named here, not raised
  -- as a cast error from inside.
  begin
    select coalesce(array_agg(x.id), '{}'), coalesce(array_agg(x.attempt), '{}'), coalesce(array_agg(x.outcome), '{}'),
           array_agg(x.result), array_agg(x.error), array_agg(x.retry_at), array_agg(x.ms)
    into v_ids, v_attempts, v_outcomes, v_results, v_errors, v_retry_at, v_ms
    from jsonb_to_recordset(settle.outcomes)
      as x(id bigint, attempt integer, outcome text, result jsonb, error text, retry_at timestamptz, ms double precision);
  exception when invalid_text_representation or numeric_value_out_of_range or invalid_datetime_format
                 or datetime_field_overflow then
    perform jobs.raise_invalid('PD008', 'outcomes', format(
      'id and attempt must be integers, retry_at a time, ms a number (%s)', sqlerrm));
  end;
  return jobs.settle_arrays(v_ids, v_attempts, v_outcomes, v_results, v_errors, v_retry_at, v_ms, settle.now);
end $$;

-- The checks of ack's and nack's arguments (PD008, PD007), before they settle.
-- An array of one element per job id (results, errors, attempts), when
-- given: shorter, the last jobs would end with no error (or result)
-- recorded. One-dimensional: p_values[i] of a 2-D array is null, so
-- {{1},{2}} passed the count and settled any delivery of both jobs. From
-- subscript 1 (jobs.settle_current reads p_values[i] for job_ids' i-th):
-- '[0:1]={9,9}' checked the first job against the second element, the
-- second against none.
create function jobs.check_per_job(p_ids bigint[], p_values anyarray, p_field text)
returns void language plpgsql immutable as $$
begin
  if array_ndims(p_values) > 1 then
    perform jobs.raise_invalid('PD008', p_field, format(
      'must be a one-dimensional array (%s belongs to job_ids[i]), got %s dimensions',
      p_field || '[i]', array_ndims(p_values)));
  elsif array_lower(p_values, 1) <> 1 then
    perform jobs.raise_invalid('PD008', p_field, format(
      'must start at subscript 1 (%s belongs to job_ids[i]), got %s', p_field || '[i]', array_lower(p_values, 1)));
  elsif cardinality(p_values) <> coalesce(cardinality(p_ids), 0) then
    perform jobs.raise_invalid('PD008', p_field, format(
      'must be null or hold one element per job id (%s belongs to job_ids[i]), got %s for %s job ids',
      p_field || '[i]', cardinality(p_values), coalesce(cardinality(p_ids), 0)));
  end if;
end $$;

-- A nack's schedule_at: finite, and not in the past (a minute's slack for clocks).
create function jobs.check_schedule_at(p_at timestamptz, p_now timestamptz)
returns void language plpgsql stable as $$
begin
  if p_at is not null and (p_at < coalesce(p_now, pg_catalog.now()) - interval '1 minute' or not isfinite(p_at)) then
    perform jobs.raise_invalid('PD007', 'schedule_at', format('must be a finite time, not in the past, got %s', p_at));
  end if;
end $$;

-- Settles the current delivery of each of these consumed jobs with one
-- outcome (results[i] and errors[i] belong to job_ids[i]; either may be
-- null): what ack, nack and release do, straight to jobs.settle_arrays.
-- With attempts[i], only job_ids[i]'s delivery of that attempt (ack's, nack's
-- attempt or attempts, release's attempts; a null: its current delivery).
create function jobs.settle_current(job_ids bigint[], outcome text, results jsonb[], errors text[],
                                    retry_at timestamptz, now timestamptz, attempts integer[] default null)
returns jsonb language sql as $$
  select jobs.settle_arrays(coalesce(array_agg(q.job_id), '{}'), coalesce(array_agg(q.attempt), '{}'),
                            array_fill(settle_current.outcome, array[count(*)::integer]),
                            array_agg(settle_current.results[i.ord]), array_agg(settle_current.errors[i.ord]),
                            array_fill(settle_current.retry_at, array[count(*)::integer]), null, settle_current.now)
  from unnest(settle_current.job_ids) with ordinality as i(id, ord)
  join jobs.job_queue q on q.job_id = i.id and q.attempt > 0
    and (settle_current.attempts[i.ord] is null or q.attempt = settle_current.attempts[i.ord])
$$;

-- Acknowledges a consumed job: it moves to jobs.job as a success with its
-- result. Returns false when the job is not waiting for an ack (unknown id,
-- already settled, or never consumed). Without attempt it settles the job's
-- current delivery, whoever holds it: a consumer whose lease passed and whose
-- job another consume took would settle that newer delivery. With attempt
-- (consume's), only the delivery of that attempt: a late ack returns false.
create function jobs.ack(job_id bigint, result jsonb default null, now timestamptz default null,
                         attempt integer default null)
returns boolean language sql security definer
set search_path = pg_catalog, pg_temp as $$
  select (jobs.settle_current(array[ack.job_id], 'ack', array[ack.result], null, null, ack.now, array[ack.attempt])
          ->>'succeeded')::integer = 1
$$;

-- Acknowledges many consumed jobs in one statement; results[i] belongs to
-- job_ids[i] (results may be null). Returns how many were acknowledged.
-- attempts[i] (consume's attempt of job_ids[i]): as the one-job ack's
-- attempt, only that delivery, so a consumer whose leases passed acks none
-- that another consume took; a null element, as without attempts.
create function jobs.ack(job_ids bigint[], results jsonb[] default null, now timestamptz default null,
                         attempts integer[] default null)
returns integer language plpgsql security definer
set search_path = pg_catalog, pg_temp as $$
begin
  perform jobs.check_per_job(ack.job_ids, ack.results, 'results');
  perform jobs.check_per_job(ack.job_ids, ack.attempts, 'attempts');
  return (jobs.settle_current(ack.job_ids, 'ack', ack.results, null, null, ack.now, ack.attempts)
          ->>'succeeded')::integer;
end $$;

-- Returns a failed job: it runs again at schedule_at (or after the backoff),
-- or, when its retries are spent, moves to jobs.job as a failure with this
-- error (null: 'nacked without an error', jobs.settle_error). Returns false when the job is not waiting for an ack. attempt: as
-- ack's (a late nack would otherwise retry, or fail for good, another
-- consumer's delivery).
create function jobs.nack(job_id bigint, error text, schedule_at timestamptz default null,
                          now timestamptz default null, attempt integer default null)
returns boolean language plpgsql security definer
set search_path = pg_catalog, pg_temp as $$
declare
  v jsonb;
begin
  perform jobs.check_schedule_at(nack.schedule_at, jobs.clock(nack.now));
  v := jobs.settle_current(array[nack.job_id], 'nack', null, array[nack.error], nack.schedule_at, nack.now,
                           array[nack.attempt]);
  return (v->>'retried')::integer + (v->>'failed')::integer + (v->>'cancelled')::integer = 1;
end $$;

-- nack for many jobs in one statement; errors[i] belongs to job_ids[i].
-- Returns how many were settled (retried, failed or cancelled). attempts:
-- as the array ack's.
create function jobs.nack(job_ids bigint[], errors text[], schedule_at timestamptz default null,
                          now timestamptz default null, attempts integer[] default null)
returns integer language plpgsql security definer
set search_path = pg_catalog, pg_temp as $$
declare
  v jsonb;
begin
  perform jobs.check_per_job(nack.job_ids, nack.errors, 'errors');
  perform jobs.check_per_job(nack.job_ids, nack.attempts, 'attempts');
  perform jobs.check_schedule_at(nack.schedule_at, jobs.clock(nack.now));
  v := jobs.settle_current(nack.job_ids, 'nack', null, nack.errors, nack.schedule_at, nack.now, nack.attempts);
  return (v->>'retried')::integer + (v->>'failed')::integer + (v->>'cancelled')::integer;
end $$;

-- Gives running jobs back to pending without spending an attempt (a consumer
-- that will not run them after all). Returns how many were released.
-- attempts: as the array ack's (by ids alone, a consumer whose leases passed
-- would give back another consumer's newer delivery, still running).
create function jobs.release(job_ids bigint[], attempts integer[] default null)
returns integer language plpgsql security definer
set search_path = pg_catalog, pg_temp as $$
begin
  perform jobs.check_per_job(release.job_ids, release.attempts, 'attempts');
  return (jobs.settle_current(release.job_ids, 'release', null, null, null, null, release.attempts)
          ->>'released')::integer;
end $$;

-- Cancelling (jobs.cancel, in sql/0028 with the locking it needs) -------------

-- Which of these running jobs have a cancel requested: drains ask this about
-- their long-running jobs, so the plain claim/ack path never pays for it.
create function jobs.cancel_requested(job_ids bigint[])
returns setof bigint language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select q.job_id from jobs.job_queue q
  where q.job_id = any(cancel_requested.job_ids) and q.cancel_requested_at is not null
$$;
