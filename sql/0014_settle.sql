-- pgdrain 0014: the settle calls over jobs.settle_arrays: settle, ack, nack,
-- release, cancel_requested. (What settle_arrays itself calls for a settle
-- sent again and for releases: sql/0044.)

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
