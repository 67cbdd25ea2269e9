-- pgdrain 0028: cancelling a job; changing queued jobs as a set: cancel,
-- reschedule or fail many at once.

-- Cancels a job. A job not yet running (pending, scheduled, or waiting on
-- dependencies or its serial key) ends at once in jobs.job as cancelled and
-- never runs: returns 'cancelled'. A running job is marked (it keeps its
-- dedupe and serial keys until it ends; a keep-mode publish with its dedupe
-- key takes the key over, jobs.publish): its drain sees
-- the mark within a few seconds (best effort) and fires the handler's
-- AbortSignal; whatever its delivery then reports except an ack ends it as
-- cancelled, without retry: returns 'cancelling'. Returns null when the job
-- is not active (unknown, or already ended). Dependants of a cancelled job
-- end as cancelled too. A reason past 8192 characters is cut, as an error
-- is (jobs.cut_error).
create function jobs.cancel(job_id bigint, reason text default null, now timestamptz default null)
returns text language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := jobs.clock(cancel.now);
  v_lease timestamptz;
  v_waiting boolean;
  v_key text;
  v_held text[];
begin
  perform jobs.check_reason(cancel.reason);
  -- Not a plain FOR UPDATE of the job: holding it, the delete of its
  -- dependency rows below waited for a settle of its dependency, which holds
  -- them and waits for this row (to cancel or unblock it): a deadlock.
  if jobs.lock_jobs(array[cancel.job_id], false, true) = '{}' then
    return null;
  end if;
  v_held := jobs.ending_keys(array[cancel.job_id]);
  select q.lease_until, q.serial_wait, q.serial_key into v_lease, v_waiting, v_key from jobs.job_queue q where q.job_id = cancel.job_id;
  if v_lease is not null then
    update jobs.job_queue q
    set cancel_requested_at = coalesce(q.cancel_requested_at, v_now),
        -- Cut whole too: a reason of 8192 characters is within the bound, not after 'cancelled: '.
        cancel_reason = coalesce(q.cancel_reason, jobs.cut_error('cancelled: ' || coalesce(jobs.cut_error(cancel.reason), 'by request')))
    where q.job_id = cancel.job_id;
    return 'cancelling';
  end if;
  perform jobs.end_waiting(array[cancel.job_id], 'cancelled', 'cancelled: ' || coalesce(jobs.cut_error(cancel.reason), 'by request'),
                           false, null, v_now);
  -- A job waiting behind its serial key's head leaves the head as it is: no
  -- key to pass on, so no key lock taken while holding this row's (a head
  -- that ends takes that lock first, then this row's: a deadlock).
  perform jobs.after_end(null, array[cancel.job_id], case when not v_waiting then array[v_key] end, v_now, false, null, v_held);
  return 'cancelled';
end $$;

-- Cancels many jobs, as jobs.cancel does each: one not yet running
-- (pending, scheduled, blocked) ends at once as cancelled, its dependants
-- too; a running one gets a cancel request its drain sees. Returns how many
-- were cancelled or cancel-requested (ended and unknown ids are not counted).
-- A reason past 8192 characters is cut (jobs.cut_error), as jobs.cancel's.
-- Of the serial-key heads not running, 500 end here (jobs.heads_past_bound);
-- those past them, which never ran, are deferred as a cascade defers a
-- dependant (jobs.after_end): cancel requested, lease passed, dedupe key
-- freed, so the next claims' expiry (or jobs.maintain) ends them as
-- cancelled, with reason, and hands their keys on. More than 500 such heads
-- that ran before (a retry pending: a late settle of that attempt would
-- apply to one deferred) is PD005 job_ids: cancel them in several calls.
create function jobs.cancel_bulk(job_ids bigint[], reason text default null, now timestamptz default null)
returns integer language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := jobs.clock(cancel_bulk.now);
  v_reason text := jobs.cut_error('cancelled: ' || coalesce(jobs.cut_error(cancel_bulk.reason), 'by request'));
  v_locked bigint[];
  v_running bigint[];
  v_queued bigint[];
  v_keys text[];
  v_later bigint[];
  v_ran integer;
  v_held text[];
