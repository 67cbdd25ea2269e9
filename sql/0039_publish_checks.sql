-- pgdrain 0039: checking jobs.publish's arguments (jobs.check_publish), each
-- with the check of sql/0002 or sql/0043 for its field, in the order jobs.publish
-- gives them; and a job's own dead-letter queue (jobs.check_dead_letter).

-- jobs.publish's arguments (sql/0004 and sql/0046 say what each means), checked in this
-- order before it takes a lock but the hold of a dead_letter's queue
-- (jobs.check_dead_letter); p_now and p_queue as it resolved them (now,
-- 'default'). Raises PD001 to PD019 naming the field.
create function jobs.check_publish(p_task text, p_timeout numeric, p_priority integer, p_max_retries integer,
  p_dedupe_key text, p_serial_key text, p_attributes jsonb, p_group_id text, p_group_tier text,
  p_retry_delay numeric, p_retry_backoff text, p_retry_delay_max numeric, p_scheduled_at timestamptz,
  p_expires_at timestamptz, p_now timestamptz, p_dead_letter text, p_queue text, p_dedupe_mode text,
  p_throttle_seconds numeric, p_depends_on bigint[])
returns void language plpgsql as $$
begin
  perform jobs.check_task(p_task);
  if p_task like 'sql:%' then
    perform jobs.check_sql_task(p_task);
  end if;
  -- These checks pass nulls: each called only for a value given (a plain
  -- publish makes one call of a check, jobs.check_task's, not five).
  if p_timeout is not null or p_priority is not null or p_max_retries is not null then
    perform jobs.check_options(p_timeout, p_priority, p_max_retries, p_timeout_name => 'timeout_seconds');
  end if;
  if p_dedupe_key is not null then
    perform jobs.check_key(p_dedupe_key, 'PD011', 'dedupe_key');
  end if;
  if p_serial_key is not null then
    perform jobs.check_key(p_serial_key, 'PD012', 'serial_key');
  end if;
  if p_attributes is not null then
    perform jobs.check_object(p_attributes, 'attributes');
  end if;
  if p_group_id is not null or p_group_tier is not null then
    perform jobs.check_group(p_group_id, p_group_tier);
  end if;
  if p_retry_delay is not null or p_retry_backoff is not null or p_retry_delay_max is not null then
    perform jobs.check_retry_policy(p_retry_delay, p_retry_backoff, p_retry_delay_max);
  end if;
  if not isfinite(p_scheduled_at) then
    perform jobs.raise_invalid('PD007', 'scheduled_at', format('must be a finite time, got %s', p_scheduled_at));
  end if;
  if p_expires_at is not null then
    perform jobs.check_expiry(p_expires_at, coalesce(p_scheduled_at, p_now), 'expires_at');
  end if;
  if p_dead_letter is not null then
    perform jobs.check_dead_letter(p_dead_letter, p_queue, 'dead_letter');
  end if;
  if p_dedupe_mode is not null then
    if p_dedupe_mode not in ('keep', 'keep_waiting', 'replace', 'replace_keep_time') then
      perform jobs.raise_invalid('PD011', 'dedupe_mode',
        format('must be keep, keep_waiting, replace or replace_keep_time, got %s', left(quote_literal(p_dedupe_mode), 80)));
    elsif p_dedupe_key is null then
      perform jobs.raise_invalid('PD011', 'dedupe_mode', 'needs a dedupe_key (the key whose job it keeps or replaces)');
    end if;
  end if;
  if p_throttle_seconds is not null then
    if p_dedupe_key is null then
      perform jobs.raise_invalid('PD011', 'throttle_seconds', 'needs a dedupe_key (the key it throttles)');
    -- NaN is greater than every number: the upper bound turns it away.
    elsif not (p_throttle_seconds > 0 and p_throttle_seconds <= 2592000) then
      perform jobs.raise_invalid('PD011', 'throttle_seconds',
        format('must be greater than 0 and at most 2592000 seconds (30 days), got %s', p_throttle_seconds));
    elsif p_dedupe_mode in ('replace', 'replace_keep_time') then
      -- A replace rewrites the waiting job with the latest publish; a window
      -- keeps the first job and answers every publish after it with its id.
      perform jobs.raise_invalid('PD011', 'throttle_seconds', format(
        'cannot be given with dedupe_mode %s (a throttle keeps the first job of its window, a replace the latest)', p_dedupe_mode));
    elsif p_dedupe_mode = 'keep_waiting' then
      -- A window answers with the job that opened it while it runs and after
      -- it ended; keep_waiting lets a running job go.
      perform jobs.raise_invalid('PD011', 'throttle_seconds', 'cannot be given with dedupe_mode keep_waiting '
        || '(a throttle window answers with its job even while it runs or once it ended; keep_waiting lets a running job go)');
    end if;
  end if;
  if p_depends_on is not null and p_dedupe_mode in ('replace', 'replace_keep_time') then
    perform jobs.raise_invalid('PD013', 'depends_on', format(
      'cannot be given with dedupe_mode %s (a replaced job keeps its dependencies)', p_dedupe_mode));
  end if;
end $$;

-- A job's own dead-letter queue (jobs.publish's dead_letter; p_field:
-- 'jobs[3].dead_letter' in a bulk), checked as jobs.create_queue checks a
-- queue's (PD009): a queue name, an existing queue, and neither the job's
-- queue p_queue nor one whose dead letters lead back to it (the failed job
-- would come back to the queue it failed in). The queue is held against a
-- delete until commit (jobs.hold_queue, sql/0003), so jobs.delete_queue,
-- which refuses a queue an active job names, sees this job. The walk reads
-- the queues as they are: a route changed later may close such a path, but
-- the copy has no dead letter of its own, so it follows its queue's, which
-- never loop.
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
    perform jobs.raise_no_queue(p_dead, format('no queue named %s; create it first with jobs.create_queue(%s)',
                                               quote_literal(p_dead), quote_literal(p_dead)), p_field);
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

