-- pgdrain 0002: publishing: one job, column arrays, a bulk of jobs.

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
  if current_setting('transaction_isolation') = 'read committed' then
    perform pg_advisory_xact_lock_shared(736041, hashtext(p_queue));
    select * into v_q from jobs.queue q where q.name = p_queue;
  else
    select * into v_q from jobs.queue q where q.name = p_queue for key share;
  end if;
  return v_q;
end $$;

-- A job's own dead-letter queue (jobs.publish's dead_letter; p_field:
-- 'jobs[3].dead_letter' in a bulk), checked as jobs.create_queue checks a
-- queue's (PD009): a queue name, an existing queue, and neither the job's
-- queue p_queue nor one whose dead letters lead back to it (the failed job
-- would come back to the queue it failed in). The queue is held against a
-- delete until commit (jobs.hold_queue), so jobs.delete_queue, which refuses
-- a queue an active job names, sees this job. The walk reads the queues as
-- they are: a route changed later may close such a path, but the copy has
-- no dead letter of its own, so it follows its queue's, which never loop.
create function jobs.check_dead_letter(p_dead text, p_queue text, p_field text)
returns void language plpgsql as $$
declare
  v_path text[] := array[p_queue];
  v_at text := p_dead;
begin
  perform jobs.check_name(p_dead, 'PD009', p_field, 'queue name');
  if p_dead = p_queue then
    perform jobs.raise_invalid('PD009', p_field, format(
      'must name another queue than the job''s own (%s): failing for good, it would come back to the queue it failed in',
      quote_literal(p_dead)));
  end if;
  if (jobs.hold_queue(p_dead)).name is null then
    perform jobs.raise_invalid('PD009', p_field, format(
      'no queue named %s; create it first with jobs.create_queue(%s)', quote_literal(p_dead), quote_literal(p_dead)));
  end if;
  while v_at is not null and v_at <> all(v_path) loop
    v_path := v_path || v_at;
    select q.dead_letter into v_at from jobs.queue q where q.name = v_at;
  end loop;
  if v_at = p_queue then
    perform jobs.raise_invalid('PD009', p_field, format(
      'must not lead back to the job''s queue %s: %s would be a loop (failing for good, it would come back to the queue it failed in)',
      quote_literal(p_queue), array_to_string(v_path || v_at, ' -> ')));
  end if;
end $$;

-- Checks that a queue exists and has room for n more waiting jobs (n = 0:
-- adds none, nothing to check), and returns its row: the publish takes the
-- queue's default_* from this one lookup. A bounded queue (max_size set)
-- serialises its publishers on an advisory lock until they commit, so the
-- bound holds exactly. Every publish also holds the queue against a delete
-- until it commits, as jobs.hold_queue does (inline here: the function
-- call cost ~2% of a single publish, pgbench with fsync off; the shared
-- lock ~2% more): jobs.delete_queue (sql/0016) waits for publishes in
-- flight and sees their jobs, and one that comes after it finds no queue.
create function jobs.admit(p_queue text, p_n integer)
returns jobs.queue language plpgsql as $$
declare
  v_q jobs.queue;
  v_max integer;
  v_waiting integer;
begin
  if current_setting('transaction_isolation') = 'read committed' then
    perform pg_advisory_xact_lock_shared(736041, hashtext(p_queue));
    select * into v_q from jobs.queue q where q.name = p_queue;
  else
    select * into v_q from jobs.queue q where q.name = p_queue for key share;
  end if;
  if v_q.name is null then
    perform jobs.raise_invalid('PD009', 'queue',
      format('no queue named %s; create it with jobs.create_queue(%s)', quote_literal(p_queue), quote_literal(p_queue)));
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
      perform jobs.raise_invalid('PD010', 'queue', format(
        'queue %s is full: %s waiting jobs, max_size %s; publish later or raise it with jobs.create_queue(%s, max_size => ...)',
        quote_literal(p_queue), v_waiting, v_max, quote_literal(p_queue)));
    end if;
  end if;
  return v_q;
end $$;

-- Locks the active jobs among depends_on (so none can end unseen before this
-- transaction commits) and returns them: the dependencies still to succeed.
-- Raises when one is unknown or already ended without success.
create function jobs.lock_dependencies(p_depends_on bigint[])
returns bigint[] language plpgsql as $$
declare
  v_active bigint[];
  v_bad record;
begin
  if cardinality(p_depends_on) > 1000 then
    perform jobs.raise_invalid('PD013', 'depends_on', 'must list at most 1000 jobs');
  end if;
  select coalesce(array_agg(q.job_id), '{}') into v_active from (
    select q.job_id from jobs.job_queue q where q.job_id = any(p_depends_on) order by q.job_id for key share
  ) q;
  -- An ended dependency may already be in jobs.job_archive (jobs.maintain, sql/0009).
  select d.id, coalesce(j.status, a.status) as status into v_bad
  from unnest(p_depends_on) d(id) left join jobs.job j on j.job_id = d.id
       left join jobs.job_archive a on a.job_id = d.id
  where d.id is null or (d.id <> all(v_active) and coalesce(j.status, a.status) is distinct from 'success')
  limit 1;
  if found then
    perform jobs.raise_invalid('PD013', 'depends_on', case
      when v_bad.id is null then 'must not contain null'
      when v_bad.status is null then format('job %s does not exist (never published, deleted by jobs.delete_jobs, or ended and deleted by jobs.maintain''s retention)', v_bad.id)
      else format('job %s already ended as %s, so this job could never run', v_bad.id, v_bad.status) end);
  end if;
  return v_active;
end $$;

-- Publishing -----------------------------------------------------------------

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

