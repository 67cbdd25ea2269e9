-- pgdrain 0018: ending a waiting job as a success (graphile-worker's
-- complete_jobs, pg-boss's complete of a queued job), and cancelling the job
-- that holds a dedupe key (graphile-worker's remove_job).

-- Ends jobs not yet running (pending, scheduled, blocked: those jobs.fail
-- takes, locked as it locks them) as successes with result, as an ack ends
-- a running one: history in jobs.job (attempts as they were, error the
-- last one's, as an ack keeps it), pgdrain_completed notified, dependants
-- one dependency fewer to wait for (they run once all succeeded), the
-- serial key of a head handed to its next job, the dedupe key free.
-- Running jobs are left alone and not counted (their drain settles them;
-- cancel them to stop them), as are dependants a cascade deferred (a
-- passed lease: cancelled already). Returns how many it ended.
-- At most 500 of them may head their serial keys (each takes the key's lock
-- until commit): PD005 job_ids past that, as jobs.fail. A success cannot be
-- deferred as jobs.cancel_bulk defers the heads past 500: a deferred head
-- ends through the next claims' expiry, and that ends it as cancelled.
-- A success cancels nothing, so no cascade takes keys.
create function jobs.complete(job_ids bigint[], result jsonb default null, now timestamptz default null)
returns integer language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := coalesce(complete.now, pg_catalog.now());
  v_ids bigint[];
  v_keys text[];
begin
  perform jobs.check_job_ids(complete.job_ids);
  v_ids := jobs.lock_jobs(complete.job_ids, true, true);
  if v_ids = '{}' then
    return 0;
  end if;
  -- A job waiting behind its key's head hands no turn on (see jobs.cancel).
  select array_agg(q.serial_key) filter (where q.serial_key is not null and not q.serial_wait) into v_keys
  from jobs.job_queue q where q.job_id = any(v_ids);
  if cardinality(v_keys) > jobs.max_serial_keys() then
    perform jobs.raise_invalid('PD005', 'job_ids', format('at most %s of the jobs one call completes may head their '
      || 'serial keys (each takes its key''s lock until commit, from PostgreSQL''s shared lock table), got %s: '
      || 'complete them in several calls', jobs.max_serial_keys(), cardinality(v_keys)));
  end if;
  -- Attempts and the last error kept, as an ack keeps them.
  perform jobs.end_waiting(v_ids, 'success', null, false, complete.result, v_now);
  perform jobs.lock_serial_keys(v_keys);
  perform jobs.after_end(v_ids, null, v_keys, v_now);
  return cardinality(v_ids);
end $$;

-- Cancels the active job (pending, scheduled, blocked or running) holding
-- dedupe_key, as jobs.cancel cancels it by id, and answers as it does:
-- 'cancelled', 'cancelling', or null when no active job holds the key. Keys
-- are global (job_queue_dedupe_idx), so no queue is needed. One job ending,
-- or a replace, between the look-up and jobs.cancel's lock reads as that
-- call coming first: null for a job that ended, and a replaced waiting job
-- keeps its id (a replaced running one is the job the key named).
create function jobs.cancel_key(dedupe_key text, reason text default null, now timestamptz default null)
returns text language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
  if cancel_key.dedupe_key is null then
    perform jobs.raise_invalid('PD011', 'dedupe_key', 'must be a non-empty text of at most 500 characters');
  end if;
  perform jobs.check_key(cancel_key.dedupe_key, 'PD011', 'dedupe_key');
  return (select jobs.cancel(q.job_id, cancel_key.reason, cancel_key.now)
          from jobs.job_queue q where q.dedupe_key = cancel_key.dedupe_key);
end $$;

-- As every function a role of jobs.create_roles is granted: nobody but the
-- owner until jobs.create_roles grants them to the admin role (PUBLIC may
-- execute a new function).
revoke execute on function jobs.complete(bigint[], jsonb, timestamptz), jobs.cancel_key(text, text, timestamptz) from public;
