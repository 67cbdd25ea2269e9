-- pgdrain 0003: what every publish goes through: holding and admitting a
-- queue, locking dependencies and serial keys; taking over a dedupe key.

-- Holds queue p_queue until commit, and returns its row (all nulls: no such
-- queue). In READ COMMITTED, an advisory lock shared by its writers (a
-- delete takes it alone), then the row read with a new snapshot: so a
-- delete committed while this waited is seen. No row lock, which every
-- publish of a queue would write to the same row. A REPEATABLE READ or
-- SERIALIZABLE snapshot may predate a delete committed since: there the row
-- is read FOR KEY SHARE, which raises 40001 for such a row, and which a
-- delete (FOR UPDATE of the row first) waits for.
create function jobs.hold_queue(p_queue text)
returns jobs.queue language plpgsql as $$
declare
  v_q jobs.queue;
begin
  if jobs.read_committed() then
    perform pg_advisory_xact_lock_shared(736041, hashtext(p_queue));
    select * into v_q from jobs.queue q where q.name = p_queue;
  else
    select * into v_q from jobs.queue q where q.name = p_queue for key share;
  end if;
  return v_q;
end $$;

-- A row per bounded queue that jobs.admit added jobs to, written (admits
-- + 1) by every such admit under the queue's publishers' lock, whatever its
-- isolation: an admit in a REPEATABLE READ or SERIALIZABLE snapshot older
-- than another's committed since then fails on its write with 40001
-- (serialization_failure: nothing written, retry the transaction), where
-- its count, read in that snapshot, missed those jobs and let it overfill.
-- A table of its own, not a column of jobs.queue: the row lock of such a
-- write, taken after jobs.hold_queue's shared lock, would close a cycle
-- with jobs.delete_queue (the queue's row FOR UPDATE, then that lock) and
-- with an app transaction that changed the queue (jobs.create_queue,
-- jobs.pause_queue), then published to it. No foreign key (an insert's key
-- share of the queue's row would close that cycle too): jobs.delete_queue
-- deletes the row. Unbounded queues have none.
create table jobs.queue_admits (
  queue  text   primary key,
  admits bigint not null default 1
);

-- Checks that a queue exists and has room for n more waiting jobs (n = 0:
-- adds none, nothing to check), and returns its row: the publish takes the
-- queue's default_* from this one lookup. A bounded queue (max_size set)
-- serialises its publishers on an advisory lock until they commit, and
-- each admit that adds jobs writes its row of jobs.queue_admits under it,
-- so the bound holds for admits in any isolation (in an older snapshot:
-- 40001). Every publish also holds the queue against a delete
-- until it commits, as jobs.hold_queue does (inline here: the function
-- call cost ~2% of a single publish, pgbench with fsync off; the shared
-- lock ~2% more): jobs.delete_queue (sql/0034) waits for publishes in
-- flight and sees their jobs, and one that comes after it finds no queue.
-- p_what names the jobs added in the refusal (PD010): 'published', or
-- 'redriven' (jobs.redrive), as in 'queue 'q' is full: 1 waiting job + 2
-- redriven > max_size 2'. p_count false: the caller bumps (jobs.count_admit) once its jobs are written.
create function jobs.admit(p_queue text, p_n integer, p_what text default 'published', p_count boolean default true)
returns jobs.queue language plpgsql as $$
declare
  v_q jobs.queue;
  v_max integer;
  v_waiting integer;
begin
  if jobs.read_committed() then
    perform pg_advisory_xact_lock_shared(736041, hashtext(p_queue));
    select * into v_q from jobs.queue q where q.name = p_queue;
  else
    select * into v_q from jobs.queue q where q.name = p_queue for key share;
  end if;
  if v_q.name is null then
    perform jobs.raise_no_queue(p_queue);
  end if;
  v_max := v_q.max_size;
  if v_max is not null and p_n > 0 then
    perform pg_advisory_xact_lock(736037, hashtext(p_queue));
    -- Waiting = pending or scheduled, not running or blocked: the backlog.
    select count(*) into v_waiting from (
      select 1 from jobs.job_queue j
      where j.queue = p_queue and j.lease_until is null and j.waiting_deps = 0 and not j.serial_wait
      limit v_max + 1) s;
    if v_waiting + p_n > v_max then
      -- What would be exceeded: the waiting jobs (counted up to max_size + 1) and those added.
      perform jobs.raise_invalid('PD010', 'queue', format(
        'queue %s is full: %s waiting job%s + %s %s > max_size %s; %s later or raise it with jobs.create_queue(%s, max_size => ...)%s',
        quote_literal(p_queue), v_waiting, case when v_waiting = 1 then '' else 's' end, p_n, p_what, v_max,
        case when p_what = 'redriven' then 'redrive' else 'publish' end, quote_literal(p_queue),
        -- Counted in an older snapshot: jobs claimed or ended since are among them.
        case when not jobs.read_committed() then format(
          ' (counted in this %s transaction''s snapshot, where jobs claimed or ended since still wait: a new transaction may be admitted)',
          upper(current_setting('transaction_isolation'))) else '' end));
    end if;
    if p_count then
      perform jobs.count_admit(p_queue);
    end if;
  end if;
  return v_q;
end $$;

-- Bumps bounded queue p_queue's jobs.queue_admits row under jobs.admit's lock. Only for jobs added: a publish
-- answered with its dedupe key's holder adds nothing, and fails no other admit (in an older snapshot: 40001).
create function jobs.count_admit(p_queue text)
returns void language plpgsql as $$
begin
  update jobs.queue_admits a set admits = a.admits + 1 where a.queue = p_queue;
  if not found then  -- its first (in an older snapshot: one committed since, 40001 too)
    insert into jobs.queue_admits as a (queue) values (p_queue) on conflict (queue) do update set admits = a.admits + 1;
  end if;
end $$;

-- Locks the active jobs among depends_on (so none can end unseen before this
-- transaction commits) and returns them: the dependencies still to succeed.
-- Raises when one is unknown or already ended without success, or waits
-- past its expiry at p_now (it ends as a failure, never run: jobs.expire).
-- The history is read in a later snapshot than the lock's (so a job that
-- ended while the lock waited for it is seen there): a redrive committing
-- in between moved a failed one from jobs.job back to jobs.job_queue, in
-- neither read ('does not exist'). One found queued again is locked then
-- (at most 10 tries, each lost to a redrive committing in that gap).
create function jobs.lock_dependencies(p_depends_on bigint[], p_now timestamptz)
returns bigint[] language plpgsql as $$
declare
  v_active bigint[];
  v_bad record;
  v_found boolean;
begin
  if cardinality(p_depends_on) > 1000 then
    perform jobs.raise_invalid('PD013', 'depends_on', 'must list at most 1000 jobs');
  end if;
  for i in 1..10 loop
    select coalesce(array_agg(q.job_id), '{}') into v_active from (
      select q.job_id from jobs.job_queue q where q.job_id = any(p_depends_on) order by q.job_id for key share
    ) q;
    -- An ended dependency may already be in jobs.job_archive (jobs.maintain, sql/0024).
    select d.id, coalesce(j.status, a.status) as status into v_bad
    from unnest(p_depends_on) d(id) left join jobs.job j on j.job_id = d.id
         left join jobs.job_archive a on a.job_id = d.id
    where d.id is null or (d.id <> all(v_active) and coalesce(j.status, a.status) is distinct from 'success')
    limit 1;
    v_found := found;
    exit when not v_found or v_bad.id is null or v_bad.status is not null
              or not exists (select 1 from jobs.job_queue q where q.job_id = v_bad.id);
  end loop;
  if v_found then
    perform jobs.raise_invalid('PD013', 'depends_on', case
      when v_bad.id is null then 'must not contain null'
      when v_bad.status is null then format('job %s does not exist (never published, deleted by jobs.delete_jobs, or ended and deleted by jobs.maintain''s retention)', v_bad.id)
      else format('job %s already ended as %s, so this job could never run', v_bad.id, v_bad.status) end);
  end if;
  select q.job_id, q.expires_at into v_bad from jobs.job_queue q
  where q.job_id = any(v_active) and q.lease_until is null and q.expires_at <= p_now order by q.job_id limit 1;
  if found then
    perform jobs.raise_invalid('PD013', 'depends_on', format('job %s expired at %s (not started before it): it ends as a '
      || 'failure, so this job could never run', v_bad.job_id, to_char(v_bad.expires_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')));
  end if;
  return v_active;
end $$;

-- Publishing -----------------------------------------------------------------

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
-- No row: none. Inlined, as jobs.key_holder.
create function jobs.running_holder(p_key text, p_keep_waiting boolean, p_now timestamptz)
returns table (job_id bigint, serial_key text) language sql stable as $$
  select q.job_id, q.serial_key
  from jobs.job_queue q
  where q.dedupe_key = p_key
    and (q.lease_until is not null
         or p_keep_waiting and q.attempt > 0 and not coalesce(q.expires_at <= p_now, false))
$$;

-- Takes dedupe key p_key from job p_job, which held it when a publish
-- looked it up before taking its locks (jobs.publish), if it still holds it
-- and will not run to an end of its own, as the publish's dedupe mode
-- p_mode lets it go: keep (or null), running and asked to cancel, or
-- waiting past its expiry; replace or replace_keep_time, running;
-- keep_waiting, running or waiting to retry (attempt > 0, not expired). One
-- that passes its serial key on (running; keep_waiting: or waiting to
-- retry) only if that key is the one the publish locked for it (p_serial;
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
                   or p_mode = 'keep_waiting' and x.attempt > 0 and not coalesce(x.expires_at <= p_now, false))
                  and (p_own_serial or x.serial_key is null or x.serial_key = p_serial))
        for update skip locked) t
  where q.job_id = t.job_id
  returning q.lease_until is not null or p_mode = 'keep_waiting'
$$;

-- A replace publish's (jobs.publish, dedupe_mode replace or replace_keep_time) rewrite of p_job, the job
-- waiting with its dedupe key, whose row it holds: the job takes the publish's task, body and options and moves
-- to its queue p_queue (admitted there, sql/0004 says what it keeps); p_from_queue, p_held_serial and p_held_at
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

-- Takes the locks of serial keys, as every holder of one does (jobs.publish,
-- jobs.publish_keyed, jobs.after_end, jobs.redrive; jobs.lock_jobs tries
-- them), each key's own in the order of its lock (hashtext, then text: two
-- keys may share a hashtext, and text order would take them crosswise), so
-- two callers sharing keys do not deadlock. Each holds an entry of PostgreSQL's lock table until commit
-- (sized by max_locks_per_transaction): a bulk publish takes at most
-- 500 keys (16 such bulks at once fit a default server's table; 1000 did not). (One lock standing for many keys was tried: a transaction
-- holding one key then stalled every settle of serial-key jobs behind a
-- bulk waiting for it.)
create function jobs.lock_serial_keys(p_keys text[])
returns void language plpgsql as $$
begin
  perform pg_advisory_xact_lock(736038, hashtext(u.k))
  from (select distinct k from unnest(p_keys) k where k is not null) u order by hashtext(u.k), u.k;
end $$;
