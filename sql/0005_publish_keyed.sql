-- pgdrain 0005: publishing jobs that carry dedupe or serial keys,
-- dependencies or groups (jobs.publish_keyed).

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
-- (p_dead_letters, checked by the caller), with or without keys. p_from:
-- the caller's jobs.call_time (null: p_now), what a delay and an expiry count from.
create function jobs.publish_keyed(p_tasks text[], p_bodies jsonb, p_scheduled_at timestamptz[],
  p_delays double precision[], p_timeouts numeric[], p_priorities integer[], p_max_retries integer[],
  p_queue text, p_now timestamptz, p_dedupe_keys text[], p_serial_keys text[], p_attributes jsonb,
  p_retry_delays numeric[] default null, p_retry_backoffs text[] default null, p_retry_delay_maxes numeric[] default null,
  p_expires_at timestamptz[] default null, p_dead_letters text[] default null,
  p_group_ids text[] default null, p_group_tiers text[] default null, p_dedupe_modes text[] default null,
  p_from timestamptz default null)
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
  v_given_serials text[] := p_serial_keys;
  v_busy bigint[];  -- keep_waiting holders a pass could not take (another transaction held their rows)
  v_busy_keys text[] := '{}';  -- their keys, once per pass each was held in
  v_kept bigint[];  -- keep_waiting holders not started yet, held until commit (FOR KEY SHARE)
  v_late bigint[];  -- keep_waiting positions answered with a job written since the pass
  v_claimed_keys text[] := '{}';  -- the keys of those a pass could not hold (a claim taking them), once per pass
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
  -- A keep_waiting key's holder whose row another transaction holds (a
  -- settle ending it, retrying or giving it back; one not started yet: a
  -- claim taking it, a cancel ending it) is waited for, as jobs.publish
  -- waits for it, and read as that left it: answered, it could be a job
  -- that has ended, or one starting with the body it had before this
  -- publish (nothing would run this publish's job). Not
  -- while holding the serial keys' locks (its settle may wait for one to
  -- hand it on), nor holding any other row (a settle ending two holders
  -- holds one while waiting for the other): the locks below are let go, the
  -- row waited for and let go at once (jobs.wait_busy), and the pass made
  -- again. A key whose holder is held in four passes: PD011 dedupe_key, as
  -- jobs.publish (jobs.check_busy_passes, which says how they are counted).
  loop
    begin
      p_serial_keys := v_given_serials;
      v_locked := null;
      v_written := null;
      if p_dedupe_keys is not null then
        select array_agg(x.job_id), array_agg(x.dedupe_key), array_agg(x.serial_key) into v_take, v_freed, v_serials
        from jobs.job_queue x
        where x.dedupe_key = any(p_dedupe_keys) and x.serial_key is not null
          and (x.lease_until is not null and (x.cancel_requested_at is not null or x.dedupe_key = any(v_kw_keys))
               or x.dedupe_key = any(v_kw_keys) and x.attempt > 0 and not coalesce(x.expires_at <= p_now, false));
        if v_freed is not null then
          v_locked := jobs.keyed_serials(p_dedupe_keys, p_serial_keys, v_freed, v_serials, true);
        end if;
      end if;
      -- The queue's lock as jobs.admit takes it (a bounded queue only), first.
      perform pg_advisory_xact_lock(736037, hashtext(p_queue)) from jobs.queue q where q.name = p_queue and q.max_size is not null;
      if coalesce(v_locked, p_serial_keys) is not null then
        perform jobs.lock_serial_keys(coalesce(v_locked, p_serial_keys));
      end if;
      -- A keep_waiting key's holder not started yet is held until this
      -- commits, as jobs.publish holds it (FOR UPDATE there): a claim (its
      -- FOR UPDATE SKIP LOCKED) passes over it, so the job answered stays
      -- unstarted until then. FOR KEY SHARE, so a settle handing it a serial
      -- key or ending one of its dependencies (NO KEY UPDATE) is not held
      -- back. One another transaction holds (a claim taking it) is skipped
      -- here and waited for below, as a busy one.
      if v_kw_keys is not null then
        select array_agg(x.job_id) into v_kept
        from (select q.job_id from jobs.job_queue q
              where q.dedupe_key = any(v_kw_keys)
                and q.lease_until is null and q.attempt = 0 and not coalesce(q.expires_at <= p_now, false)
              for key share skip locked) x;
      end if;
      -- In one statement, those another transaction holds skipped (their
      -- holders answered, as in jobs.publish; a keep_waiting key's waited
      -- for, below): a settle ending two of them would otherwise hold one
      -- while waiting for the other. One that passes
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
          p_serial_keys := jobs.keyed_serials(p_dedupe_keys, p_serial_keys, v_freed, v_serials);
        end if;
      end if;
      if v_kw_keys is not null then
        select array_agg(x.job_id order by x.job_id), v_busy_keys || array_agg(x.dedupe_key) filter (where not x.waiting),
               v_claimed_keys || array_agg(x.dedupe_key) filter (where x.waiting)
          into v_busy, v_busy_keys, v_claimed_keys
        from (select x.job_id, x.dedupe_key,
                     x.lease_until is null and x.attempt = 0 and not coalesce(x.expires_at <= p_now, false) as waiting
              from jobs.job_queue x where x.dedupe_key = any(v_kw_keys)) x
        where not (x.waiting and x.job_id = any(coalesce(v_kept, '{}')));
        if v_busy is not null then
          perform jobs.check_busy_passes(v_busy_keys, v_claimed_keys);
          raise sqlstate 'PDA97';
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
          v_q := jobs.admit(p_queue, coalesce(v_count, 0), p_count => false);  -- counted below
          if coalesce(v_count, 0) = 0 then
            exit;
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
            select j.id, j.task, j.body, coalesce(j.scheduled_at, coalesce(p_from, p_now) + make_interval(secs => nullif(j.delay, 0)), p_now),
                   coalesce(j.timeout, v_q.default_timeout, 60), coalesce(j.priority, v_q.default_priority, 0),
                   coalesce(j.max_retries, v_q.default_max_retries, 3), p_now, p_queue, j.dedupe_key, j.serial_key,
                   -- Behind the key's active jobs, or an earlier job of this call.
                   j.serial_key is not null and (row_number() over (partition by j.serial_key order by j.id) > 1
                     or exists (select 1 from jobs.job_queue q where q.serial_key = j.serial_key)),
                   nullif(j.attributes, 'null'), j.retry_delay, j.retry_backoff = 'exponential', j.retry_delay_max,
                   -- A queue's expire_in counts from p_from (jobs.call_time) for a job without scheduled_at.
                   jobs.expiry(j.expires_at, coalesce(j.scheduled_at, coalesce(p_from, p_now) + make_interval(secs => j.delay),
                                                      coalesce(p_from, p_now)),
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
          -- None written (each key taken meanwhile by a publish to another queue): none counted.
          perform jobs.count_admit(p_queue) where v_q.max_size is not null and cardinality(v_written) > 0;
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
      -- A keep_waiting key answered with a job another publish wrote since
      -- the pass (one not taking the key's lock: keep, a redrive) is held
      -- as the pass holds its holders; one a claim holds, or that started
      -- or ended meanwhile, is waited for as a busy one, and all done again.
      if v_kw_keys is not null then
        select array_agg(distinct x.id) into v_late
        from unnest(v_ids, p_dedupe_keys) x(id, key)
        where x.key = any(v_kw_keys) and x.id <> all(coalesce(v_kept, '{}')) and x.id <> all(coalesce(v_written, '{}'));
        if v_late is not null then
          select l.kept, l.busy, v_busy_keys || l.busy_keys, v_claimed_keys || l.claimed_keys
            into v_kept, v_busy, v_busy_keys, v_claimed_keys
          from jobs.keyed_late(v_late, v_ids, p_dedupe_keys, p_now, v_kept) l;
          if v_busy is not null then
            perform jobs.check_busy_passes(v_busy_keys, v_claimed_keys);
            raise sqlstate 'PDA97';
          end if;
        end if;
      end if;
      if coalesce(v_count, 0) = 0 then
        return coalesce(v_ids, '{}');
      end if;
      exit;
    exception when sqlstate 'PDA97' then
      perform jobs.wait_busy(v_busy);  -- the block's locks released with it
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
