-- pgdrain 0004: publishing one job (jobs.publish).

-- The first six, in this order and by these names, are the public contract
-- (DESIGN.md): task, body, scheduled_at, timeout_seconds (the seconds a run
-- may take: the job's timeout), priority, max_retries.
-- Options after `now` are best given by name:
--   jobs.publish('email.send', '{"to":"a@b"}', queue => 'mail', dedupe_key => 'welcome:42')
-- queue        a queue made by jobs.create_queue (default 'default'); its
--              defaults fill timeout_seconds, priority and max_retries left null
-- dedupe_key   while a job with this key is pending or running, publishing
--              another returns that job's id and writes nothing
-- dedupe_mode  what a publish does while a job holds its dedupe_key (null:
--              'keep', as above; 'replace', 'replace_keep_time' or
--              'keep_waiting'), and throttle_seconds, for how long after it
--              wrote a job: sql/0046 says what each does
-- serial_key   jobs with the same key run one at a time, in publish order
-- depends_on   runs only after all these jobs succeeded; if one fails or is
--              cancelled, this job ends as cancelled (and so do its own dependants);
--              one already ended so, or waiting past its expires_at, is PD013
--              (also when the dedupe key's holder is answered: jobs.check_dependencies)
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
--              time, else never (scheduled_at left null: after this call,
--              jobs.call_time). A running job is not affected; one retried
--              after it passed expires at the next claim.
-- dead_letter  the job's own dead-letter queue: failing for good, it is
--              copied there instead of to its queue's dead_letter
--              (jobs.route_dead_letters, sql/0008). An existing queue, not
--              the job's own nor one leading back to it (PD009:
--              jobs.check_dead_letter). A replace takes the new one; redrive keeps it while it exists.
-- group_id, group_tier  the job's group and its tier (each 1 to 200
--              characters, a tier only with a group: PD019): a queue with
--              group_concurrency runs at most that many jobs of a group at
--              once (the tier's cap in its group_tiers for a job of a tier).
--              A replace takes the new ones; history and redrive keep them.
-- Raises PD010 when the queue is at its max_size, PD018 for an SQL task
-- (sql:schema.function) not allowed by jobs.allow_sql_task (sql/0025).
create function jobs.publish(
  task          text,
  body          jsonb       default null,
  scheduled_at  timestamptz default null,
  timeout_seconds numeric   default null,
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
  v_now timestamptz := jobs.clock(publish.now);
  -- The time an expiry (and a throttle window) counts from: jobs.call_time.
  v_from timestamptz := jobs.call_time(publish.now, v_now);
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
  v_old record;
  v_q jobs.queue;
  v_answer text; v_try boolean := publish.dedupe_key is not null and current_setting('pgdrain.internal_publish_try', true) is not distinct from 'on';  -- a try
  v_own boolean := v_try;  -- holds the key's lock (736039) itself: a try, or a replace or keep_waiting publish not needing one
begin
  perform jobs.check_publish(publish.task, publish.timeout_seconds, publish.priority, publish.max_retries,
    publish.dedupe_key, publish.serial_key, publish.attributes, publish.group_id, publish.group_tier,
    publish.retry_delay, publish.retry_backoff, publish.retry_delay_max, publish.scheduled_at,
    publish.expires_at, v_now, publish.dead_letter, v_queue, publish.dedupe_mode,
    publish.throttle_seconds, publish.depends_on);
  if publish.dedupe_mode is not null then
    v_replace := publish.dedupe_mode in ('replace', 'replace_keep_time');
    v_keep_time := publish.dedupe_mode = 'replace_keep_time';
    v_keep_waiting := publish.dedupe_mode = 'keep_waiting';
    v_takes := v_replace or v_keep_waiting;
  end if;
  -- A window open for the key answers with the job that opened it (sql/0032).
  if publish.throttle_seconds is not null then
    v_id := jobs.throttle_lock(publish.dedupe_key, v_now, v_from);
    if v_id is not null then
      if publish.depends_on is not null then perform jobs.check_dependencies(publish.depends_on, v_now); end if;
      return v_id;
    end if;
  end if;
  if v_takes and v_try then  -- Replaces (and keep_waiting publishes) of a key one at a time (none loses the insert, loops); a bounded
    -- queue's lock before the holder's row, as jobs.publish_keyed (after it: 40P01 with a publish into it depending on the holder).
    perform pg_advisory_xact_lock(736039, hashtext(publish.dedupe_key));
    perform pg_advisory_xact_lock(736037, hashtext(v_queue)) from jobs.queue q where q.name = v_queue and q.max_size is not null;
  end if;
  for i in 1..3 loop
    if v_takes and not v_row_wait then
      -- A running holder (jobs.running_holder; with depends_on, also an expired one: its row locked here, then
      -- a dependency's, 40P01 with an ack of it, which locks its dependants) is taken over under the locks below,
      -- as jobs.publish takes a key from a cancelling one (holding its row while waiting for them deadlocked with a
      -- transactional handler's ack of it); its row held then (a settle ending it), the pass waits for it below.
      select h.job_id, h.serial_key into v_old
      from jobs.running_holder(publish.dedupe_key, v_keep_waiting, v_now, v_keep_waiting and publish.depends_on is not null) h;
      if found then
        v_take := v_old.job_id;
        v_take_serial := v_old.serial_key;
      end if;
    end if;
    -- The key's lock held waiting for the holder's row, its handler's publish of the key waited for it: 40P01. So the lock
    -- is taken in a try (below), which waits for no row, but with no running holder, depends_on, serial key (its lock waited
    -- for, a job took the key, ran, held) or bound, and the key's lock free at once (a try: a call and a subtransaction).
    if i = 1 and v_takes and not v_try and v_take is null and publish.depends_on is null and publish.serial_key is null then
      v_own := not exists (select from jobs.queue q where q.name = v_queue and q.max_size is not null)  -- (not in the if: a
        and pg_try_advisory_xact_lock(736039, hashtext(publish.dedupe_key)); end if;  -- subquery, a statement every publish)
    if v_takes and v_take is null and v_own then
      -- The row lock makes a claim skip the job meanwhile (SKIP LOCKED); a
      -- claim or settle holding it first is waited for, and the row read as
      -- it left it (running, back to pending, or gone). A serial key found
      -- with a holder on an earlier pass is not this one's to lock. With depends_on, in the try only (below):
      -- one found not to answer (claimed while this waited) is let go with it, and taken after the dependencies.
      v_row_wait := false;
      v_take_serial := null;
      select q.job_id, q.lease_until, q.queue, q.serial_key, q.scheduled_at, q.expires_at, q.attempt into v_old
      from jobs.job_queue q where q.dedupe_key = publish.dedupe_key for update;
      -- Kept time: an expired waiting job (it never runs) is let go as a running one.
      if found and v_replace and v_old.lease_until is null
         and not (v_keep_time and coalesce(v_old.expires_at <= v_now, false)) then
        -- Waiting: it takes this publish's task, body and options, under its row lock.
        return jobs.replace_waiting_job(v_old.job_id, v_old.queue, v_old.serial_key, v_old.scheduled_at, v_keep_time, v_now, v_from,
          v_queue, publish.task, publish.body, publish.scheduled_at, publish.timeout_seconds, publish.priority, publish.max_retries,
          publish.serial_key, publish.attributes, publish.retry_delay, publish.retry_backoff, publish.retry_delay_max,
          publish.expires_at, publish.dead_letter, publish.group_id, publish.group_tier);
      elsif found and v_keep_waiting and v_old.lease_until is null and v_old.attempt = 0
            and not coalesce(v_old.expires_at <= v_now, false) then
        -- Not started yet (pg-boss's created): it holds the key (in another queue: once this one exists, PD009).
        if v_old.queue <> v_queue then perform jobs.admit(v_queue, 0); end if;
        if publish.depends_on is not null then perform jobs.check_dependencies(publish.depends_on, v_now); end if;
        return v_old.job_id;
      elsif found then
        if publish.depends_on is not null and v_waiting is null then raise sqlstate 'PDA95' using message = ''; end if;
        -- Running (or its lease ran out unseen, or expired; keep_waiting: or waiting to retry): it ends
        -- (or retries) as it is, keyless; the new job takes its serial key when this publish left it out.
        update jobs.job_queue q set dedupe_key = null where q.job_id = v_old.job_id;
        publish.serial_key := coalesce(publish.serial_key, v_old.serial_key);
      end if;
    elsif not v_takes and publish.dedupe_key is not null then
      -- A holder that will not run to an end of its own lets go of the key (jobs.key_holder): found here, taken below
      -- under the locks. Only on the first pass: a later one holds the locks, and a holder found then is answered.
      -- One that runs to its end is answered at once, as a bulk's: no bound lock
      -- (even a full queue), but one in another queue only once this one exists (PD009; ends null: waiting, no expiry).
      select h.* into v_old from jobs.key_holder(publish.dedupe_key, v_now) h;
      if found and not (i = 1 and coalesce(v_old.ends, false)) then
        if v_old.queue <> v_queue then perform jobs.admit(v_queue, 0); end if;
        if publish.depends_on is not null then perform jobs.check_dependencies(publish.depends_on, v_now); end if;
        return v_old.job_id;
      elsif found then
        v_take := v_old.job_id;
        v_take_serial := case when v_old.running then v_old.serial_key end;
      end if;
    end if;
    -- Counted below, if the key is still free; none asked for before a replace or keep_waiting try (its first look may answer).
    v_q := jobs.admit(v_queue, case when v_takes and not v_own then 0 else 1 end, p_count => false);
    if publish.depends_on is not null or v_takes and not v_own then
      -- A job taking the key once the dependencies are locked (waiting for a lock, inserting first) is answered holding
      -- none of them (an ack of one would wait for this), nor waited for holding them (its row held by an end of it, then
      -- of a dependency: 40P01): each try a subtransaction (jobs.publish; pgdrain.internal_publish_try, set by no caller)
      -- rolled back (PDA95) by that answer (its id) or a pass more ('': tried again; 'w': the holder's row waited for first,
      -- without the key's lock: so a replace or keep_waiting publish with depends_on tries, and one that needs to, above).
      if publish.dedupe_key is not null and not v_own then
        for t in 1..3 loop
          begin
            perform set_config('pgdrain.internal_publish_try', 'on', true);
            v_id := jobs.publish(publish.task, publish.body, publish.scheduled_at, publish.timeout_seconds, publish.priority,
              publish.max_retries, publish.now, v_queue, publish.dedupe_key, publish.serial_key, publish.depends_on,
              publish.attributes, publish.dedupe_mode, publish.throttle_seconds, publish.retry_delay, publish.retry_backoff,
              publish.retry_delay_max, publish.expires_at, publish.dead_letter, publish.group_id, publish.group_tier);
            perform set_config('pgdrain.internal_publish_try', '', true); return v_id;
          exception when sqlstate 'PDA95' then
            get stacked diagnostics v_answer = message_text;
            if v_answer = 'w' then perform jobs.await_key_holder(publish.dedupe_key);  -- not held after
            elsif v_answer <> '' then return v_answer::bigint; end if;
          end;
        end loop;
        exit;  -- PD011
      end if;
      if publish.depends_on is not null then v_waiting := jobs.lock_dependencies(publish.depends_on, v_now, coalesce(publish.serial_key, v_take_serial)); end if;
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
          if v_try then raise sqlstate 'PDA95' using message = 'w'; end if;  -- (above)
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
        if v_try then raise sqlstate 'PDA95' using message = 'w'; end if;  -- (above)
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
        if cardinality(v_waiting) > 0 then raise sqlstate 'PDA95' using message = v_id::text; end if;  -- answered (above)
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
            coalesce(publish.timeout_seconds, v_q.default_timeout, 60), coalesce(publish.priority, v_q.default_priority, 0),
            coalesce(publish.max_retries, v_q.default_max_retries, 3), v_now, v_queue, publish.dedupe_key, publish.serial_key,
            v_serial_wait, coalesce(cardinality(v_waiting), 0), publish.attributes,
            publish.retry_delay, publish.retry_backoff = 'exponential', publish.retry_delay_max,
            jobs.expiry(publish.expires_at, coalesce(publish.scheduled_at, v_from), v_q.expire_in), publish.dead_letter,
            publish.group_id, publish.group_tier)
    on conflict (dedupe_key) where dedupe_key is not null do nothing
    returning job_id into v_id;
    -- null: a concurrent publish took the dedupe key first; loop to return its id.
    if v_id is not null then
      -- A job added: counted (jobs.admit), after it, under the queue's lock; a
      -- key taken meanwhile (a publish to another queue) adds none, counts none.
      if v_q.max_size is not null then perform jobs.count_admit(v_queue); end if;
      if publish.throttle_seconds is not null then perform jobs.throttle_hold(publish.dedupe_key, v_id, v_from, publish.throttle_seconds); end if;
      if cardinality(v_waiting) > 0 then
        insert into jobs.dependency (depends_on, job_id) select d, v_id from unnest(v_waiting) d on conflict do nothing;
      end if;
      perform jobs.notify('pgdrain_queued', v_queue);
      return v_id;
    end if;
    if cardinality(v_waiting) > 0 or v_takes and v_try then
      raise sqlstate 'PDA95' using message = case when v_takes then 'w' else '' end; end if;
  end loop;
  perform jobs.raise_invalid('PD011', 'dedupe_key', 'kept changing hands while publishing; try again');
end $$;
