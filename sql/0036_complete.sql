-- pgdrain 0036: ending a waiting job as a success (graphile-worker's
-- complete_jobs, pg-boss's complete of a queued job), cancelling the job
-- that holds a dedupe key (graphile-worker's remove_job), and deleting jobs
-- outright, history and all (pg-boss's deleteJob, deleteStoredJobs).

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
  v_now timestamptz := jobs.clock(complete.now);
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
  perform jobs.check_heads(v_keys, 'jobs one call completes', 'complete');
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
  -- Checked here: jobs.cancel, which would, runs only when a job holds the key.
  perform jobs.clock(cancel_key.now);
  perform jobs.check_reason(cancel_key.reason);
  return (select jobs.cancel(q.job_id, cancel_key.reason, cancel_key.now)
          from jobs.job_queue q where q.dedupe_key = cancel_key.dedupe_key);
end $$;

-- Deletes jobs outright (pg-boss's deleteJob): none of them is left, and a
-- waiting one leaves no history.
-- - Waiting (pending, scheduled, blocked; locked as jobs.fail locks them):
--   it leaves jobs.job_queue with no row in jobs.job, as jobs.cancel ends
--   one for everything around it: its dependants end as cancelled (with
--   history: 'cancelled: dependency <id> did not succeed'), its serial key
--   goes to its next job, its dedupe key (and the throttle window its
--   publish opened, sql/0032) is free, pgdrain_completed is
--   notified (a waitFor then finds no job). Counted in `waiting`. So is
--   a dependant whose cancel a cascade deferred (attempt 0, its lease
--   passed: jobs.after_end): it never ran, no drain holds it; deleted as a
--   waiting one, its own dependants end cancelled and its key moves on.
-- - Ended: its row in jobs.job, or in jobs.job_archive, is deleted (those a
--   redrive or a maintenance pass holds at that moment are left, not
--   counted: never waited for), and the throttle window it holds with it
--   (jobs.forget_windows). Counted in `ended`.
-- - Running (its lease held, or passed and not yet expired): left alone,
--   its id in `running` (its row locked until this commits, as
--   jobs.cancel_bulk locks it: its settle waits for this). A drain holds it: cancel it (jobs.cancel_bulk), and delete it once ended.
-- Unknown ids are in none. Bounded as jobs.fail: at most 500 of the waiting
-- ones may head their serial keys (each takes its key's lock until
-- commit): PD005 job_ids past that; their dependants' cascade as fail's.
create function jobs.delete_jobs(job_ids bigint[], now timestamptz default null,
                                 out waiting integer, out ended integer, out running bigint[])
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := jobs.clock(delete_jobs.now);
  v_ids bigint[];
  v_keys text[];
  v_held text[];
  v_dedupe text[];
  v_gone bigint[];
  v_gone_keys text[];
begin
  perform jobs.check_job_ids(delete_jobs.job_ids);
  -- The running ones locked too (as jobs.cancel_bulk), and read once
  -- locked: as they are now, and stay until this commits. Locked only when
  -- waiting, a running job whose nack or release (or a claim's expiry of
  -- its lease) committed between that lock and a later read of its state
  -- was answered in none, as an unknown id, though it waits to run again.
  v_ids := jobs.lock_jobs(delete_jobs.job_ids, false, true, true);
  select coalesce(array_agg(q.job_id order by q.job_id) filter (where q.lease_until is not null and q.attempt > 0), '{}'),
         coalesce(array_agg(q.job_id) filter (where q.lease_until is null or q.attempt = 0), '{}')
  into running, v_ids
  from jobs.job_queue q where q.job_id = any(v_ids);
  -- SKIP LOCKED, as jobs.maintain's retention: this waits on no row of the history.
  with gone as (
    delete from jobs.job j where j.job_id in (
      select x.job_id from jobs.job x where x.job_id = any(delete_jobs.job_ids) and x.job_id <> all(running)
      for update skip locked)
    returning j.job_id, j.dedupe_key
  ), archived as (
    delete from jobs.job_archive a where a.job_id in (
      select x.job_id from jobs.job_archive x where x.job_id = any(delete_jobs.job_ids) and x.job_id <> all(running)
      for update skip locked)
    returning a.job_id, a.dedupe_key
  ), deleted as (
    select g.job_id, g.dedupe_key from gone g union all select a.job_id, a.dedupe_key from archived a
  )
  select count(*), coalesce(array_agg(b.job_id) filter (where b.dedupe_key is not null), '{}'),
         coalesce(array_agg(b.dedupe_key) filter (where b.dedupe_key is not null), '{}')
  into ended, v_gone, v_gone_keys from deleted b;
  if v_gone <> '{}' then
    perform jobs.forget_windows(v_gone, v_gone_keys);
  end if;
  waiting := cardinality(v_ids);
  if waiting = 0 then
    return;
  end if;
  -- A job waiting behind its key's head hands no turn on (see jobs.cancel).
  select array_agg(q.serial_key) filter (where q.serial_key is not null and not q.serial_wait),
         array_agg(q.dedupe_key) filter (where q.dedupe_key is not null) into v_keys, v_dedupe
  from jobs.job_queue q where q.job_id = any(v_ids);
  perform jobs.check_heads(v_keys, 'waiting jobs one call deletes', 'delete');
  v_held := jobs.ending_keys(v_ids, true);
  perform jobs.end_waiting(v_ids, null, null, false, null, v_now);
  -- The throttle window a waiting one's publish opened goes with it (it
  -- never ran), as one that expired unstarted lets go of it (sql/0032):
  -- kept, a throttled publish of the key would answer a job that is gone.
  if v_dedupe is not null then
    delete from jobs.throttle t where t.dedupe_key = any(v_dedupe) and t.job_id = any(v_ids);
  end if;
  perform jobs.lock_serial_keys(v_keys);
  perform jobs.after_end(null, v_ids, v_keys, v_now, false, null, v_held);
end $$;

-- Deletes the ended jobs of queue (pg-boss's deleteStoredJobs): successes,
-- failures (dead letters) and cancelled ones, from jobs.job_archive (its
-- rows the older: jobs.maintain's retention moved them) and then jobs.job,
-- oldest first in each; with ended_before, only those that ended
-- before it. At most max_rows (1 to 10000000) in one call, as
-- jobs.maintain: call it again until it returns less. Returns how many it
-- deleted. Waiting and running jobs are not touched (jobs.purge_queue ends
-- the waiting ones). Any queue name, existing or not: a deleted queue's
-- history names it. Rows a redrive or a maintenance pass holds are left
-- (SKIP LOCKED). No index has the queue: it reads the history by ended_at
-- (job_ended_idx), an admin's call. Every queue by age is jobs.maintain's
-- retention. The throttle windows the deleted jobs held go with them
-- (jobs.forget_windows).
create function jobs.delete_ended(queue text, ended_before timestamptz default null, max_rows integer default 100000)
returns integer language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_gone bigint[];
  v_gone_keys text[];
  v_deleted integer;
begin
  perform jobs.check_name(delete_ended.queue, 'PD009', 'queue', 'queue name');
  if delete_ended.max_rows is null or delete_ended.max_rows < 1 or delete_ended.max_rows > 10000000 then
    perform jobs.raise_invalid('PDC03', 'max_rows', format('must be between 1 and 10000000, got %s',
      coalesce(delete_ended.max_rows::text, 'null')));
  end if;
  -- The archive's first (its rows are the older), then jobs.job's up to
  -- max_rows in all: one statement, so one look-up of the throttle windows.
  with archived as (
    delete from jobs.job_archive a where a.job_id in (
      select x.job_id from jobs.job_archive x
      where x.queue = delete_ended.queue and (delete_ended.ended_before is null or x.ended_at < delete_ended.ended_before)
      order by x.ended_at limit delete_ended.max_rows for update skip locked)
    returning a.job_id, a.dedupe_key
  ), ended as (
    delete from jobs.job j where j.job_id in (
      select x.job_id from jobs.job x
      where x.queue = delete_ended.queue and (delete_ended.ended_before is null or x.ended_at < delete_ended.ended_before)
      order by x.ended_at limit delete_ended.max_rows - (select count(*) from archived) for update skip locked)
    returning j.job_id, j.dedupe_key
  ), gone as (
    select * from archived union all select * from ended
  )
  select count(*), coalesce(array_agg(g.job_id) filter (where g.dedupe_key is not null), '{}'),
         coalesce(array_agg(g.dedupe_key) filter (where g.dedupe_key is not null), '{}')
  into v_deleted, v_gone, v_gone_keys from gone g;
  if v_gone <> '{}' then
    perform jobs.forget_windows(v_gone, v_gone_keys);
  end if;
  return v_deleted;
end $$;

-- As every function a role of jobs.create_roles is granted: nobody but the
-- owner until jobs.create_roles grants them to the admin role (PUBLIC may
-- execute a new function).
revoke execute on function jobs.complete(bigint[], jsonb, timestamptz), jobs.cancel_key(text, text, timestamptz),
  jobs.delete_jobs(bigint[], timestamptz), jobs.delete_ended(text, timestamptz, integer) from public;
