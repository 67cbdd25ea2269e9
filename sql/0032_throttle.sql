-- pgdrain 0032: throttle windows for dedupe keys (jobs.publish's
-- throttle_seconds; pg-boss singletonKey with singletonSeconds): at most one
-- job per key per window, even when the job has ended since, unless it
-- was cancelled or expired unstarted (jobs.frees_window), or its history
-- was deleted (jobs.forget_windows).
--
-- A dedupe key is global (job_queue_dedupe_idx spans queues), and so is its
-- window. A row is written only by a throttled publish that wrote a job, so
-- plain and plain-keyed publishes pay nothing. `until` is the end of the
-- window of the publish that wrote job_id; a row past its until is the same
-- as no row (no publish reads it), so deleting such rows is always safe:
-- jobs.maintain (sql/0024) does, a bounded number per pass, and a throttled
-- publish overwrites one it finds.
create table jobs.throttle (
  dedupe_key text        primary key,
  job_id     bigint      not null,
  until      timestamptz not null
);
-- For jobs.maintain's bounded delete of ended windows.
create index throttle_until_idx on jobs.throttle (until);
revoke all on jobs.throttle from public;

-- Whether a job that has ended (its row of jobs.job or jobs.job_archive)
-- lets go of its throttle window: one cancelled (pg-boss's singleton slot
-- index leaves cancelled jobs out; here every way a job ends as cancelled:
-- jobs.cancel, cancel_bulk, cancel_key, purge_queue, the cascade to
-- dependants, a running job's cancel once its drain or a claim's expiry
-- ends it), and one that expired unstarted ('expired: not started before
-- …', sql/0009, no attempt spent: its work was never done). Any other
-- end, a success or a failure, holds it, as in pg-boss. Read by jobs.throttle_lock,
-- so no path that ends a job pays for it, and by jobs.maintain's retention,
-- which forgets such windows when it archives their jobs.
create function jobs.frees_window(p_status text, p_attempts integer, p_error text)
returns boolean language sql immutable as $$
  select p_status = 'cancelled'
         or (p_status = 'failure' and p_attempts = 0 and starts_with(p_error, 'expired: not started before '))
$$;

-- Called by a throttled jobs.publish before it looks for the key's job: takes
-- the key's lock, held until commit, so throttled publishes of one key run
-- one at a time, and each sees the job (and the window) the one before it
-- wrote, even when that job has already ended. Returns the id of the job
-- holding the key: an active one, else the one whose window is still open
-- at p_from; null when the key is free. An active job that will not run to
-- an end of its own holds neither, as jobs.publish lets go of such a
-- keep-mode holder (jobs.key_holder): one whose expires_at passed while it
-- waited (unstarted, or waiting to retry: it never runs again) and one
-- whose cancel was requested
-- (running, or a head or dependant whose cancel was deferred, sql/0009);
-- the publish takes over its key (jobs.publish) and opens the key's window
-- anew (jobs.throttle_hold). Nor does a job whose end frees it
-- (jobs.frees_window: cancelled, expired unstarted; read in jobs.job and
-- jobs.job_archive), nor one that no longer exists (its history deleted):
-- a window holds only while its job is there to answer. (jobs.forget_windows
-- drops the row with a deleted job that ended with its key; one that ended
-- keyless, its key taken over while it ran, leaves the row naming it.) A
-- job that ran and succeeded or failed holds the window as ever.
-- Primary-key probes of the window's job, only when a throttled publish
-- finds an open window and no active holder. A window is open until its
-- end at p_from, the publish's jobs.call_time (its window opens at that time
-- too, jobs.throttle_hold): in a transaction open longer than the window,
-- now() would find a window still open that ended, or open one that had
-- already ended when its job was written, letting the next publish through.
create function jobs.throttle_lock(p_key text, p_now timestamptz, p_from timestamptz)
returns bigint language plpgsql as $$
declare
  v_id bigint;
begin
  perform pg_advisory_xact_lock(736042, hashtext(p_key));
  -- Waiting past its expiry, started or not (jobs.key_holder's ends): a job
  -- waiting to retry that expired answers only while its window is open.
  select q.job_id into v_id from jobs.job_queue q
  where q.dedupe_key = p_key and q.cancel_requested_at is null
    and not coalesce(q.lease_until is null and q.expires_at <= p_now, false);
  if not found then
    select t.job_id into v_id from jobs.throttle t
    where t.dedupe_key = p_key and t.until > p_from
      and (exists (select from jobs.job_queue q where q.job_id = t.job_id and q.cancel_requested_at is null
                     and not coalesce(q.lease_until is null and q.attempt = 0 and q.expires_at <= p_now, false))
           or exists (select from jobs.job j where j.job_id = t.job_id
                        and not coalesce(jobs.frees_window(j.status, j.attempts, j.error), false))
           or exists (select from jobs.job_archive a where a.job_id = t.job_id
                        and not coalesce(jobs.frees_window(a.status, a.attempts, a.error), false)));
  end if;
  return v_id;
end $$;

-- Opens the key's window, p_seconds from p_now (the publish's jobs.call_time), for the job a throttled
-- publish just wrote, in the publish's transaction: under
-- jobs.throttle_lock, which found the key free (no row, a window that has
-- ended, or one whose job was cancelled or expired unstarted), so the row
-- is taken over.
create function jobs.throttle_hold(p_key text, p_job_id bigint, p_now timestamptz, p_seconds numeric)
returns void language sql as $$
  insert into jobs.throttle as t (dedupe_key, job_id, until)
  values (p_key, p_job_id, p_now + make_interval(secs => p_seconds::double precision))
  on conflict (dedupe_key) do update set job_id = excluded.job_id, until = excluded.until;
$$;

-- Lets go of the throttle windows that ended jobs whose history was just
-- deleted hold (jobs.delete_jobs, jobs.delete_ended, jobs.maintain's
-- retention; and those jobs.maintain archives whose end frees them,
-- jobs.frees_window): p_ids with their dedupe keys p_keys (the keyed ones
-- only), each only while its key's window still names it. Kept, a
-- throttled publish of the key would answer, for the rest of the window,
-- the id of a job that no longer exists (getJob null, waitFor rejects) and
-- write nothing. As pg-boss frees a singleton slot with its job's row. One
-- primary-key probe per keyed job; jobs without a key cost nothing. (A job
-- that ended keyless, its key taken over by a replace or a plain publish
-- while it ran, leaves its row: jobs.throttle_lock finds its job gone and
-- the window free.) A row another transaction holds (a
-- throttled publish writing the key's new window, a maintenance pass
-- deleting it) is skipped: never waited for.
create function jobs.forget_windows(p_ids bigint[], p_keys text[])
returns void language sql as $$
  delete from jobs.throttle t using (
    select o.dedupe_key from jobs.throttle o join unnest(p_ids, p_keys) u(id, key) on o.dedupe_key = u.key and o.job_id = u.id
    for update of o skip locked) d
  where t.dedupe_key = d.dedupe_key;
$$;