-- Options after `now` are best given by name:
--   jobs.publish('email.send', '{"to":"a@b"}', queue => 'mail', dedupe_key => 'welcome:42')
-- queue        a queue made by jobs.create_queue (default 'default'); its
--              defaults fill timeout, priority and max_retries left null
-- dedupe_key   while a job with this key is pending or running, publishing
--              another returns that job's id and writes nothing
-- dedupe_mode  what a publish does while a job holds its dedupe_key (null:
--              'keep', as above). 'replace' (debounce): a job that has not
--              started (pending, scheduled or blocked) takes this publish's
--              task, body, scheduled_at, timeout, priority, max_retries,
--              queue and attributes, and its id is returned; it keeps its id,
--              created_at, attempt and last_error, serial_key (left out:
--              kept; another is refused) and dependencies (depends_on is refused). A running
--              job is left to finish without the key, and a new job takes it.
--              'replace_keep_time' (debounce without postponing: graphile-worker's
--              preserve_run_at): as 'replace', but a waiting job keeps its
--              scheduled_at (this publish's is ignored for it); its expiry is
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
--              stately, README: Dedupe key, for how it differs).
-- throttle_seconds  with a dedupe_key (mode keep): for this long after it
--              wrote a job, even once that job has ended, a publish with
--              throttle_seconds returns its id and writes nothing (more than
--              0, at most 2592000: 30 days), unless that job expired
--              unstarted or was cancelled (a running one: asked to cancel),
--              or its history was deleted (jobs.throttle_lock,
--              jobs.forget_windows). The window is the one given by
--              the publish that wrote the job; a publish without
--              throttle_seconds neither reads nor opens one (sql/0014).
-- serial_key   jobs with the same key run one at a time, in publish order
-- depends_on   runs only after all these jobs succeeded; if one fails or is
--              cancelled, this job ends as cancelled (and so do its own dependants)
-- attributes   a JSON object drains can filter on (claim's filter, @>)
-- retry_delay, retry_backoff, retry_delay_max  the job's own retry policy,
--              checked as jobs.create_queue's (PD007): with any of them set,
--              its nacks wait jobs.queue_backoff of these instead of its
--              queue's policy or jobs.backoff (an expired lease goes back at
--              once, whatever the policy); with none, the job follows its queue's
-- expires_at   not started by then, the job never runs: the next claim (or
--              jobs.maintain) ends it as a failure, 'expired: not started
--              before <expires_at>' (jobs.expire); after its scheduled time
--              (PD007). Left null: its queue's expire_in after its scheduled
--              time, else never. A running job is not affected; one retried
--              after it passed expires at the next claim.
-- dead_letter  the job's own dead-letter queue: failing for good, it is
--              copied there instead of to its queue's dead_letter
--              (jobs.route_dead_letters, sql/0003). An existing queue, not
--              the job's own nor one leading back to it (PD009:
--              jobs.check_dead_letter). A replace takes the new one; redrive keeps it.
-- group_id, group_tier  the job's group and its tier (each 1 to 200
--              characters, a tier only with a group: PD019): a queue with
--              group_concurrency runs at most that many jobs of a group at
--              once (the tier's cap in its group_tiers for a job of a tier).
--              A replace takes the new ones; history and redrive keep them.
-- Raises PD010 when the queue is at its max_size, PD018 for an SQL task
-- (sql:schema.function) not allowed by jobs.allow_sql_task (sql/0010).
create function jobs.publish(
  task          text,
  body          jsonb       default null,
  scheduled_at  timestamptz default null,
  timeout       numeric     default null,
  priority      integer     default null,
  max_retries   integer     default null,
  now           timestamptz default null,
  queue         text        default null,
  dedupe_key    text        default null,
  serial_key    text        default null,
  depends_on    bigint[]    default null,
  attributes    jsonb       default null,
  dedupe_mode   text        default null,
  throttle_seconds numeric  default null,
  retry_delay   numeric     default null,
  retry_backoff text        default null,
  retry_delay_max numeric   default null,
  expires_at    timestamptz default null,
  dead_letter   text        default null,
  group_id      text        default null,
  group_tier    text        default null
) returns bigint language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_now timestamptz := coalesce(publish.now, pg_catalog.now());
  v_queue text := coalesce(publish.queue, 'default');
  v_waiting bigint[];
  v_serial_wait boolean := false;
  v_id bigint;
  v_replace boolean := false;
  v_keep_time boolean := false;
  v_keep_waiting boolean := false;
  v_takes boolean := false;  -- a mode that takes the key from a running holder
  v_take bigint;         -- a holder to take the dedupe key from (below, under the locks)
  v_take_serial text;    -- its serial key, when it runs: the new job's, unless this publish gives one
  v_row_wait boolean := false;  -- a replace or keep_waiting waits for the holder's row (its takeover found it held)
  v_was_running boolean;
  v_at timestamptz;
  v_old record;
  v_q jobs.queue;
begin
  perform jobs.check_task(publish.task);
  if publish.task like 'sql:%' then
    perform jobs.check_sql_task(publish.task);
  end if;
  perform jobs.check_options(publish.timeout, publish.priority, publish.max_retries);
  perform jobs.check_key(publish.dedupe_key, 'PD011', 'dedupe_key');
  perform jobs.check_key(publish.serial_key, 'PD012', 'serial_key');
  perform jobs.check_object(publish.attributes, 'attributes');
  if publish.group_id is not null or publish.group_tier is not null then
    perform jobs.check_group(publish.group_id, publish.group_tier);
  end if;
  if publish.retry_delay is not null or publish.retry_backoff is not null or publish.retry_delay_max is not null then
    perform jobs.check_retry_policy(publish.retry_delay, publish.retry_backoff, publish.retry_delay_max);
  end if;
  if not isfinite(publish.scheduled_at) then
    perform jobs.raise_invalid('PD007', 'scheduled_at', format('must be a finite time, got %s', publish.scheduled_at));
  end if;
  if publish.expires_at is not null then
    perform jobs.check_expiry(publish.expires_at, coalesce(publish.scheduled_at, v_now), 'expires_at');
  end if;
  if publish.dead_letter is not null then
    perform jobs.check_dead_letter(publish.dead_letter, v_queue, 'dead_letter');
  end if;
  if publish.dedupe_mode is not null then
    if publish.dedupe_mode not in ('keep', 'keep_waiting', 'replace', 'replace_keep_time') then
      perform jobs.raise_invalid('PD011', 'dedupe_mode',
        format('must be keep, keep_waiting, replace or replace_keep_time, got %s', left(quote_literal(publish.dedupe_mode), 80)));
    elsif publish.dedupe_key is null then
      perform jobs.raise_invalid('PD011', 'dedupe_mode', 'needs a dedupe_key (the key whose job it keeps or replaces)');
    end if;
    v_replace := publish.dedupe_mode in ('replace', 'replace_keep_time');
    v_keep_time := publish.dedupe_mode = 'replace_keep_time';
    v_keep_waiting := publish.dedupe_mode = 'keep_waiting';
    v_takes := v_replace or v_keep_waiting;
  end if;
  if publish.throttle_seconds is not null then
    if publish.dedupe_key is null then
      perform jobs.raise_invalid('PD011', 'throttle_seconds', 'needs a dedupe_key (the key it throttles)');
    -- NaN is greater than every number: the upper bound turns it away.
    elsif not (publish.throttle_seconds > 0 and publish.throttle_seconds <= 2592000) then
      perform jobs.raise_invalid('PD011', 'throttle_seconds',
        format('must be greater than 0 and at most 2592000 seconds (30 days), got %s', publish.throttle_seconds));
    elsif v_replace then
      -- A replace rewrites the waiting job with the latest publish; a window
      -- keeps the first job and answers every publish after it with its id.
      perform jobs.raise_invalid('PD011', 'throttle_seconds', format(
        'cannot be given with dedupe_mode %s (a throttle keeps the first job of its window, a replace the latest)', publish.dedupe_mode));
    elsif v_keep_waiting then
      -- A window answers with the job that opened it while it runs and after
      -- it ended; keep_waiting lets a running job go.
      perform jobs.raise_invalid('PD011', 'throttle_seconds', 'cannot be given with dedupe_mode keep_waiting '
        || '(a throttle window answers with its job even while it runs or once it ended; keep_waiting lets a running job go)');
    end if;
    v_id := jobs.throttle_lock(publish.dedupe_key, v_now);
    if v_id is not null then
      return v_id;
    end if;
  end if;
  if v_replace then
    if publish.depends_on is not null then
      perform jobs.raise_invalid('PD013', 'depends_on', format(
        'cannot be given with dedupe_mode %s (a replaced job keeps its dependencies)', publish.dedupe_mode));
    end if;
  end if;
  if v_takes then
    -- Replaces (and keep_waiting publishes) of one key one at a time, so
    -- none finds the key free, loses the insert to another and loops.
    perform pg_advisory_xact_lock(736039, hashtext(publish.dedupe_key));
  end if;

  for i in 1..3 loop
    if v_takes and not v_row_wait then
      -- A running holder (it ends as it is, keyless; keep_waiting: also one
      -- waiting to retry, which retries keyless) is found here and taken
      -- over under the locks below, as jobs.publish takes a key from a
      -- cancelling one (holding its row while waiting for them, this
      -- deadlocked with a transactional handler's ack of it); its row held
      -- then (a settle ending it), the pass starts again without them and
      -- waits for the row below.
      select q.job_id, q.serial_key into v_old
      from jobs.job_queue q
      where q.dedupe_key = publish.dedupe_key
        and (q.lease_until is not null
             or v_keep_waiting and q.attempt > 0 and not coalesce(q.expires_at <= v_now, false));
      if found then
        v_take := v_old.job_id;
        v_take_serial := v_old.serial_key;
      end if;
    end if;
    if v_takes and v_take is null then
      -- The row lock makes a claim skip the job meanwhile (SKIP LOCKED); a
      -- claim or settle holding it first is waited for, and the row read as
      -- it left it (running, back to pending, or gone). A serial key found
      -- with a holder on an earlier pass is not this one's to lock.
      v_row_wait := false;
      v_take_serial := null;
      select q.job_id, q.lease_until, q.queue, q.serial_key, q.scheduled_at, q.expires_at, q.attempt into v_old
      from jobs.job_queue q where q.dedupe_key = publish.dedupe_key for update;
      -- Kept time: an expired waiting job (it never runs) is let go as a running one.
      if found and v_replace and v_old.lease_until is null
         and not (v_keep_time and coalesce(v_old.expires_at <= v_now, false)) then
        -- Left out, the serial key is the job's own (kept, as its dependencies are).
        if publish.serial_key is not null and v_old.serial_key is distinct from publish.serial_key then
          perform jobs.raise_invalid('PD012', 'serial_key', format(
            'must be the serial_key of job %s, which this publish replaces (%s), got %s', v_old.job_id,
            coalesce(left(quote_literal(v_old.serial_key), 80), 'null'), coalesce(left(quote_literal(publish.serial_key), 80), 'null')));
        end if;
        v_at := case when v_keep_time then v_old.scheduled_at else coalesce(publish.scheduled_at, v_now) end;
        if v_keep_time and publish.expires_at is not null then
          perform jobs.check_expiry(publish.expires_at, v_at, 'expires_at');
        end if;
        -- Moved to another queue, the job needs room there; in its own, only the defaults.
        v_q := jobs.admit(v_queue, case when v_old.queue <> v_queue then 1 else 0 end);
        update jobs.job_queue q
        set task = publish.task, body = publish.body, scheduled_at = v_at,
            timeout = coalesce(publish.timeout, v_q.default_timeout, 60),
            priority = coalesce(publish.priority, v_q.default_priority, 0),
            max_retries = coalesce(publish.max_retries, v_q.default_max_retries, 3), queue = v_queue,
            attributes = publish.attributes, retry_delay = publish.retry_delay,
            retry_backoff = publish.retry_backoff = 'exponential', retry_delay_max = publish.retry_delay_max,
            expires_at = jobs.expiry(publish.expires_at, v_at, v_q.expire_in),
            dead_letter = publish.dead_letter, group_id = publish.group_id, group_tier = publish.group_tier
        where q.job_id = v_old.job_id;
        perform jobs.notify('pgdrain_queued', v_queue);
        return v_old.job_id;
      elsif found and v_keep_waiting and v_old.lease_until is null and v_old.attempt = 0
            and not coalesce(v_old.expires_at <= v_now, false) then
        -- Not started yet (pg-boss's created): it holds the key.
        return v_old.job_id;
      elsif found then
        -- Running (or its lease ran out unseen, or expired; keep_waiting: or
        -- waiting to retry): it ends (or retries) as it is, keyless;
        -- the new job takes its serial key when this publish left it out.
        update jobs.job_queue q set dedupe_key = null where q.job_id = v_old.job_id;
        publish.serial_key := coalesce(publish.serial_key, v_old.serial_key);
      end if;
    elsif not v_takes and publish.dedupe_key is not null then
      -- A holder that will not run to an end of its own lets go of the key,
      -- and this publish takes it: a waiting one past its expiry (it still
      -- ends as expired, at the next claim, keyless as a replaced running
      -- job ends), and a running one asked to cancel (graphile-worker's
      -- remove_job frees a locked job's key too); the new job then takes its
      -- serial key when this publish left it out, as a replace does, so it
      -- waits behind it. Found here, taken below under the locks, the
      -- serial key it passes on among them: holding its row while waiting
      -- for them, this publish deadlocked with a transactional handler's
      -- ack of that very job, which holds a serial key this publish wants
      -- (its handler published with it) and waits for the row. Only on the
      -- first pass: a later one holds the locks, and a holder found then is
      -- answered.
      select q.job_id, q.serial_key, q.lease_until is not null as running,
             q.lease_until is null and q.expires_at <= v_now or q.lease_until is not null and q.cancel_requested_at is not null as ends
        into v_old
      from jobs.job_queue q where q.dedupe_key = publish.dedupe_key;
      if found and not (i = 1 and v_old.ends) then
        return v_old.job_id;
      elsif found then
        v_take := v_old.job_id;
        v_take_serial := case when v_old.running then v_old.serial_key end;
      end if;
    end if;
    v_q := jobs.admit(v_queue, 1);
    if publish.depends_on is not null then
      v_waiting := jobs.lock_dependencies(publish.depends_on);
    end if;
    if coalesce(publish.serial_key, v_take_serial) is not null then
      -- Taken also by jobs.after_end before it picks a key's next head.
      if v_takes then
        -- Its lock let go if a job took the key while this waited (below),
        -- or if the running holder found above could not be taken over.
        begin
          perform pg_advisory_xact_lock(736038, hashtext(coalesce(publish.serial_key, v_take_serial)));
          if v_take is not null then
            v_was_running := jobs.take_dedupe_key(v_take, publish.dedupe_key, v_now, publish.dedupe_mode, v_take_serial,
                                                  publish.serial_key is not null);
            v_take := null;
            if v_was_running then
              publish.serial_key := coalesce(publish.serial_key, v_take_serial);
            else
              v_row_wait := true;
            end if;
          end if;
          if exists (select 1 from jobs.job_queue q where q.dedupe_key = publish.dedupe_key) then
            raise sqlstate 'PDA98';
          end if;
        exception when sqlstate 'PDA98' then
          -- That job's ack may wait for this key while holding the job's
          -- row: back to the top without the key, to lock the row first.
          continue;
        end;
      else
        perform pg_advisory_xact_lock(736038, hashtext(coalesce(publish.serial_key, v_take_serial)));
      end if;
    end if;
    if v_takes and v_take is not null then
      -- A running holder without a serial key, and none given: no key lock to let go.
      v_was_running := jobs.take_dedupe_key(v_take, publish.dedupe_key, v_now, publish.dedupe_mode, null, false);
      v_take := null;
      if v_was_running is null then
        v_row_wait := true;
        continue;
      end if;
    end if;
    -- Looked up again under the locks: a job that took the key while this
    -- waited for them may be ending (an ack that deleted it waits for the
    -- serial key held here): inserting would wait for that ack, a deadlock.
    if not v_takes and publish.dedupe_key is not null then
      -- The holder found above, if it still holds the key and will not end
      -- of its own. Its row held by another transaction (a settle or an
      -- expiry ending it) is skipped, and the holder answered: waiting for
      -- it could close a cycle with the locks held here.
      if v_take is not null then
        v_was_running := jobs.take_dedupe_key(v_take, publish.dedupe_key, v_now, publish.dedupe_mode, v_take_serial,
                                              publish.serial_key is not null);
        if v_was_running then
          publish.serial_key := coalesce(publish.serial_key, v_take_serial);
        end if;
        v_take := null;
      end if;
      select q.job_id into v_id from jobs.job_queue q where q.dedupe_key = publish.dedupe_key;
      if found then
        return v_id;
      end if;
    end if;
    if publish.serial_key is not null then
      v_serial_wait := exists (select 1 from jobs.job_queue q where q.serial_key = publish.serial_key);
    end if;

    insert into jobs.job_queue (task, body, scheduled_at, timeout, priority, max_retries, created_at,
                                queue, dedupe_key, serial_key, serial_wait, waiting_deps, attributes,
                                retry_delay, retry_backoff, retry_delay_max, expires_at, dead_letter, group_id, group_tier)
    values (publish.task, publish.body, coalesce(publish.scheduled_at, v_now),
            coalesce(publish.timeout, v_q.default_timeout, 60), coalesce(publish.priority, v_q.default_priority, 0),
            coalesce(publish.max_retries, v_q.default_max_retries, 3), v_now, v_queue, publish.dedupe_key, publish.serial_key,
            v_serial_wait, coalesce(cardinality(v_waiting), 0), publish.attributes,
            publish.retry_delay, publish.retry_backoff = 'exponential', publish.retry_delay_max,
            jobs.expiry(publish.expires_at, coalesce(publish.scheduled_at, v_now), v_q.expire_in), publish.dead_letter,
            publish.group_id, publish.group_tier)
    on conflict (dedupe_key) where dedupe_key is not null do nothing
    returning job_id into v_id;
    -- null: a concurrent publish took the dedupe key first; loop to return its id.
    if v_id is not null then
      if publish.throttle_seconds is not null then
        perform jobs.throttle_hold(publish.dedupe_key, v_id, v_now, publish.throttle_seconds);
      end if;
      if cardinality(v_waiting) > 0 then
        insert into jobs.dependency (depends_on, job_id) select d, v_id from unnest(v_waiting) d on conflict do nothing;
      end if;
      perform jobs.notify('pgdrain_queued', v_queue);
      return v_id;
    end if;
  end loop;
  perform jobs.raise_invalid('PD011', 'dedupe_key', 'kept changing hands while publishing; try again');
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

-- jobs.publish_arrays' path for a call with dedupe keys, serial keys or
-- attributes (its arguments checked). Every lock is taken before the dedupe
-- keys are looked up (as jobs.publish): the queue's, then the serial keys'.
-- (Looked up before, a key could be taken meanwhile by a job whose ack then
-- deletes it and waits for a serial key held here, while the insert waits
-- for that ack: a deadlock.) The positions whose key an active job holds
-- take its id; the rest (a key's first position only) are inserted in
-- dedupe key order, so two calls sharing keys wait for each other in one
-- order, never crosswise. A key a concurrent publish took since the lookup
-- takes that job's id. Set-based: arrays by position. Also the path of a
-- call whose jobs carry retry policies (p_retry_*), expiries or dead letters
-- (p_dead_letters, checked by the caller), with or without keys.
create function jobs.publish_keyed(p_tasks text[], p_bodies jsonb, p_scheduled_at timestamptz[],
  p_delays double precision[], p_timeouts numeric[], p_priorities integer[], p_max_retries integer[],
  p_queue text, p_now timestamptz, p_dedupe_keys text[], p_serial_keys text[], p_attributes jsonb,
  p_retry_delays numeric[] default null, p_retry_backoffs text[] default null, p_retry_delay_maxes numeric[] default null,
  p_expires_at timestamptz[] default null, p_dead_letters text[] default null,
  p_group_ids text[] default null, p_group_tiers text[] default null, p_dedupe_modes text[] default null)
returns bigint[] language plpgsql as $$
declare
  v_ids bigint[];
  v_kw_keys text[];  -- the keys given with dedupe mode keep_waiting
  v_pick boolean[];
  v_count integer;
  v_new bigint[];
  v_try bigint[];
  v_written bigint[];
  v_q jobs.queue;
  v_lost text[];
  v_freed text[];
  v_serials text[];
  v_take bigint[];
  v_locked text[];
begin
  -- Holders that will not run to an end of their own let go of their keys,
  -- as in jobs.publish: waiting ones past their expiry, and running ones
  -- asked to cancel. A key given with keep_waiting (at any of its
  -- positions) is let go also by a running holder and one waiting to retry
  -- (attempt > 0). The new job of a running holder's key (keep_waiting: or
  -- one waiting to retry) takes its serial key when its position gives
  -- none, so it waits for the holder to end: those holders are found
  -- first, their keys locked with the rest, and the keys taken over under
  -- the locks (holding the holders' rows while waiting for them, a bulk
  -- deadlocked with a transactional handler's ack of such a holder, which
  -- holds a serial key the bulk wants and waits for the row, as in
  -- jobs.publish).
  if p_dedupe_modes is not null then
    select array_agg(distinct x.key) into v_kw_keys
    from unnest(p_dedupe_keys, p_dedupe_modes) x(key, mode) where x.mode = 'keep_waiting';
    -- Each key's lock as jobs.publish takes it, first, in one order (as
    -- jobs.lock_serial_keys): a publish taking one of these keys from its
    -- running holder (that holder's row held, skipped below) is waited for,
    -- and its new job answered, not the running one.
    perform pg_advisory_xact_lock(736039, hashtext(k)) from unnest(v_kw_keys) k order by hashtext(k), k;
  end if;
  if p_dedupe_keys is not null then
    select array_agg(x.job_id), array_agg(x.dedupe_key), array_agg(x.serial_key) into v_take, v_freed, v_serials
    from jobs.job_queue x
    where x.dedupe_key = any(p_dedupe_keys) and x.serial_key is not null
      and (x.lease_until is not null and (x.cancel_requested_at is not null or x.dedupe_key = any(v_kw_keys))
           or x.dedupe_key = any(v_kw_keys) and x.attempt > 0 and not coalesce(x.expires_at <= p_now, false));
    if v_freed is not null then
      select array_agg(coalesce(x.serial, f.serial) order by x.ord) into v_locked
      from unnest(p_dedupe_keys, p_serial_keys) with ordinality as x(key, serial, ord)
      left join unnest(v_freed, v_serials) f(key, serial) on f.key = x.key;
      -- As jobs.publish_arrays bounds the keys it is given (jobs.lock_serial_keys).
      if (select count(distinct k) from unnest(v_locked) k) > jobs.max_serial_keys() then
        perform jobs.raise_invalid('PD012', 'serial_keys', format('must hold at most %s distinct keys in one bulk '
          || 'publish, counting those its jobs take from running jobs being cancelled (keep_waiting: running or '
          || 'waiting to retry) whose dedupe keys they take over (each takes a lock until the publish commits): '
          || 'publish more in several', jobs.max_serial_keys()));
      end if;
    end if;
  end if;
  -- The queue's lock as jobs.admit takes it (a bounded queue only), first.
  perform pg_advisory_xact_lock(736037, hashtext(p_queue)) from jobs.queue q where q.name = p_queue and q.max_size is not null;
  if coalesce(v_locked, p_serial_keys) is not null then
    perform jobs.lock_serial_keys(coalesce(v_locked, p_serial_keys));
  end if;
  -- In one statement, those another transaction holds skipped (their
  -- holders answered, as in jobs.publish): a settle ending two of them
  -- would otherwise hold one while waiting for the other. One that passes
  -- its serial key on only if that key was locked above (or it has none).
  if p_dedupe_keys is not null then
    with freed as (
      update jobs.job_queue q set dedupe_key = null
      from (select x.job_id, x.dedupe_key from jobs.job_queue x
            where x.dedupe_key = any(p_dedupe_keys)
              and (x.lease_until is null and x.expires_at <= p_now
                   or (x.lease_until is not null and x.cancel_requested_at is not null
                       or x.dedupe_key = any(v_kw_keys) and (x.lease_until is not null or x.attempt > 0))
                      and (x.serial_key is null or x.job_id = any(v_take)))
            for update skip locked) e
      where q.job_id = e.job_id
      returning e.dedupe_key, q.serial_key, q.lease_until is not null or not coalesce(q.expires_at <= p_now, false) as running
    )
    select array_agg(f.dedupe_key), array_agg(f.serial_key) into v_freed, v_serials
    from freed f where f.running and f.serial_key is not null;
    if v_freed is not null then
      select array_agg(coalesce(x.serial, f.serial) order by x.ord) into p_serial_keys
      from unnest(p_dedupe_keys, p_serial_keys) with ordinality as x(key, serial, ord)
      left join unnest(v_freed, v_serials) f(key, serial) on f.key = x.key;
    end if;
  end if;
  for v_round in 1..4 loop
    begin
      v_ids := array_fill(null::bigint, array[coalesce(cardinality(p_tasks), 0)]);
      if p_dedupe_keys is not null then
        select array_agg(q.job_id order by x.ord) into v_ids
        from unnest(p_dedupe_keys) with ordinality as x(key, ord)
        left join jobs.job_queue q on q.dedupe_key = x.key;
      end if;
      -- Written: each position without an id, but a key's first only.
      select array_agg(x.pick order by x.ord), count(*) filter (where x.pick) into v_pick, v_count
      from (select x.ord, x.id is null and (x.key is null or row_number() over (partition by x.key order by x.ord) = 1) as pick
            from unnest(v_ids, p_dedupe_keys) with ordinality as x(id, key, ord)) x;
      -- Also when none is new: a queue that does not exist is refused.
      v_q := jobs.admit(p_queue, coalesce(v_count, 0));
      if coalesce(v_count, 0) = 0 then
        return coalesce(v_ids, '{}');
      end if;
      -- Ids drawn under the keys' locks and given in position order: a key's
      -- jobs run in job_id order, so this call's keep theirs and follow earlier publishes.
      v_new := array(select nextval('jobs.job_queue_job_id_seq') from generate_series(1, v_count) order by 1);
      select array_agg(case when x.pick then v_new[x.k] end order by x.ord) into v_try
      from (select x.ord, x.pick, count(*) filter (where x.pick) over (order by x.ord) as k
            from unnest(v_pick) with ordinality as x(pick, ord)) x;
      with written as (
        insert into jobs.job_queue (job_id, task, body, scheduled_at, timeout, priority, max_retries, created_at,
                                    queue, dedupe_key, serial_key, serial_wait, attributes,
                                    retry_delay, retry_backoff, retry_delay_max, expires_at, dead_letter,
                                    group_id, group_tier)
        overriding system value
        select j.id, j.task, j.body, coalesce(j.scheduled_at, p_now + make_interval(secs => j.delay), p_now),
               coalesce(j.timeout, v_q.default_timeout, 60), coalesce(j.priority, v_q.default_priority, 0),
               coalesce(j.max_retries, v_q.default_max_retries, 3), p_now, p_queue, j.dedupe_key, j.serial_key,
               -- Behind the key's active jobs, or an earlier job of this call.
               j.serial_key is not null and (row_number() over (partition by j.serial_key order by j.id) > 1
                 or exists (select 1 from jobs.job_queue q where q.serial_key = j.serial_key)),
               nullif(j.attributes, 'null'), j.retry_delay, j.retry_backoff = 'exponential', j.retry_delay_max,
               jobs.expiry(j.expires_at, coalesce(j.scheduled_at, p_now + make_interval(secs => j.delay), p_now),
                           v_q.expire_in), j.dead_letter, j.group_id, j.group_tier
        from rows from (unnest(v_try), unnest(p_tasks), jsonb_array_elements(p_bodies), unnest(p_scheduled_at),
                        unnest(p_delays), unnest(p_timeouts), unnest(p_priorities), unnest(p_max_retries),
                        unnest(p_dedupe_keys), unnest(p_serial_keys), jsonb_array_elements(p_attributes),
                        unnest(p_retry_delays), unnest(p_retry_backoffs), unnest(p_retry_delay_maxes), unnest(p_expires_at),
                        unnest(p_dead_letters), unnest(p_group_ids), unnest(p_group_tiers))
               as j(id, task, body, scheduled_at, delay, timeout, priority, max_retries, dedupe_key, serial_key, attributes,
                    retry_delay, retry_backoff, retry_delay_max, expires_at, dead_letter, group_id, group_tier)
        where j.id is not null
        order by j.dedupe_key
        on conflict (dedupe_key) where dedupe_key is not null do nothing
        returning job_id
      )
      select coalesce(array_agg(w.job_id), '{}') into v_written from written w;
      -- Written positions take their ids; a key a concurrent publish took, its job's.
      select array_agg(coalesce(x.id, w.id, q.job_id) order by x.ord) into v_ids
      from unnest(v_ids, v_try, p_dedupe_keys) with ordinality as x(id, try, key, ord)
      left join unnest(v_written) w(id) on w.id = x.try
      left join jobs.job_queue q on x.try is not null and w.id is null and q.dedupe_key = x.key;
      if exists (select from unnest(v_ids, v_try) x(id, try) where x.try is not null and x.id is null) then
        -- That job already ended too. Written again now, while holding the
        -- keys written above, the wait for a third publish of the key could
        -- close a cycle with one waiting for those: undone, and done again.
        raise sqlstate 'PDA98';
      end if;
      exit;
    exception when sqlstate 'PDA98' then
      if v_round = 4 then
        perform jobs.raise_invalid('PD011', 'dedupe_key', 'kept changing hands while publishing; try again');
      end if;
    end;
  end loop;
  perform jobs.notify('pgdrain_queued', p_queue);
  -- A key's later positions take its first's id. A serial key whose job
  -- here was not written may have one of this call waiting behind it.
  select array_agg(coalesce(x.id, x.first) order by x.ord),
         array_agg(distinct x.serial) filter (where x.serial is not null and x.id <> x.try)
  into v_ids, v_lost
  from (select x.*, max(x.id) filter (where x.try is not null) over (partition by x.key) as first
        from unnest(v_ids, v_try, p_dedupe_keys, p_serial_keys) with ordinality as x(id, try, key, serial, ord)) x;
  if v_lost is not null then
    perform jobs.after_end(null, null, v_lost, p_now);
  end if;
  return v_ids;
end $$;

-- Any number of jobs in one statement, as one array per field (what
-- publishBulk sends: no composite built per job); every array but tasks may
-- be null (all take the default) or hold nulls. bodies is a JSON array, one
-- element per job. delays are seconds from now, for jobs whose scheduled_at
-- is null. The whole batch is checked before anything is written, and an
-- error names the first bad job: jobs[3].task. All go to one queue (default
-- 'default'), whose defaults fill null timeouts, priorities and max_retries.
-- dedupe_keys, serial_keys and attributes (a JSON array of objects or nulls)
-- are per job as in jobs.publish, dedupe mode 'keep' (dedupe_modes null, or
-- a null in it) or 'keep_waiting' (dedupe_modes): a job whose key an active
-- job holds (keep_waiting: one not started yet), or an earlier job of the
-- same call, is not written and answers that job's id (a holder past its expiry, or running and asked
-- to cancel, lets go of its key first, as in jobs.publish: jobs.publish_keyed;
-- keep_waiting: and one running or waiting to retry, unless a settle
-- ending it holds its row: then it is answered; a publish taking the key
-- is waited for, at most 500 distinct keep_waiting keys, PD011
-- dedupe_modes). (A replace rewrites a waiting job under its
-- key's lock, and depends_on locks and checks each dependency: jobs.publish,
-- one job at a time.) retry_delays, retry_backoffs and retry_delay_maxes are
-- each job's own retry policy, as jobs.publish's retry_* (a null in all
-- three: the queue's). expires_at: each job's, as jobs.publish's (a null:
-- its queue's expire_in, else never). dead_letters: each job's own
-- dead-letter queue, as jobs.publish's (a null: its queue's), each distinct
-- one checked once (PD009 jobs[i].dead_letter, i its first job).
-- group_ids, group_tiers: each job's group and tier, as jobs.publish's
-- (PD019 jobs[i].group_id). Returns one id per task, in order.
create function jobs.publish_arrays(
  tasks        text[],
  bodies       jsonb              default null,
  scheduled_at timestamptz[]      default null,
  delays       double precision[] default null,
  timeouts     numeric[]          default null,
  priorities   integer[]          default null,
  max_retries  integer[]          default null,
  queue        text               default null,
  now          timestamptz        default null,
  dedupe_keys  text[]             default null,
  serial_keys  text[]             default null,
  attributes   jsonb              default null,
  retry_delays numeric[]          default null,
  retry_backoffs text[]           default null,
  retry_delay_maxes numeric[]     default null,
  expires_at   timestamptz[]      default null,
  dead_letters text[]             default null,
  group_ids    text[]             default null,
  group_tiers  text[]             default null,
  dedupe_modes text[]             default null
) returns bigint[] language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := coalesce(publish_arrays.now, pg_catalog.now());
  v_queue text := coalesce(publish_arrays.queue, 'default');
  v_n integer := coalesce(cardinality(publish_arrays.tasks), 0);
  v_bad record;
  v_ids bigint[];
  v_q jobs.queue;
  v_timeout numeric;
  v_priority integer;
  v_max_retries integer;
begin
  if coalesce(jsonb_typeof(publish_arrays.bodies), 'array') <> 'array'
     or coalesce(jsonb_array_length(publish_arrays.bodies), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.scheduled_at), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.delays), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.timeouts), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.priorities), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.max_retries), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.dedupe_keys), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.serial_keys), v_n) <> v_n
     or coalesce(jsonb_typeof(publish_arrays.attributes), 'array') <> 'array'
     or coalesce(jsonb_array_length(publish_arrays.attributes), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.retry_delays), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.retry_backoffs), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.retry_delay_maxes), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.expires_at), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.dead_letters), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.group_ids), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.group_tiers), v_n) <> v_n
     or coalesce(cardinality(publish_arrays.dedupe_modes), v_n) <> v_n then
    perform jobs.raise_invalid('PD017', 'jobs', 'every array must hold one element per task (bodies, attributes: JSON arrays)');
  end if;
  -- Each distinct task name once (a batch repeats a few names), the option
  -- arrays only when sent; the per-job pass only to name the first bad job.
  -- SQL tasks (sql:) must be allowed (sql/0010): asked of those names only.
  if array_position(publish_arrays.tasks, null) is not null
     or exists (select from (select distinct t from unnest(array_remove(publish_arrays.tasks, publish_arrays.tasks[1])
                                                         || publish_arrays.tasks[1]) t) d
                where length(d.t) > 200 or d.t !~ '^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$'
                   or d.t like 'sql:%' and not exists (select from jobs.sql_task s where s.name = lower(substr(d.t, 5))))
     or exists (select from unnest(publish_arrays.timeouts) x where x < 0.001 or x > 86400)
     or exists (select from unnest(publish_arrays.priorities) x where x < -1000000 or x > 1000000)
     or exists (select from unnest(publish_arrays.max_retries) x where x < 0 or x > 1000)
     -- NaN sorts above every number, so it fails the upper bound.
     or exists (select from unnest(publish_arrays.delays) x where x < 0 or x > 315360000)
     or exists (select from unnest(publish_arrays.scheduled_at) x where not isfinite(x))
     or exists (select from unnest(publish_arrays.dedupe_keys) x where x = '' or length(x) > 500)
     or exists (select from unnest(publish_arrays.serial_keys) x where x = '' or length(x) > 500)
     or exists (select from jsonb_array_elements(publish_arrays.attributes) x where jsonb_typeof(x) not in ('object', 'null'))
     or exists (select from unnest(publish_arrays.retry_delays) x where x < 0 or x > 86400)
     or exists (select from unnest(publish_arrays.retry_backoffs) x where x not in ('exponential', 'fixed'))
     or exists (select from unnest(publish_arrays.retry_delays, publish_arrays.retry_delay_maxes) x(d, m)
                where x.m < 1 or x.m > 604800 or x.m < coalesce(x.d, 5))
     or exists (select from unnest(publish_arrays.expires_at, publish_arrays.scheduled_at, publish_arrays.delays) x(e, s, d)
                where not isfinite(x.e) or x.e <= coalesce(x.s, v_now + make_interval(secs => x.d), v_now)) then
    select j.ord, j.task, j.timeout, j.priority, j.max_retries, j.delay, j.scheduled_at, j.dedupe_key, j.serial_key,
           nullif(j.attributes, 'null') as attributes, j.retry_delay, j.retry_backoff, j.retry_delay_max, j.expires_at into v_bad
    from rows from (unnest(publish_arrays.tasks), unnest(publish_arrays.timeouts), unnest(publish_arrays.priorities),
                    unnest(publish_arrays.max_retries), unnest(publish_arrays.delays), unnest(publish_arrays.scheduled_at),
                    unnest(publish_arrays.dedupe_keys), unnest(publish_arrays.serial_keys),
                    jsonb_array_elements(publish_arrays.attributes), unnest(publish_arrays.retry_delays),
                    unnest(publish_arrays.retry_backoffs), unnest(publish_arrays.retry_delay_maxes),
                    unnest(publish_arrays.expires_at))
           with ordinality as j(task, timeout, priority, max_retries, delay, scheduled_at, dedupe_key, serial_key, attributes,
                                retry_delay, retry_backoff, retry_delay_max, expires_at, ord)
    where j.task is null or j.task !~ '^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$' or length(j.task) > 200
       or j.task like 'sql:%' and not exists (select from jobs.sql_task s where s.name = lower(substr(j.task, 5)))
       or j.timeout < 0.001 or j.timeout > 86400
       or j.priority < -1000000 or j.priority > 1000000
       or j.max_retries < 0 or j.max_retries > 1000
       or j.delay < 0 or j.delay > 315360000
       or not isfinite(j.scheduled_at)
       or j.dedupe_key = '' or length(j.dedupe_key) > 500 or j.serial_key = '' or length(j.serial_key) > 500
       or jsonb_typeof(j.attributes) not in ('object', 'null')
       or j.retry_delay < 0 or j.retry_delay > 86400 or j.retry_backoff not in ('exponential', 'fixed')
       or j.retry_delay_max < 1 or j.retry_delay_max > 604800 or j.retry_delay_max < coalesce(j.retry_delay, 5)
       or not isfinite(j.expires_at)
       or j.expires_at <= coalesce(j.scheduled_at, v_now + make_interval(secs => j.delay), v_now)
    order by j.ord limit 1;
    if found then
      perform jobs.check_task(v_bad.task, format('jobs[%s].task', v_bad.ord));
      if v_bad.task like 'sql:%' then
        perform jobs.check_sql_task(v_bad.task, format('jobs[%s].task', v_bad.ord));
      end if;
      perform jobs.check_options(v_bad.timeout, v_bad.priority, v_bad.max_retries, format('jobs[%s].', v_bad.ord));
      if not isfinite(v_bad.scheduled_at) then
        perform jobs.raise_invalid('PD007', format('jobs[%s].scheduled_at', v_bad.ord),
          format('must be a finite time, got %s', v_bad.scheduled_at));
      end if;
      perform jobs.check_key(v_bad.dedupe_key, 'PD011', format('jobs[%s].dedupe_key', v_bad.ord));
      perform jobs.check_key(v_bad.serial_key, 'PD012', format('jobs[%s].serial_key', v_bad.ord));
      perform jobs.check_object(v_bad.attributes, format('jobs[%s].attributes', v_bad.ord));
      perform jobs.check_retry_policy(v_bad.retry_delay, v_bad.retry_backoff, v_bad.retry_delay_max,
                                      format('jobs[%s].', v_bad.ord));
      if v_bad.delay is null or v_bad.delay between 0 and 315360000 then
        perform jobs.check_expiry(v_bad.expires_at,
                                  coalesce(v_bad.scheduled_at, v_now + make_interval(secs => v_bad.delay), v_now),
                                  format('jobs[%s].expires_at', v_bad.ord));
      end if;
      perform jobs.raise_invalid('PD007', format('jobs[%s].delay', v_bad.ord),
        format('must be 0 to 315360000 seconds (ten years), got %s', v_bad.delay));
    end if;
  end if;
  -- Groups: the first bad job named.
  if exists (select from unnest(publish_arrays.group_ids) x where x = '' or length(x) > 200)
     or exists (select from unnest(publish_arrays.group_tiers, publish_arrays.group_ids) x(t, g)
                where x.t = '' or length(x.t) > 200 or x.t is not null and x.g is null) then
    select x.ord, x.g, x.t into v_bad
    from unnest(publish_arrays.group_ids, publish_arrays.group_tiers) with ordinality as x(g, t, ord)
    where x.g = '' or length(x.g) > 200 or x.t = '' or length(x.t) > 200 or x.t is not null and x.g is null
    order by x.ord limit 1;
    perform jobs.check_group(v_bad.g, v_bad.t, format('jobs[%s].', v_bad.ord));
  end if;
  -- Dedupe modes: the first bad job named (a replace rewrites a waiting job
  -- under its key's lock, and depends_on locks and checks each dependency:
  -- jobs.publish, one job at a time).
  if publish_arrays.dedupe_modes is not null then
    select x.ord, x.mode into v_bad
    from unnest(publish_arrays.dedupe_modes, publish_arrays.dedupe_keys) with ordinality as x(mode, key, ord)
    where x.mode not in ('keep', 'keep_waiting') or x.mode is not null and x.key is null
    order by x.ord limit 1;
    if found and v_bad.mode not in ('keep', 'keep_waiting') then
      perform jobs.raise_invalid('PD011', format('jobs[%s].dedupe_mode', v_bad.ord), format(
        'must be keep or keep_waiting in a bulk publish (a replace rewrites a waiting job under its key''s lock, '
        || 'one job at a time: jobs.publish), got %s', left(quote_literal(v_bad.mode), 80)));
    elsif found then
      perform jobs.raise_invalid('PD011', format('jobs[%s].dedupe_mode', v_bad.ord), 'needs a dedupe_key (the key whose job it keeps)');
    end if;
  end if;
  -- Each distinct serial key holds a lock-table entry until commit (jobs.lock_serial_keys).
  if (select count(distinct k) from unnest(publish_arrays.serial_keys) k) > 500 then
    perform jobs.raise_invalid('PD012', 'serial_keys', 'must hold at most 500 distinct keys in one bulk publish '
      || '(each takes a lock until the publish commits, from a table PostgreSQL sizes by max_locks_per_transaction): '
      || 'publish more in several');
  end if;
  -- Each distinct key given with keep_waiting too (jobs.publish_keyed).
  if publish_arrays.dedupe_modes is not null and (select count(distinct x.key)
      from unnest(publish_arrays.dedupe_keys, publish_arrays.dedupe_modes) x(key, mode) where x.mode = 'keep_waiting') > 500 then
    perform jobs.raise_invalid('PD011', 'dedupe_modes', 'must give keep_waiting to at most 500 distinct dedupe keys in one bulk '
      || 'publish (each takes a lock until the publish commits, from a table PostgreSQL sizes by max_locks_per_transaction): '
      || 'publish more in several');
  end if;
  -- Each distinct dead letter once, in the order of its first job: that job is named.
  for v_bad in select min(x.ord) as ord, x.d from unnest(publish_arrays.dead_letters) with ordinality as x(d, ord)
               where x.d is not null group by x.d order by 1 loop
    perform jobs.check_dead_letter(v_bad.d, v_queue, format('jobs[%s].dead_letter', v_bad.ord));
  end loop;
  -- Decided once per call: plain jobs never take the keyed path's per-job
  -- steps, nor its retry policy arrays.
  if publish_arrays.dedupe_keys is not null or publish_arrays.serial_keys is not null
     or publish_arrays.attributes is not null or publish_arrays.retry_delays is not null
     or publish_arrays.retry_backoffs is not null or publish_arrays.retry_delay_maxes is not null
     or publish_arrays.expires_at is not null or publish_arrays.dead_letters is not null
     or publish_arrays.group_ids is not null or publish_arrays.group_tiers is not null
     or publish_arrays.dedupe_modes is not null then
    return jobs.publish_keyed(publish_arrays.tasks, publish_arrays.bodies, publish_arrays.scheduled_at,
      publish_arrays.delays, publish_arrays.timeouts, publish_arrays.priorities, publish_arrays.max_retries,
      v_queue, v_now, publish_arrays.dedupe_keys, publish_arrays.serial_keys, publish_arrays.attributes,
      publish_arrays.retry_delays, publish_arrays.retry_backoffs, publish_arrays.retry_delay_maxes,
      publish_arrays.expires_at, publish_arrays.dead_letters, publish_arrays.group_ids, publish_arrays.group_tiers,
      publish_arrays.dedupe_modes);
  end if;
  v_q := jobs.admit(v_queue, v_n);
  -- Once per statement: the queue's defaults, else the global ones.
  v_timeout := coalesce(v_q.default_timeout, 60);
  v_priority := coalesce(v_q.default_priority, 0);
  v_max_retries := coalesce(v_q.default_max_retries, 3);
  perform jobs.notify('pgdrain_queued', v_queue);

  with inserted as (
    insert into jobs.job_queue (task, body, scheduled_at, timeout, priority, max_retries, created_at, queue, expires_at)
    select j.task, j.body, coalesce(j.scheduled_at, v_now + make_interval(secs => j.delay), v_now),
           coalesce(j.timeout, v_timeout), coalesce(j.priority, v_priority), coalesce(j.max_retries, v_max_retries),
           v_now, v_queue,
           -- The queue's expire_in (null for most: nothing computed per job then).
           case when v_q.expire_in is not null
                then jobs.expiry(null, coalesce(j.scheduled_at, v_now + make_interval(secs => j.delay), v_now), v_q.expire_in) end
    -- One function scan in lockstep (no join): its ordinality is already in order.
    from rows from (unnest(publish_arrays.tasks), unnest(publish_arrays.scheduled_at), unnest(publish_arrays.delays),
                    unnest(publish_arrays.timeouts), unnest(publish_arrays.priorities),
                    unnest(publish_arrays.max_retries), jsonb_array_elements(publish_arrays.bodies))
           with ordinality as j(task, scheduled_at, delay, timeout, priority, max_retries, body, ord)
    order by j.ord
    returning job_id
  )
  select array_agg(i.job_id order by i.job_id) into v_ids from inserted i;
  return coalesce(v_ids, '{}');
