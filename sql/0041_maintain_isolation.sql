-- pgdrain 0041: jobs.maintain's steps (and a claim's expiry) outside READ
-- COMMITTED: a row another session changed after the snapshot is left to it.

-- In REPEATABLE READ or SERIALIZABLE, locking a row that another transaction
-- updated or deleted after this one's snapshot raises 40001 ('could not
-- serialize access due to concurrent update'), SKIP LOCKED or not: one ended
-- job another pass removed, one throttle window a publish renewed, one lease
-- its drain acked or another claim expired failed the whole pass (or claim),
-- its other steps' work rolled back with it. Each step here lists the rows
-- its snapshot shows it would take, leaves out those it cannot lock
-- (jobs.lockable_apart: each changed row found at the cost of one
-- subtransaction rolled back), and runs on the rest at once, as under READ
-- COMMITTED, in a block of its own; on 40001 there (the work reached
-- another changed row: a dependant's, say) on each half of them, and so on,
-- at most 8 blocks a step: a row whose own block fails so is left as it
-- is, to the session that changed it (the next pass, its snapshot newer,
-- sees what that did), and the rest is done; the rows left are counted
-- (jobs.maintain's "left": not caught up). Only work that the next pass
-- redoes is left so: a block holds all of its rows' work (a job's expiry
-- its dependants' and its serial key's too), undone together. Custom plans
-- there: a generic one reads the step's whole index for each block. A step
-- keeps at most 10 subtransactions (xids in the session's cache of 64).
-- 100,000 ended jobs, one changed: 1.7 s; all: 0.4 s (before: 2.3 s, 31 s;
-- every other one: 85 s and 100,000 xids, now 0.2 s, 32 done, the rest
-- left). Under READ COMMITTED (which re-reads a changed row instead)
-- none of this runs: the steps are one statement each, as ever.
-- SERIALIZABLE's other 40001, read/write dependencies (detail 'Reason
-- code: …', never translated), is no changed row: every write of a pass
-- that is a dangerous structure's pivot fails so, and caught, split down to
-- single rows, it did nothing in minutes (100,000 ended jobs: 211 s) and
-- committed. It is raised: the transaction rolls back whole, as it would.

-- The rows of p_keys (p_table's, by its key p_column) this snapshot can
-- lock, and how many it left: taken one a fetch, in key order (a cursor on
-- the key's index), so when a lock fails with a changed row's 40001 the row
-- is known (after the last one fetched, past those another session holds:
-- NOWAIT tells them apart), and the next try starts after it. Each changed row costs one subtransaction, rolled back
-- (a lock that failed took no xid: none kept in the session's cache of
-- 64), and each row is locked once (the last try's locks kept). After 8
-- changed rows in a row the snapshot is stale for them all (another pass
-- took them, committed since), and after 32 in all (a try costs a read of
-- the keys still to do) stale enough: the rest is left, to the next pass.
-- changed_rows: how many of those left were found changed (their NOWAIT 40001).
create function jobs.lockable_apart(p_table regclass, p_column name, inout p_keys anyarray, out left_rows integer, out changed_rows integer)
language plpgsql as $$
declare
  v_keys p_keys%type := array(select k from unnest(p_keys) k order by k);
  v_n integer := coalesce(cardinality(p_keys), 0);
  v_from integer := 1;  -- the first position of this try
  v_at integer;         -- the last position fetched
  v_failed integer[] := '{}';
  v_streak integer := 0;
  v_cur refcursor;
  v_key text;
  v_detail text;
  v_bad integer;        -- the position of the changed row a try failed on
  v_i integer;
begin
  changed_rows := 0;
  while v_from <= v_n loop
    v_at := v_from - 1;
    begin
      -- (select $1): planned without reading each key (a try's plan read all those to do: 32 tries of 100,000, 10 s).
      open v_cur for execute format('select t.%1$I::text from %2$s t where t.%1$I = any((select $1)::%3$s) order by t.%1$I
                                     for update skip locked', p_column, p_table, pg_typeof(v_keys)) using v_keys[v_from:v_n];
      loop
        fetch v_cur into v_key;
        exit when not found;
        v_at := v_at + 1;
        while v_at < v_n and v_keys[v_at]::text <> v_key loop  -- past those another session holds (skipped)
          v_at := v_at + 1;
        end loop;
        v_streak := 0;
      end loop;
      close v_cur;
      v_from := v_n + 1;
    exception when serialization_failure then
      get stacked diagnostics v_detail = pg_exception_detail;
      if jobs.transaction_conflict(v_detail) then raise; end if;
      -- The changed row: the first after v_at this session cannot lock for
      -- its 40001; those before it another session holds (skipped: left in
      -- p_keys, as a held row the cursor passes). Probed with NOWAIT, at most
      -- 64 a failure, else the next after v_at is blamed (not done either).
      v_bad := v_at + 1;
      for v_i in v_at + 1 .. least(v_n, v_at + 64) loop
        begin
          execute format('select from %2$s t where t.%1$I = $1 for update nowait', p_column, p_table) using v_keys[v_i];
          exit;  -- lockable now (its holder ended since): the changed one not known
        exception
          when lock_not_available then null;  -- held: not a change
          when serialization_failure then
            get stacked diagnostics v_detail = pg_exception_detail;
            if jobs.transaction_conflict(v_detail) then raise; end if;
            v_bad := v_i;
            changed_rows := changed_rows + 1;
            exit;
        end;
      end loop;
      v_failed := v_failed || v_bad;
      v_from := v_bad + 1;
      v_streak := v_streak + 1;
      exit when v_streak >= 8 or cardinality(v_failed) >= 32;
    end;
  end loop;
  left_rows := cardinality(v_failed) + greatest(v_n - v_from + 1, 0);
  if left_rows > 0 then
    p_keys := array(select v_keys[i] from generate_series(1, least(v_from - 1, v_n)) i where i <> all(v_failed) order by i);
  end if;
end $$;

-- jobs.remove_ended outside READ COMMITTED: the ended jobs it would
-- remove, by halves (each job with its throttle window).
create function jobs.remove_ended_apart(p_before timestamptz, p_archive boolean, p_max integer,
                                        out removed integer, out archived integer, out left_rows integer)
language plpgsql set plan_cache_mode = force_custom_plan as $$
declare
  v_ids bigint[];
  v_from integer[] := array[1];  -- the ranges of v_ids still to do, a stack: v_from[i] to v_to[i]
  v_to integer[];
  v_lo integer;
  v_hi integer;
  v_detail text;
  v_blocks integer := 0;
begin
  -- The rows no other session holds, locked as listed: a pass running at
  -- once holds the oldest, and this one takes the next (as under READ
  -- COMMITTED; listed, held ones were skipped: 0 done, and so caught up).
  -- One changed since the snapshot fails that: then all the snapshot shows.
  begin
    v_ids := array(select j.job_id from jobs.job j where j.ended_at < p_before order by j.ended_at limit p_max
                   for update skip locked);
  exception when serialization_failure then
    get stacked diagnostics v_detail = pg_exception_detail;
    if jobs.transaction_conflict(v_detail) then raise; end if;
    v_ids := array(select j.job_id from jobs.job j where j.ended_at < p_before order by j.ended_at limit p_max);
  end;
  select l.p_keys, l.left_rows into v_ids, left_rows from jobs.lockable_apart('jobs.job', 'job_id', v_ids) l;
  v_to := array[cardinality(v_ids)];
  removed := 0;
  archived := 0;
  while cardinality(v_from) > 0 loop
    v_lo := v_from[cardinality(v_from)];
    v_hi := v_to[cardinality(v_to)];
    v_from := trim_array(v_from, 1);
    v_to := trim_array(v_to, 1);
    v_blocks := v_blocks + 1;
    if v_blocks > 8 then  -- at most 8 blocks a step (a subtransaction each): the rest to the next pass
      left_rows := left_rows + v_hi - v_lo + 1;
      continue;
    end if;
    begin
      perform from jobs.job j where j.job_id = any(v_ids[v_lo:v_hi]) for update skip locked;  -- a changed row's 40001, cheaply
      select remove_ended_apart.removed + r.removed, remove_ended_apart.archived + r.archived into removed, archived
      from jobs.remove_ended(p_before, p_archive, p_max, v_ids[v_lo:v_hi]) r;
    exception when serialization_failure then
      get stacked diagnostics v_detail = pg_exception_detail;
      if jobs.transaction_conflict(v_detail) then raise; end if;
      if v_lo < v_hi then  -- each half apart, the first first; one row: left to the session that changed it
        v_from := v_from || ((v_lo + v_hi) / 2 + 1) || v_lo;
        v_to := v_to || v_hi || ((v_lo + v_hi) / 2);
      else
        left_rows := left_rows + 1;
      end if;
    end;
  end loop;
end $$;

-- jobs.delete_ended_windows outside READ COMMITTED: the ended windows, by
-- halves (one a publish renewed since is kept).
create function jobs.delete_ended_windows_apart(p_now timestamptz, p_max integer,
                                                out windows integer, out left_rows integer)
language plpgsql set plan_cache_mode = force_custom_plan as $$
declare
  v_keys text[];
  v_from integer[] := array[1];  -- as in jobs.remove_ended_apart
  v_to integer[];
  v_lo integer;
  v_hi integer;
  v_detail text;
  v_blocks integer := 0;
begin
  begin  -- as in jobs.remove_ended_apart: those no other session holds, else all
    v_keys := array(select o.dedupe_key from jobs.throttle o where o.until <= p_now order by o.until limit p_max
                    for update skip locked);
  exception when serialization_failure then
    get stacked diagnostics v_detail = pg_exception_detail;
    if jobs.transaction_conflict(v_detail) then raise; end if;
    v_keys := array(select o.dedupe_key from jobs.throttle o where o.until <= p_now order by o.until limit p_max);
  end;
  select l.p_keys, l.left_rows into v_keys, left_rows from jobs.lockable_apart('jobs.throttle', 'dedupe_key', v_keys) l;
  v_to := array[cardinality(v_keys)];
  windows := 0;
  while cardinality(v_from) > 0 loop
    v_lo := v_from[cardinality(v_from)];
    v_hi := v_to[cardinality(v_to)];
    v_from := trim_array(v_from, 1);
    v_to := trim_array(v_to, 1);
    v_blocks := v_blocks + 1;
    if v_blocks > 8 then  -- at most 8 blocks a step (a subtransaction each): the rest to the next pass
      left_rows := left_rows + v_hi - v_lo + 1;
      continue;
    end if;
    begin
      perform from jobs.throttle o where o.dedupe_key = any(v_keys[v_lo:v_hi]) for update skip locked;
      windows := windows + (jobs.delete_ended_windows(p_now, p_max, v_keys[v_lo:v_hi])).windows;
    exception when serialization_failure then
      get stacked diagnostics v_detail = pg_exception_detail;
      if jobs.transaction_conflict(v_detail) then raise; end if;
      if v_lo < v_hi then
        v_from := v_from || ((v_lo + v_hi) / 2 + 1) || v_lo;
        v_to := v_to || v_hi || ((v_lo + v_hi) / 2);
      else
        left_rows := left_rows + 1;
      end if;
    end;
  end loop;
end $$;

-- jobs.expire_due outside READ COMMITTED (a claim's, jobs.expire's,
-- jobs.maintain's): the jobs it would end or retry (as it picks them, its
-- bound on serial keys too), by halves, each with all its expiry does (its
-- dependants, its serial key's next job, its dead letter): a lease its
-- drain settled or extended, or another expiry took, after this snapshot
-- is left to that (never expired twice).
create function jobs.expire_apart(n integer, p_now timestamptz, p_after timestamptz, p_leases boolean,
                                  p_waiting boolean, p_holder bigint, out leases integer, out waiting integer,
                                  out left_rows integer)
language plpgsql set plan_cache_mode = force_custom_plan as $$
declare
  v_ids bigint[] := array(
    select e.job_id from (
      select e.job_id, e.at, e.keyed_end, count(*) filter (where e.keyed_end) over (order by e.at, e.job_id) as k
      from ((select q.job_id, q.lease_until as at,
                    q.serial_key is not null and (q.attempt > q.max_retries or q.cancel_requested_at is not null) as keyed_end
             from jobs.job_queue q
             where p_leases and q.lease_until <= p_now and q.lease_until > coalesce(p_after, '-infinity')
               and (p_holder is null or q.lease_holder is distinct from p_holder)
             order by q.lease_until limit n)
            union all
            (select q.job_id, q.expires_at, q.serial_key is not null and not q.serial_wait
             from jobs.job_queue q
             where p_waiting and q.expires_at <= p_now and q.lease_until is null and q.waiting_deps = 0
             order by q.expires_at limit n)) e) e
    where not e.keyed_end or e.k <= jobs.max_serial_keys()
    order by e.at, e.job_id);
  v_from integer[] := array[1];  -- as in jobs.remove_ended_apart
  v_to integer[];
  v_lo integer;
  v_hi integer;
  v_detail text;
  v_blocks integer := 0;
begin
  select l.p_keys, l.left_rows into v_ids, left_rows from jobs.lockable_apart('jobs.job_queue', 'job_id', v_ids) l;
  v_to := array[cardinality(v_ids)];
  leases := 0;
  waiting := 0;
  while cardinality(v_from) > 0 loop
    v_lo := v_from[cardinality(v_from)];
    v_hi := v_to[cardinality(v_to)];
    v_from := trim_array(v_from, 1);
    v_to := trim_array(v_to, 1);
    v_blocks := v_blocks + 1;
    if v_blocks > 8 then  -- at most 8 blocks a step (a subtransaction each): the rest to the next pass
      left_rows := left_rows + v_hi - v_lo + 1;
      continue;
    end if;
    begin
      perform from jobs.job_queue q where q.job_id = any(v_ids[v_lo:v_hi]) for update skip locked;
      select expire_apart.leases + e.leases, expire_apart.waiting + e.waiting into leases, waiting
      from jobs.expire_due(n, p_now, p_after, p_leases, p_waiting, p_holder, v_ids[v_lo:v_hi]) e;
    exception when serialization_failure then
      get stacked diagnostics v_detail = pg_exception_detail;
      if jobs.transaction_conflict(v_detail) then raise; end if;
      if v_lo < v_hi then
        v_from := v_from || ((v_lo + v_hi) / 2 + 1) || v_lo;
        v_to := v_to || v_hi || ((v_lo + v_hi) / 2);
      else
        left_rows := left_rows + 1;
      end if;
    end;
  end loop;
end $$;
