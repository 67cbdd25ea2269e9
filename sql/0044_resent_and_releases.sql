-- pgdrain 0044: what jobs.settle_arrays (sql/0013; a stale outcome's answer
-- through jobs.settle_stale, sql/0045) calls for a settle sent again and for
-- releases: its count of a settle sent again
-- (jobs.settle_resent), a release's last_error (jobs.release_error) and the
-- bound on releases of a job never started (jobs.unstarted_bound).

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
