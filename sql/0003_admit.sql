-- pgdrain 0003: what every publish goes through: holding and admitting a
-- queue, locking dependencies and serial keys (taking over a dedupe key:
-- sql/0046).

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

-- Waits while another transaction holds advisory lock (p_class, p_key), and lets it go at once (a rolled-back
-- subtransaction): the wait of a lock-order retry (jobs.lock_queue_writers, jobs.lock_dependencies,
-- jobs.lock_queue_claims), made holding nothing else it could be waiting for.
create function jobs.await_lock(p_class integer, p_key integer)
returns void language plpgsql as $$
begin
  perform pg_advisory_xact_lock(p_class, p_key);
  raise sqlstate 'PDA94';
exception when sqlstate 'PDA94' then
  null;
end $$;

-- Locks queue p_queue's row FOR UPDATE, then its writers' lock (jobs.hold_queue's) alone, for a change
-- that waits for the writers in flight: jobs.delete_queue, and jobs.create_queue setting a bound
-- (p_unbounded: only while the queue has none). The row first: a transaction that key-shared it
-- (jobs.publish_event) or wrote it (jobs.pause_queue), then published, would wait for this while this
-- waited for it. Not held while the writers are waited for: a writer may wait for a lock of a transaction
-- (a serial key, a job's row) that then publishes into the queue in REPEATABLE READ or SERIALIZABLE
-- (jobs.admit: the row FOR KEY SHARE), which waited for this: 40P01. The writers' lock tried; held, the
-- row let go (a subtransaction), the writers waited for holding neither (the lock let go at once), and
-- both taken again; after 10 such tries, waited for holding the row. Returns whether the row was locked.
-- Only in READ COMMITTED: in an older snapshot the row, locked again, raises 40001 if a transaction changed
-- it meanwhile (jobs.pause_queue), which held through the wait would have waited for this; there, as before.
create function jobs.lock_queue_writers(p_queue text, p_unbounded boolean default false)
returns boolean language plpgsql as $$
declare
  v_found boolean;
begin
  for t in case when jobs.read_committed() then 1 else 11 end..11 loop
    begin
      perform from jobs.queue q where q.name = p_queue and (not p_unbounded or q.max_size is null) for update;
      v_found := found;
      if not v_found or t = 11 or pg_try_advisory_xact_lock(736041, hashtext(p_queue)) then
        exit;
      end if;
      raise sqlstate 'PDA94';  -- the row let go
    exception when sqlstate 'PDA94' then
      perform jobs.await_lock(736041, hashtext(p_queue));  -- the writers waited for, holding nothing
    end;
  end loop;
  if v_found then
    perform pg_advisory_xact_lock(736041, hashtext(p_queue));  -- held already, unless after 10 tries
  end if;
  return v_found;
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
-- p_serial_key: the serial key the publish takes next (jobs.publish). With
-- active dependencies locked, it is only tried: held by another
-- transaction, which may end one of them next (an app's ack of a
-- dependency after a publish with that key, or after an ack of the key's
-- job), waiting for it holding them deadlocked (40P01). Their locks are let
-- go then (a subtransaction), its holder waited for holding neither (the
-- key let go at once: locked first, an ack of a dependency sharing the key,
-- its row then the key, deadlocked with this), and all taken again; after
-- 10 such tries, as before (waiting for the key, a deadlock then detected).
-- Only in READ COMMITTED: in an older snapshot a dependency ended while this
-- waited (its row deleted) raises 40001 locked again, where held it would
-- have waited for this; there, as before.
create function jobs.lock_dependencies(p_depends_on bigint[], p_now timestamptz, p_serial_key text default null)
returns bigint[] language plpgsql as $$
declare
  v_active bigint[];
  v_bad record;
  v_found boolean;
begin
  if cardinality(p_depends_on) > 1000 then
    perform jobs.raise_invalid('PD013', 'depends_on', 'must list at most 1000 jobs');
  end if;
  for t in 1..case when p_serial_key is null then 0 when jobs.read_committed() then 10 else 0 end loop
    begin
      v_active := jobs.lock_dependencies(p_depends_on, p_now);
      if cardinality(v_active) = 0 or pg_try_advisory_xact_lock(736038, hashtext(p_serial_key)) then
        return v_active;
      end if;
      raise sqlstate 'PDA94';  -- the dependencies' locks let go
    exception when sqlstate 'PDA94' then
      perform jobs.await_lock(736038, hashtext(p_serial_key));  -- the key's holder waited for, holding nothing
    end;
  end loop;
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
    perform jobs.raise_bad_dependency(v_bad.id, v_bad.status);
  end if;
  select q.job_id, q.expires_at into v_bad from jobs.job_queue q
  where q.job_id = any(v_active) and q.lease_until is null and q.expires_at <= p_now order by q.job_id limit 1;
  if found then
    perform jobs.raise_bad_dependency(v_bad.job_id, null, v_bad.expires_at);
  end if;
  return v_active;
end $$;

-- Refuses depends_on (PD013) for its job p_id: null, unknown (p_status
-- null), ended as p_status (not success), or waiting past its expiry
-- p_expires_at. jobs.lock_dependencies' and jobs.check_dependencies' words.
create function jobs.raise_bad_dependency(p_id bigint, p_status text, p_expires_at timestamptz default null)
returns void language plpgsql as $$
begin
  perform jobs.raise_invalid('PD013', 'depends_on', case
    when p_id is null then 'must not contain null'
    when p_expires_at is not null then format('job %s expired at %s (not started before it): it ends as a failure, so this '
      || 'job could never run', p_id, to_char(p_expires_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
    when p_status is null then format('job %s does not exist (never published, deleted by jobs.delete_jobs, or ended and '
      || 'deleted by jobs.maintain''s retention)', p_id)
    else format('job %s already ended as %s, so this job could never run', p_id, p_status) end);
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
