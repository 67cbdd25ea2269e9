-- pgdrain 0046: a publish whose dedupe key a job holds: what jobs.publish's
-- dedupe_mode and throttle_seconds (sql/0004's arguments) do then, and
-- taking the key over from a holder that lets go of it. After jobs.publish,
-- which calls these functions: PL/pgSQL resolves them when it runs.

-- jobs.publish's arguments on a dedupe key held:
-- dedupe_mode  what a publish does while a job holds its dedupe_key (null:
--              'keep', as sql/0004's dedupe_key says). 'replace' (debounce): a job that has not
--              started (pending, scheduled or blocked) takes this publish's
--              task, body, scheduled_at, timeout_seconds, priority, max_retries,
--              queue and attributes, and its id is returned; it keeps its id,
--              created_at, attempt and last_error (and unstarted, the count
--              its first line may show; not a snooze's line, dropped, its count
--              snoozed reset: those snoozes were the old job's), serial_key (left out:
--              kept; another is refused) and dependencies (depends_on is refused). A running
--              job is left to finish without the key, and a new job takes it.
--              'replace_keep_time' (debounce without postponing: graphile-worker's
--              preserve_run_at): as 'replace', but a waiting job keeps its
--              scheduled_at (this publish's is ignored for it), a snoozed one
--              with its snoozed count and line (they say why it waits); its expiry is
--              this publish's expires_at (PD007 unless after the kept time),
--              else its queue's expire_in after the kept time. A waiting job
--              already past its expiry never runs: it is let go as a running
--              one is, and the new job runs at its own time, as with no holder.
--              'keep_waiting' (pg-boss's policy short): only a job that has
--              not started yet holds the key (pending, scheduled or blocked,
--              attempt 0): its id is returned and nothing is written, as
--              'keep'. A running holder, and one waiting to retry (attempt >
--              0), is let go as 'replace' lets a running one go: it ends (and
--              retries) keyless, a new job takes the key, and its serial_key
--              when this publish left it out. With serial_key = the dedupe
--              key: one waiting and one running job per key (pg-boss's
--              stately, docs/job-keys.md: Dedupe key, for how it differs).
-- throttle_seconds  with a dedupe_key (mode keep): for this long after it
--              wrote a job, even once that job has ended, a publish with
--              throttle_seconds returns its id and writes nothing (more than
--              0, at most 2592000: 30 days), unless that job expired
--              unstarted, was cancelled (a running one: asked to cancel) or
--              is gone (jobs.throttle_lock). The window is the one the
--              writing publish gave; a publish without throttle_seconds
--              neither reads nor opens one (sql/0032).

-- The holder of dedupe key p_key a keep publish (jobs.publish, dedupe_mode
-- keep or null) finds before taking its locks, and whether it ends (ends):
-- a holder that will not run to an end of its own lets go of the key, and
-- the publish takes it: a waiting one past its expiry at p_now (it still
-- ends as expired, at the next claim, keyless as a replaced running job
-- ends), and a running one asked to cancel (graphile-worker's remove_job
-- frees a locked job's key too); the new job then takes its serial key when
-- the publish left it out, as a replace does, so it waits behind it. Found
-- before, taken under the locks (jobs.take_dedupe_key), the serial key it
-- passes on among them: holding its row while waiting for them, the publish
-- deadlocked with a transactional handler's ack of that very job, which
-- holds a serial key the publish wants (its handler published with it) and
-- waits for the row. No row: no holder. ends null: waiting, no expiry
-- (it runs to its end). Set-returning, so the calling query inlines it (no
-- function call, the plan of the query it replaces).
create function jobs.key_holder(p_key text, p_now timestamptz)
returns table (job_id bigint, serial_key text, running boolean, ends boolean, queue text) language sql stable as $$
  select q.job_id, q.serial_key, q.lease_until is not null,
         q.lease_until is null and q.expires_at <= p_now or q.lease_until is not null and q.cancel_requested_at is not null, q.queue
  from jobs.job_queue q where q.dedupe_key = p_key
$$;

-- The holder a replace or keep_waiting publish (jobs.publish) takes dedupe
-- key p_key from: a running one (it ends as it is, keyless; p_keep_waiting:
-- also one waiting to retry, not expired at p_now, which retries keyless).
-- p_expired (a keep_waiting publish with depends_on): also one waiting past
-- its expiry (it ends keyless), so its row is taken after the dependencies',
-- as a keep publish takes it: locked first, an ack of a dependency the holder
-- shares (that row, then its dependant's: jobs.after_end) deadlocked with it.
-- No row: none. Inlined, as jobs.key_holder.
create function jobs.running_holder(p_key text, p_keep_waiting boolean, p_now timestamptz, p_expired boolean default false)
returns table (job_id bigint, serial_key text) language sql stable as $$
  select q.job_id, q.serial_key
  from jobs.job_queue q
  where q.dedupe_key = p_key
    and (q.lease_until is not null
         or p_keep_waiting and q.attempt > 0 and not coalesce(q.expires_at <= p_now, false)
         or p_expired and q.expires_at <= p_now)
$$;

-- Takes dedupe key p_key from job p_job, which held it when a publish
-- looked it up before taking its locks (jobs.publish), if it still holds it
-- and will not run to an end of its own, as the publish's dedupe mode
-- p_mode lets it go: keep (or null), running and asked to cancel, or
-- waiting past its expiry; replace or replace_keep_time, running;
-- keep_waiting, running, waiting to retry (attempt > 0) or past its expiry. One
-- that passes its serial key on (running; keep_waiting: or waiting) only if that key is the one the publish locked for it (p_serial;
-- or null), or the publish gives one of its own (p_own_serial). Its row
-- held by another transaction (a settle or an expiry ending it) is
-- skipped: waiting for it while holding the publish's locks could close a
-- cycle. Returns whether it passes its serial key on; null when not taken.
create function jobs.take_dedupe_key(p_job bigint, p_key text, p_now timestamptz, p_mode text,
                                     p_serial text, p_own_serial boolean)
returns boolean language sql as $$
  update jobs.job_queue q set dedupe_key = null
  from (select x.job_id from jobs.job_queue x
        where x.job_id = p_job and x.dedupe_key = p_key
          and (coalesce(p_mode, 'keep') = 'keep' and x.lease_until is null and x.expires_at <= p_now
               or (x.lease_until is not null and (coalesce(p_mode, 'keep') <> 'keep' or x.cancel_requested_at is not null)
                   or p_mode = 'keep_waiting' and (x.attempt > 0 or x.expires_at <= p_now))
                  and (p_own_serial or x.serial_key is null or x.serial_key = p_serial))
        for update skip locked) t
  where q.job_id = t.job_id
  returning q.lease_until is not null or p_mode = 'keep_waiting'
$$;

-- Waits while another transaction holds the row of dedupe key p_key's holder,
-- and lets the row go: a keyed publish with depends_on (jobs.publish) before
-- its next try, which locks its dependencies, then takes the holder skipping a
-- held row. Holding the row there, it deadlocked with a transaction that ended
-- a dependency, then waited for that row (an ack of it).
create function jobs.await_key_holder(p_key text)
returns void language plpgsql as $$
begin
  perform from jobs.job_queue q where q.dedupe_key = p_key for update;
  raise sqlstate 'PDA95';  -- rolled back: the row's lock let go
exception when sqlstate 'PDA95' then
  null;
end $$;

-- A replace publish's (jobs.publish, dedupe_mode replace or replace_keep_time) rewrite of p_job, the job
-- waiting with its dedupe key, whose row it holds: the job takes the publish's task, body and options and moves
-- to its queue p_queue (admitted there, dedupe_mode above says what it keeps); p_from_queue, p_held_serial and p_held_at
-- are the job's queue, serial key and scheduled time, p_keep_time whether it keeps that time, p_from the
-- publish's jobs.call_time. A replace drops the snoozes in a row of what it replaced (snoozed 0, their line gone
-- from last_error: jobs.release_error; its time, maybe long past, is not the job's); replace_keep_time keeps the
-- snooze's time, and so the count and line that say why the job waits for it. Raises PD012 for another serial
-- key, PD007 for an expiry not after the kept time, PD010 when the queue moved to is full. Returns p_job.
create function jobs.replace_waiting_job(p_job bigint, p_from_queue text, p_held_serial text, p_held_at timestamptz,
  p_keep_time boolean, p_now timestamptz, p_from timestamptz, p_queue text, p_task text, p_body jsonb, p_scheduled_at timestamptz,
  p_timeout numeric, p_priority integer, p_max_retries integer, p_serial_key text, p_attributes jsonb,
  p_retry_delay numeric, p_retry_backoff text, p_retry_delay_max numeric, p_expires_at timestamptz,
  p_dead_letter text, p_group_id text, p_group_tier text)
returns bigint language plpgsql as $$
declare
  v_at timestamptz;
  v_q jobs.queue;
begin
  -- Left out, the serial key is the job's own (kept, as its dependencies are).
  if p_serial_key is not null and p_held_serial is distinct from p_serial_key then
    perform jobs.raise_invalid('PD012', 'serial_key', format(
      'must be the serial_key of job %s, which this publish replaces (%s), got %s', p_job,
      coalesce(left(quote_literal(p_held_serial), 80), 'null'), coalesce(left(quote_literal(p_serial_key), 80), 'null')));
  end if;
  v_at := case when p_keep_time then p_held_at else coalesce(p_scheduled_at, p_now) end;
  -- Its expiry counts from v_at, but from p_from (jobs.call_time) when the
  -- publish left scheduled_at out: the kept time is kept for it too.
  if p_keep_time and p_expires_at is not null then
    perform jobs.check_expiry(p_expires_at, v_at, 'expires_at');
  end if;
  -- Moved to another queue, the job needs room there; in its own, only the defaults.
  v_q := jobs.admit(p_queue, case when p_from_queue <> p_queue then 1 else 0 end);
  update jobs.job_queue q
  set task = p_task, body = p_body, scheduled_at = v_at,
      timeout = coalesce(p_timeout, v_q.default_timeout, 60),
      priority = coalesce(p_priority, v_q.default_priority, 0),
      max_retries = coalesce(p_max_retries, v_q.default_max_retries, 3), queue = p_queue,
      attributes = p_attributes, retry_delay = p_retry_delay,
      retry_backoff = p_retry_backoff = 'exponential', retry_delay_max = p_retry_delay_max,
      expires_at = jobs.expiry(p_expires_at, case when p_keep_time or p_scheduled_at is not null then v_at else p_from end,
                               v_q.expire_in),
      dead_letter = p_dead_letter, group_id = p_group_id, group_tier = p_group_tier,
      snoozed = case when p_keep_time then q.snoozed else 0 end,
      last_error = case when q.snoozed = 0 or p_keep_time then q.last_error
                        else nullif(substr(q.last_error, strpos(q.last_error || E'\n', E'\n') + 1), '') end
  where q.job_id = p_job;
  perform jobs.notify('pgdrain_queued', p_queue);
  return p_job;
end $$;
