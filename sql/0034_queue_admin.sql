-- pgdrain 0034: purging and deleting a queue (pg-boss's purgeQueue / deleteQueue).
--
-- Errors: PD009 name (not a queue name; the default queue, a dead-letter
-- target of a queue or of an active job, or a queue with active jobs cannot
-- be deleted); 0A000 when
-- jobs.delete_queue runs in a REPEATABLE READ or SERIALIZABLE transaction.
--
-- Every path that writes a job into a queue holds that queue against a
-- delete until it commits (jobs.hold_queue, sql/0003): jobs.admit, which every publish
-- and redrive calls, jobs.check_dead_letter (a job naming it as its own
-- dead letter) and jobs.route_dead_letters. A delete waits for those
-- in flight and then sees their jobs (and refuses); one that comes after the
-- delete committed finds no queue (PD009).

-- Ends every waiting job of queue name (pending, scheduled, blocked by
-- dependencies or a serial key) as jobs.cancel_bulk ends one: cancelled,
-- error 'cancelled: <reason>' ('cancelled: purged' without one), its
-- dependants (in any queue) cancelled in turn, its serial key's next job
-- (in any queue: keys are global) given its turn, pgdrain_completed
-- notified. Running jobs are left alone (jobs.cancel asks them to stop); so
-- are dependants a failure's cascade deferred (cancelled already, their lease
-- passed: jobs.after_end): any claim or jobs.maintain() ends them.
-- Returns how many jobs of the queue it ended (0 for an unknown queue; a
-- queue's row deleted by hand leaves its jobs here to purge). Bounded as
-- jobs.cancel_bulk: each serial key whose head it ends takes a lock until
-- commit, so it ends 500 heads at once and defers the rest (counted: the
-- next claims' expiry, or jobs.maintain, ends them as cancelled); more than
-- 500 heads that ran before (a retry pending) is PD009 name. Admin only
-- (jobs.create_roles).
create function jobs.purge_queue(name text, reason text default null)
returns integer language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_ids bigint[];
  v_ran bigint;
begin
  perform jobs.check_name(purge_queue.name, 'PD009', 'name', 'queue name');
  perform jobs.check_reason(purge_queue.reason);
  select array_agg(q.job_id order by q.job_id) into v_ids
  from jobs.job_queue q where q.queue = purge_queue.name and q.lease_until is null;
  if v_ids is null then
    return 0;
  end if;
  -- Locked as jobs.fail locks them (those still not running, and what ending
  -- them touches), so cancel_bulk finds them waiting: one claimed meanwhile
  -- is left to run. Read again once locked: a replace may have moved one.
  v_ids := jobs.lock_jobs(v_ids, true, true);
  select array_agg(q.job_id) into v_ids
  from jobs.job_queue q where q.job_id = any(v_ids) and q.queue = purge_queue.name;
  if v_ids is null then
    return 0;
  end if;
  -- What jobs.cancel_bulk refuses (a deferred one must never have run), said for this call.
  select count(*) into v_ran from jobs.job_queue q
  where q.job_id = any(v_ids) and q.attempt > 0 and q.serial_key is not null and not q.serial_wait;
  if v_ran > jobs.max_serial_keys() then
    perform jobs.raise_invalid('PD009', 'name', format('queue %s has %s waiting jobs that ran before (a retry pending) '
      || 'heading their serial keys, more than the %s one call ends (each takes its key''s lock until commit, from '
      || 'PostgreSQL''s shared lock table): cancel some with jobs.cancel_bulk in smaller calls first',
      quote_literal(purge_queue.name), v_ran, jobs.max_serial_keys()));
  end if;
  return jobs.cancel_bulk(v_ids, coalesce(purge_queue.reason, 'purged'));
end $$;

-- Deletes queue name, and its subscriptions with it, when no job is active
-- in it (waiting or running): else PD009 naming name, the counts and what
-- ends them: a purge when jobs wait (and the running ones' end, if any), else the
-- running ones' end or a cancel (the first one's id named), and a claim or
-- jobs.maintain() for dependants a cascade deferred. Its ended jobs
-- stay in jobs.job (which names the queue as text). The default queue, a queue another one
-- names as its dead_letter, and one an active job (waiting or running)
-- names as its own dead_letter (jobs.publish), cannot be deleted (PD009):
-- the job's failure would lose the route it was published with. (A job
-- redriven later with a dead letter since deleted falls back to its
-- queue's: jobs.route_dead_letters.) Returns false when
-- there is no such queue (as pg-boss's deleteQueue, nothing to do). A
-- publish into the queue racing it either commits first (the delete waits
-- for it, then refuses) or finds no queue (PD009): jobs.hold_queue. A
-- schedule naming the queue records PD009 at each tick until it is
-- unscheduled or the queue made again. Admin only (jobs.create_roles).
create function jobs.delete_queue(name text)
returns boolean language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_by text;
  v_waiting bigint;
  v_running bigint;
  v_deferred bigint;
  v_named bigint;
  v_first bigint;
  v_hint text;
begin
  perform jobs.check_name(delete_queue.name, 'PD009', 'name', 'queue name');
  if delete_queue.name = 'default' then
    perform jobs.raise_invalid('PD009', 'name',
      'the default queue cannot be deleted (jobs published without a queue go there); purge it with jobs.purge_queue(''default'')');
  end if;
  -- Its check of the queue's jobs must see those committed while it waited.
  if not jobs.read_committed() then
    raise exception 'jobs.delete_queue must run in a READ COMMITTED transaction, not %',
      upper(current_setting('transaction_isolation'))
      using errcode = '0A000';
  end if;
  -- No queue comes to name this one as its dead_letter meanwhile (jobs.create_queue takes it too).
  perform pg_advisory_xact_lock(736040, 0);
  -- The row first, then the writers' lock (waited for without the row): jobs.lock_queue_writers.
  if not jobs.lock_queue_writers(delete_queue.name) then
    return false;
  end if;
  select q.name into v_by from jobs.queue q where q.dead_letter = delete_queue.name order by q.name limit 1;
  if found then
    perform jobs.raise_invalid('PD009', 'name', format(
      'queue %s is the dead-letter queue of %s: give that one another (jobs.create_queue(%s, dead_letter => null)) first',
      quote_literal(delete_queue.name), quote_literal(v_by), quote_literal(v_by)));
  end if;
  -- Writers in flight (jobs.hold_queue) were waited for above; those after find no queue.
  -- Leased at attempt 0: a dependant a cascade deferred, never run (jobs.after_end).
  select count(*) filter (where q.lease_until is null), count(*) filter (where q.lease_until is not null and q.attempt > 0),
         count(*) filter (where q.lease_until is not null and q.attempt <= 0),
         min(q.job_id) filter (where q.lease_until is not null and q.attempt > 0)
  into v_waiting, v_running, v_deferred, v_first
  from jobs.job_queue q where q.queue = delete_queue.name;
  -- The hint names only what ends what is there: a purge ends no running job
  -- nor deferred dependant, so with no job waiting it is not named.
  if v_waiting + v_running + v_deferred > 0 then
    v_hint := case when v_waiting > 0 then format('purge it first (jobs.purge_queue(%s))', quote_literal(delete_queue.name))
                     || case when v_running > 0 then ' and wait for its running jobs to end' else '' end
                   when v_running > 0 then 'let its running jobs end, or cancel them (jobs.cancel_bulk), first' end;
    perform jobs.raise_invalid('PD009', 'name', format('queue %s still has %s waiting and %s running jobs',
        quote_literal(delete_queue.name), v_waiting, v_running)
      || case when v_waiting = 0 and v_running > 0 then format(' (job %s first)', v_first) else '' end
      || case when v_deferred > 0 then format(', and %s cancelled dependants to end: any claim or jobs.maintain() ends them',
                                              v_deferred) || coalesce('; ' || v_hint, '')
              else ': ' || v_hint end);
  end if;
  -- One scan of the active jobs: no index on dead_letter (each would cost every job).
  select count(*), min(q.job_id) into v_named, v_first from jobs.job_queue q where q.dead_letter = delete_queue.name;
  if v_named > 0 then
    perform jobs.raise_invalid('PD009', 'name', format(
      'queue %s is the dead-letter queue of %s active jobs of other queues (job %s first), published with it as their '
      'dead_letter: let them end, or cancel them (jobs.cancel_bulk), first',
      quote_literal(delete_queue.name), v_named, v_first));
  end if;
  delete from jobs.queue q where q.name = delete_queue.name;
  -- Its max_running slots, none of them running now; its bounded admits' row (no publish in flight).
  delete from jobs.running_slot s where s.queue = delete_queue.name;
  delete from jobs.queue_admits a where a.queue = delete_queue.name;
  return true;
end $$;

-- Destructive: nobody but the owner until jobs.create_roles grants them to
-- the admin role (a publisher or worker role granted before this migration
-- would otherwise hold PUBLIC's EXECUTE on them until create_roles runs again).
revoke execute on function jobs.purge_queue(text, text), jobs.delete_queue(text) from public;
