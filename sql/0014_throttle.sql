-- pgdrain 0014: throttle windows for dedupe keys (jobs.publish's
-- throttle_seconds; pg-boss singletonKey with singletonSeconds): at most one
-- job per key per window, even when the job has ended since.
--
-- A dedupe key is global (job_queue_dedupe_idx spans queues), and so is its
-- window. A row is written only by a throttled publish that wrote a job, so
-- plain and plain-keyed publishes pay nothing. `until` is the end of the
-- window of the publish that wrote job_id; a row past its until is the same
-- as no row (no publish reads it), so deleting such rows is always safe:
-- jobs.maintain (sql/0009) does, a bounded number per pass, and a throttled
-- publish overwrites one it finds.
create table jobs.throttle (
  dedupe_key text        primary key,
  job_id     bigint      not null,
  until      timestamptz not null
);
-- For jobs.maintain's bounded delete of ended windows.
create index throttle_until_idx on jobs.throttle (until);
revoke all on jobs.throttle from public;

-- Called by a throttled jobs.publish before it looks for the key's job: takes
-- the key's lock, held until commit, so throttled publishes of one key run
-- one at a time, and each sees the job (and the window) the one before it
-- wrote, even when that job has already ended. Returns the id of the job
-- holding the key: an active one, else the one whose window is still open
-- at p_now; null when the key is free. A job that expired unstarted (its
-- expires_at passed while it waited, no attempt spent) holds neither: an
-- active one is taken over by the publish as any expired waiting holder
-- (jobs.publish), and its window, whether it still waits or has ended as
-- expired ('expired: not started before …', sql/0003), is open to a new job,
-- whose publish opens the key's window anew (jobs.throttle_hold). A job that
-- ran holds the window as ever, however it ended. Primary-key probes of the
-- window's job, only when a throttled publish finds an open window and no
-- active holder.
create function jobs.throttle_lock(p_key text, p_now timestamptz)
returns bigint language plpgsql as $$
declare
  v_id bigint;
begin
  perform pg_advisory_xact_lock(736042, hashtext(p_key));
  select q.job_id into v_id from jobs.job_queue q
  where q.dedupe_key = p_key and not coalesce(q.lease_until is null and q.attempt = 0 and q.expires_at <= p_now, false);
  if not found then
    select t.job_id into v_id from jobs.throttle t
    where t.dedupe_key = p_key and t.until > p_now
      and not exists (select from jobs.job_queue q where q.job_id = t.job_id
                        and q.lease_until is null and q.attempt = 0 and q.expires_at <= p_now)
      and not exists (select from jobs.job j where j.job_id = t.job_id and j.status = 'failure' and j.attempts = 0
                        and starts_with(j.error, 'expired: not started before '));
  end if;
  return v_id;
end $$;

-- Opens the key's window, p_seconds from p_now, for the job a throttled
-- publish just wrote, in the publish's transaction: under
-- jobs.throttle_lock, which found the key free (no row, a window that has
-- ended, or one whose job expired unstarted), so the row is taken over.
create function jobs.throttle_hold(p_key text, p_job_id bigint, p_now timestamptz, p_seconds numeric)
returns void language sql as $$
  insert into jobs.throttle as t (dedupe_key, job_id, until)
  values (p_key, p_job_id, p_now + make_interval(secs => p_seconds::double precision))
  on conflict (dedupe_key) do update set job_id = excluded.job_id, until = excluded.until;
$$;