-- Raises PD009 on p_field (queue, else a dead_letter: jobs.check_dead_letter,
-- jobs.create_queue) for queue p_queue, which its snapshot has no row of:
-- jobs.admit's (every publish), and jobs.subscribe's, jobs.schedule's,
-- jobs.redrive's and a claim's (jobs.pick) with p_unknown, their message
-- for a queue that does not exist (null: 'no queue named 'q'; create it
-- with jobs.create_queue('q')'). Without one, a name no queue can have is
-- told the rule, not to create it (the hint would fail). In REPEATABLE READ
-- or SERIALIZABLE the queue may have been created since the snapshot: an
-- insert of its name, undone (a subtransaction, on this error path only),
-- tells, as the unique index checks committed rows whatever the snapshot,
-- and the message says to retry. A 40001 of the insert (SERIALIZABLE) is
-- raised as it is: SSI's read/write dependency, for a name a SERIALIZABLE
-- creator wrote after this read it, or for this transaction made a pivot
-- by other reads and writes (no queue created then): retrying is right,
-- 'created after' may not be. The insert does not wait for a transaction
-- creating that queue, not yet committed (a lock_timeout of 1 ms, undone
-- with it): waiting, a call that fails anyway would hang on it, or close a
-- deadlock with it (it publishing to a bounded queue this transaction
-- holds); such a queue is not there yet. No name no queue can have is
-- inserted (none was created). A READ ONLY transaction is not probed (its
-- insert would fail 25006, a redrive of a typo answering that): it is told
-- the call's own message, as a queue created after its snapshot cannot be
-- told without a write.
create function jobs.raise_no_queue(p_queue text, p_unknown text default null, p_field text default 'queue')
returns void language plpgsql as $$
declare
  v_since boolean := false;
begin
  if p_unknown is null then
    perform jobs.check_name(p_queue, 'PD009', p_field, 'queue name');
  end if;
  if not jobs.read_committed() and current_setting('transaction_read_only') = 'off' then
    begin
      perform jobs.check_name(p_queue, 'PD009', 'queue', 'queue name');
      perform set_config('lock_timeout', '1ms', true);
      insert into jobs.queue (name) values (p_queue);
      raise sqlstate 'PDA96';  -- none: undo the insert
    exception
      when unique_violation then v_since := true;
      when sqlstate 'PDA96' or sqlstate 'PD009' or lock_not_available then null;
    end;
  end if;
  perform jobs.raise_invalid('PD009', p_field, case when v_since then format(
    'no queue named %s in this %s transaction''s snapshot: it was created after the snapshot; retry in a new transaction',
    quote_literal(p_queue), upper(current_setting('transaction_isolation')))
    else coalesce(p_unknown, format('no queue named %s; create it with jobs.create_queue(%s)',
                                    quote_literal(p_queue), quote_literal(p_queue))) end);
end $$;

-- Checks depends_on p_depends_on by jobs.lock_dependencies' rules (PD013)
-- for a publish answered with its dedupe key's holder (or its throttle
-- window's job), which adds no job: bad input is refused whoever holds the
-- key (a holder past its expiry lets the key go, and that publish checked
-- them). It reads, locking and waiting for none of them: a keep_waiting
-- publish holds the holder's row here, and an ack of a dependency the
-- holder waits for deletes the dependency's row, then locks the holder's
-- (jobs.after_end): waiting for that row closed a cycle (40P01). One
-- snapshot reads the queue and the history, so a job ending (or redriven)
-- meanwhile is in one of them: one still ending counts as not ended yet.
create function jobs.check_dependencies(p_depends_on bigint[], p_now timestamptz)
returns void language plpgsql as $$
declare
  v_bad record;
begin
  if cardinality(p_depends_on) > 1000 then
    perform jobs.raise_invalid('PD013', 'depends_on', 'must list at most 1000 jobs');
  end if;
  select d.id, coalesce(j.status, a.status) as status, q.expires_at into v_bad
  from unnest(p_depends_on) with ordinality d(id, n)
       left join jobs.job_queue q on q.job_id = d.id
       left join jobs.job j on j.job_id = d.id and q.job_id is null
       left join jobs.job_archive a on a.job_id = d.id and q.job_id is null
  where d.id is null or (q.job_id is null and coalesce(j.status, a.status) is distinct from 'success')
     or (q.lease_until is null and q.expires_at <= p_now)
  order by q.job_id is not null, case when q.job_id is null then d.n end, q.job_id  -- as lock_dependencies: the expired last
  limit 1;
  if found then
    perform jobs.raise_bad_dependency(v_bad.id, v_bad.status, v_bad.expires_at);
  end if;
end $$;