begin
  perform jobs.check_job_ids(cancel_bulk.job_ids);
  perform jobs.check_reason(cancel_bulk.reason);
  v_locked := jobs.lock_jobs(cancel_bulk.job_ids, false, true);
  -- Read once locked: as they are now, and stay until this commits.
  v_later := jobs.heads_past_bound(v_locked);
  select count(*) into v_ran from jobs.job_queue q where q.job_id = any(v_later) and q.attempt > 0;
  if v_ran > 0 then
    perform jobs.raise_invalid('PD005', 'job_ids', format('at most %s of the jobs one call cancels may head their '
      || 'serial keys and have run before, a retry pending (each takes its key''s lock until commit, from '
      || 'PostgreSQL''s shared lock table; those that never ran are deferred), got %s: cancel them in several calls',
      jobs.max_serial_keys(), jobs.max_serial_keys() + v_ran));
  end if;
  v_held := jobs.ending_keys(v_locked);
  select array_agg(q.job_id) filter (where q.lease_until is not null),
         array_agg(q.job_id) filter (where q.lease_until is null and l.id is null),
         -- A waiting job hands no turn on (see jobs.cancel).
         array_agg(q.serial_key) filter (where q.lease_until is null and l.id is null and q.serial_key is not null
                                           and not q.serial_wait)
  into v_running, v_queued, v_keys
  from jobs.job_queue q left join unnest(v_later) l(id) on l.id = q.job_id
  where q.job_id = any(v_locked);

  if v_running is not null then
    update jobs.job_queue q
    set cancel_requested_at = coalesce(q.cancel_requested_at, v_now),
        cancel_reason = coalesce(q.cancel_reason, v_reason)
    where q.job_id = any(v_running);
  end if;
  if v_queued is not null then
    perform jobs.end_waiting(v_queued, 'cancelled', v_reason, false, null, v_now);
    perform jobs.lock_serial_keys(v_keys);
    perform jobs.after_end(null, v_queued, v_keys, v_now, false, null, v_held);
  end if;
  -- After jobs.after_end, which defers those among them that depend on one
  -- ended here with its own reason: this call's reason is theirs. As there
  -- (jobs.ended_dedupe_key): passed now, dedupe key freed into last_error.
  -- Waiting, they name no drain (lease_holder: a give-back clears it), so
  -- every claim's expiry ends them, that of a drain that gave one back too.
  if cardinality(v_later) > 0 then
    update jobs.job_queue q
    set lease_until = least(v_now, pg_catalog.now()), cancel_requested_at = v_now, cancel_reason = v_reason,
        dedupe_key = null, last_error = coalesce('freed dedupe key: ' || q.dedupe_key, q.last_error)
    where q.job_id = any(v_later);
  end if;
  return coalesce(cardinality(v_running), 0) + coalesce(cardinality(v_queued), 0) + cardinality(v_later);
end $$;

-- Moves jobs not yet running (pending, scheduled, blocked) to run_at, gives
-- them priority, max_retries (0 to 1000) and/or sets the attempts they have
-- spent (attempt: 0 gives a job all its runs back; given, its counts of
-- releases unstarted and of snoozes in a row start again too); running and ended jobs
-- are left alone and not counted. A job keeps its place in its serial key
-- (job_id order) and its dependencies: rescheduling a key's head later holds
-- the key's other jobs back with it, and its expiry (PD007 run_at for a time
-- at or past it). Every job keeps a run left: attempt at most its
-- max_retries (PD007 attempt, or PD003 max_retries when only that is given).
-- Returns how many were changed.
create function jobs.reschedule(job_ids bigint[], run_at timestamptz default null, priority integer default null,
                                now timestamptz default null, max_retries integer default null,
                                attempt integer default null)
returns integer language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_ids bigint[];
  v_late record;
