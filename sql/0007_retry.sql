-- pgdrain 0007: retry delays, events (NOTIFY) and the small helpers of a
-- job's end.

-- Retries --------------------------------------------------------------------

-- Delay before retry number `attempt` (1 = the first retry): exponential with
-- "equal jitter", so attempt k waits between 5*2^(k-1)/2 and 5*2^(k-1)
-- seconds, capped at one hour. Replace this function to change the policy.
create function jobs.backoff(attempt integer)
returns interval language sql volatile as $$
  select make_interval(secs => d / 2 + random() * d / 2)
  from (select least(3600.0, 5.0 * power(2, greatest(backoff.attempt, 1) - 1)) as d) s
$$;

-- Delay before retry number `attempt` of a job that has a retry policy of
-- its own (any of jobs.job_queue.retry_* set: jobs.publish's), or whose queue
-- has (jobs.queue.retry_*): jobs.settle_arrays calls this then, the job's
-- first, jobs.backoff otherwise. Base `delay` seconds (null: 5), never
-- more than `delay_max` (null: an hour, or `delay` when that is longer).
-- Exponential (null or true): equal jitter as jobs.backoff, between d/2 and
-- d for d = min(cap, delay * 2^(attempt-1)). Fixed (false): min(cap, delay)
-- exactly, no jitter, as asked (spread retries out with exponential).
create function jobs.queue_backoff(attempt integer, delay numeric, exponential boolean, delay_max numeric)
returns interval language sql volatile as $$
  select make_interval(secs => case when x.fixed then x.d else x.d / 2 + random() * x.d / 2 end)
  from (select f.fixed,
               least(f.cap, case when f.fixed then f.base
                                 else f.base * power(2::float8, least(greatest(queue_backoff.attempt, 1), 1000) - 1) end) as d
        from (select coalesce(not queue_backoff.exponential, false) as fixed,
                     -- To the millisecond first: a delay under float8's range (1e-400, which the
                     -- checks let through as at least 0) would fail every claim's expiry of it.
                     round(coalesce(queue_backoff.delay, 5), 3)::float8 as base,
                     round(coalesce(queue_backoff.delay_max, greatest(3600, queue_backoff.delay)), 3)::float8 as cap) f) x
$$;

-- Events ---------------------------------------------------------------------

-- Events are NOTIFYs on three channels: pgdrain_queued (payload: the queue
-- name), pgdrain_picked and pgdrain_completed (payload: job ids). One per
-- statement, never one per job; delivered at commit, and only then.
-- A transaction that notifies takes a cluster-wide lock from its commit
-- until it ends, so notifying commits do not group-commit: for many
-- concurrent single-job publishers, turn events off with
--   alter database mydb set pgdrain.events = off;   (or per role / session)
-- waitFor and subscribe then hear nothing. Off is any of PostgreSQL's
-- spellings of a false boolean (off, false, no, 0, in any case).
create function jobs.events_on()
returns boolean language sql stable as $$
  select lower(trim(coalesce(current_setting('pgdrain.events', true), ''))) not in ('off', 'of', 'false', 'f', 'no', 'n', '0')
$$;

create function jobs.notify(p_channel text, p_payload text)
returns void language plpgsql as $$
begin
  if jobs.events_on() then
    perform pg_notify(p_channel, p_payload);
  end if;
end $$;

-- NOTIFY a channel with job ids, comma-separated: in one notification when
-- they fit under PostgreSQL's 8000-byte payload limit (a batch of 500 ids of
-- up to 14 digits, joined once), else as many per notification as the
-- longest id lets fit (718 ids of up to 10 digits; 395 of bigint's 19).
create function jobs.notify_ids(p_channel text, p_ids bigint[])
returns void language plpgsql as $$
declare
  v_all text;
  v_per integer;
begin
  if not jobs.events_on() or coalesce(cardinality(p_ids), 0) = 0 then
    return;
  end if;
  v_all := array_to_string(p_ids, ',');
  if length(v_all) <= 7900 then
    perform pg_notify(p_channel, v_all);
    return;
  end if;
  v_per := 7900 / (length((select max(x) from unnest(p_ids) x)::text) + 1);
  for i in 0 .. (cardinality(p_ids) - 1) / v_per loop
    perform pg_notify(p_channel, array_to_string(p_ids[i * v_per + 1 : i * v_per + v_per], ','));
  end loop;
end $$;

-- Serial-key lock volume -------------------------------------------------------

-- The most serial-key jobs one jobs.expire call ends (as jobs.publish_arrays
-- takes at most 500 keys; a drain's settle statement ends at most as many;
-- an admin call takes at most as many: jobs.ending_keys, sql/0027), and the most
-- keys one jobs.after_end takes (or its caller's, if more). A key's lock
-- (jobs.lock_serial_keys) is one entry of PostgreSQL's lock table, held
-- until commit; that table (about max_locks_per_transaction x
-- max_connections entries, 6,400 on a default server) is shared by every
-- session, and a full one fails any statement of any session that needs a
-- lock ("out of shared memory", 53200).
create function jobs.max_serial_keys()
returns integer language sql immutable as $$ select 500 $$;

-- After jobs end ------------------------------------------------------------

-- The dedupe key a job ends with: its own, or the one a cascade freed when
-- it deferred the job (jobs.after_end keeps it in last_error, 'freed dedupe
-- key: <key>': a deferred job never ran, so it has no error of its own).
create function jobs.ended_dedupe_key(p_dedupe_key text, p_attempt integer, p_last_error text)
returns text language sql immutable as $$
  select coalesce(p_dedupe_key, case when p_attempt = 0 and starts_with(p_last_error, 'freed dedupe key: ')
                                     then substr(p_last_error, 19) end)
$$;