end $$;

-- Any number of jobs in one statement, as an array of jobs.bulk_job (null
-- fields take the defaults): jobs.publish_arrays, for SQL callers. Returns
-- the ids in order. (No keys, attributes or retry policy: a wider type would
-- break every six-field (...)::jobs.bulk_job; publish_arrays takes them.)
-- group_id, group_tier: the group (and tier) of every job of the bulk.
create function jobs.publish_bulk(jobs jobs.bulk_job[], now timestamptz default null, queue text default null,
                                  group_id text default null, group_tier text default null)
returns setof bigint language sql security definer set search_path = pg_catalog, pg_temp as $$
  select unnest(jobs.publish_arrays(
    coalesce(array_agg(j.task order by j.ord), '{}'), jsonb_agg(j.body order by j.ord),
    array_agg(j.scheduled_at order by j.ord), null, array_agg(j.timeout order by j.ord),
    array_agg(j.priority order by j.ord), array_agg(j.max_retries order by j.ord),
    publish_bulk.queue, publish_bulk.now,
    group_ids => case when publish_bulk.group_id is not null or publish_bulk.group_tier is not null
                      then array_fill(publish_bulk.group_id, array[count(*)::integer]) end,
    group_tiers => case when publish_bulk.group_tier is not null
                        then array_fill(publish_bulk.group_tier, array[count(*)::integer]) end))
  from unnest(publish_bulk.jobs) with ordinality as j(task, body, scheduled_at, timeout, priority, max_retries, ord)
$$;