begin
  perform jobs.check_job_ids(reschedule.job_ids);
  perform jobs.clock(reschedule.now);
  if reschedule.run_at is null and reschedule.priority is null and reschedule.max_retries is null
     and reschedule.attempt is null then
    perform jobs.raise_invalid('PD007', 'run_at',
      'give run_at, priority, max_retries or attempt, one or more (all are null)');
  end if;
  if not isfinite(reschedule.run_at) then
    perform jobs.raise_invalid('PD007', 'run_at', format('must be a finite time, got %s', reschedule.run_at));
  end if;
  perform jobs.check_options(null, reschedule.priority, reschedule.max_retries);
  if reschedule.attempt < 0 or reschedule.attempt > coalesce(reschedule.max_retries, 1000) then
    perform jobs.raise_invalid('PD007', 'attempt', format('must be 0 to %s (the attempts spent; at most max_retries, '
      || 'a run left), got %s', coalesce(reschedule.max_retries, 1000), reschedule.attempt));
  end if;
  -- Only jobs not running: a running one's settle is not waited for.
  v_ids := jobs.lock_jobs(reschedule.job_ids, true, false);
  if v_ids = '{}' then
    return 0;
  end if;
  -- A job keeps its expiry (a queue's expire_in was counted when it was
  -- published): moved to or past it, it could never run. Nothing is moved.
  select q.job_id, q.expires_at into v_late from jobs.job_queue q
  where q.job_id = any(v_ids) and q.expires_at <= reschedule.run_at order by q.job_id limit 1;
  if found then
    perform jobs.raise_invalid('PD007', 'run_at', format(
      'must be before the expiry of job %s (%s): it would never run; cancel it and publish it again instead',
      v_late.job_id, to_char(v_late.expires_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')));
  end if;
  -- Each job keeps a run left (a claim counts attempt past max_retries
  -- without looking; the settle would end it after one more run).
  if reschedule.max_retries is not null or reschedule.attempt is not null then
    select q.job_id, q.attempt, q.max_retries into v_late from jobs.job_queue q
    where q.job_id = any(v_ids)
      and coalesce(reschedule.attempt, q.attempt) > coalesce(reschedule.max_retries, q.max_retries)
    order by q.job_id limit 1;
    if found and reschedule.attempt is not null then
      perform jobs.raise_invalid('PD007', 'attempt', format(
        'must be at most the max_retries of job %s (%s), got %s: give max_retries too to raise it',
        v_late.job_id, v_late.max_retries, reschedule.attempt));
    elsif found then
      perform jobs.raise_invalid('PD003', 'max_retries', format(
        'must be at least the attempts job %s has spent (%s), got %s: give attempt too to reset them',
        v_late.job_id, v_late.attempt, reschedule.max_retries));
    end if;
  end if;
  -- Lowering attempt reuses delivery numbers ((job_id, attempt) names one):
  -- a settle of an old delivery whose lease expired, sent with no or the
  -- same worker_id, could settle the new one of that number. Given attempt
  -- resets its releases unstarted and its snoozes in a row too (jobs.unstarted_bound counts afresh,
  -- the next snooze says 1 in a row), and drops the line that counted them (last_error's first while
  -- unstarted or snoozed > 0, jobs.release_error): a job given its runs back starts afresh.
  update jobs.job_queue q
  set scheduled_at = coalesce(reschedule.run_at, q.scheduled_at), priority = coalesce(reschedule.priority, q.priority),
      max_retries = coalesce(reschedule.max_retries, q.max_retries), attempt = coalesce(reschedule.attempt, q.attempt),
      unstarted = case when reschedule.attempt is null then q.unstarted else 0 end,
      snoozed = case when reschedule.attempt is null then q.snoozed else 0 end,
      last_error = case when reschedule.attempt is null or q.unstarted = 0 and q.snoozed = 0 then q.last_error
                        else nullif(substr(q.last_error, strpos(q.last_error || E'\n', E'\n') + 1), '') end
  where q.job_id = any(v_ids);
  perform jobs.notify('pgdrain_queued', x.queue)
  from (select distinct q.queue from jobs.job_queue q where q.job_id = any(v_ids) order by 1) x;
  return cardinality(v_ids);
end $$;

-- Refuses (PD005 job_ids) an admin call that would end more serial-key
-- heads than jobs.max_serial_keys(): each takes its key's lock until commit.
-- p_which: the jobs the call ends ('jobs one call fails'); p_verb: how to
-- say "do it in several calls" ('fail').
create function jobs.check_heads(p_keys text[], p_which text, p_verb text)
returns void language plpgsql stable as $$
begin
  if cardinality(p_keys) > jobs.max_serial_keys() then
    perform jobs.raise_invalid('PD005', 'job_ids', format('at most %s of the %s may head their serial keys (each takes '
      || 'its key''s lock until commit, from PostgreSQL''s shared lock table), got %s: %s them in several calls',
      jobs.max_serial_keys(), p_which, cardinality(p_keys), p_verb));
  end if;
end $$;

-- Ends jobs not yet running (pending, scheduled, blocked) as failures with
-- reason ('failed: <reason>', the job's last error on the next line): they
-- are dead letters, which jobs.redrive runs again (and, in a queue with a
-- dead_letter queue, are copied there: jobs.route_dead_letters). Their
-- dependants end as cancelled, as after any failure (500 keyed heads among
-- them at once, the rest through the next claims' expiry: jobs.after_end).
-- Running jobs are left alone and not counted (cancel them to stop them).
-- Returns how many failed. A reason empty or only whitespace is PD021
-- (null: 'by request'); one past 8192 characters is cut (jobs.cut_error). At most 500 of them may head their serial keys
-- (each takes the key's lock): PD005 job_ids past that (a failure cannot
-- be deferred as a cancel is).
create function jobs.fail(job_ids bigint[], reason text default null, now timestamptz default null)
returns integer language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := jobs.clock(fail.now);
  v_ids bigint[];
  v_keys text[];
  v_held text[];
  v_own boolean;
begin
  perform jobs.check_job_ids(fail.job_ids);
  perform jobs.check_reason(fail.reason);
  v_ids := jobs.lock_jobs(fail.job_ids, true, true);
  if v_ids = '{}' then
    return 0;
  end if;
  select array_agg(q.serial_key) filter (where q.serial_key is not null and not q.serial_wait),
         coalesce(bool_or(q.dead_letter is not null), false) into v_keys, v_own
  from jobs.job_queue q where q.job_id = any(v_ids);
  perform jobs.check_heads(v_keys, 'jobs one call fails', 'fail');
  v_held := jobs.ending_keys(v_ids);
  perform jobs.end_waiting(v_ids, 'failure', 'failed: ' || coalesce(jobs.cut_error(fail.reason), 'by request'), true, null, v_now);
  perform jobs.route_dead_letters(v_ids, v_now, v_own);
  perform jobs.lock_serial_keys(v_keys);
  perform jobs.after_end(null, v_ids, v_keys, v_now, false, null, v_held);
  return cardinality(v_ids);
end $$;
