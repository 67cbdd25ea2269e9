-- pgdrain 0017: queue administration: creating, changing, pausing and
-- resuming a queue.

-- Queues -----------------------------------------------------------------------

-- The settings of a queue that a claim goes by (jobs.pick), as committed
-- (known: the queue exists): a claim that read them before a limit set
-- meanwhile (jobs.create_queue, below) committed would hand out jobs that no
-- slot counts while they run. In READ COMMITTED a lock shared by claims (a
-- change of max_running or group_concurrency takes it alone: it waits for
-- the claims in flight, and these for it), then the row read with a new
-- snapshot; in REPEATABLE READ or SERIALIZABLE the row read FOR SHARE,
-- which raises 40001 for a row changed since the snapshot, and which that
-- change (its update of the row) waits for. (FOR SHARE, not FOR KEY SHARE:
-- a key share lock passes over an update that changed no key, and a change
-- that took the row FOR UPDATE to make it one would hold the row against the
-- event publishes (jobs.publish_event key-shares it) of a transaction whose
-- claim it waits for: 40P01. As jobs.hold_queue holds a queue for its
-- publishes, on a lock of its own: a claim never waits for a publish.)
create function jobs.claim_settings(p_queue text, out known boolean, out paused boolean, out max_running integer,
                                    out group_concurrency integer, out group_tiers jsonb)
language plpgsql as $$
begin
  if jobs.read_committed() then
    perform pg_advisory_xact_lock_shared(736044, hashtext(p_queue));
    select q.paused, q.max_running, q.group_concurrency, q.group_tiers into paused, max_running, group_concurrency, group_tiers
    from jobs.queue q where q.name = p_queue;
  else
    select q.paused, q.max_running, q.group_concurrency, q.group_tiers into paused, max_running, group_concurrency, group_tiers
    from jobs.queue q where q.name = p_queue for share;
  end if;
  known := found;
end $$;

-- Queue p_queue's row as jobs.create_queue's update locks it (p_bound, a bound set too: FOR UPDATE, with the writers'
-- lock: jobs.lock_queue_writers), then the claims' lock (jobs.claim_settings') tried: held by a claim's transaction,
-- which may then write the row (jobs.pause_queue: 40P01), all let go, the claims waited for holding none, and taken
-- again; after 10 tries (or no row), left to the caller. Only in READ COMMITTED: in an older snapshot a row changed
-- meanwhile (jobs.pause_queue, which waits for this if held) raises 40001 locked again.
create function jobs.lock_queue_claims(p_queue text, p_bound boolean default false)
returns void language plpgsql as $$
begin
  for t in 1..case when jobs.read_committed() then 10 else 0 end loop
    begin
      if not (p_bound and jobs.lock_queue_writers(p_queue, true)) then
        perform from jobs.queue q where q.name = p_queue for no key update;
        exit when not found;
      end if;
      exit when pg_try_advisory_xact_lock(736044, hashtext(p_queue));
      raise sqlstate 'PDA94';  -- the row let go
    exception when sqlstate 'PDA94' then
      perform jobs.await_lock(736044, hashtext(p_queue));  -- the claims waited for, holding nothing
    end;
  end loop;
end $$;

-- Creates a queue, or changes an existing one: only the arguments given
-- change, and one given as null clears its value (max_size: unbounded;
-- default_*: the global default; dead_letter: none). PL/pgSQL cannot tell a
-- left-out argument from a null, so left out, each holds a value no caller
-- means (-2147483648, NaN, '(unchanged)'), read as "keep".
-- Publishing to a queue with max_size waiting jobs raises PD010. A job
-- published to it with no timeout, priority or max_retries takes the queue's
-- default_* (checked as jobs.publish checks its own); later changes leave
-- jobs already published as they are. dead_letter names another existing
-- queue, which gets a copy of every job that fails here for good
-- (jobs.route_dead_letters, sql/0008); a chain of them is fine (mail ->
-- mail_dead -> ops), one leading back to this queue is refused (its jobs
-- would go round for ever): PD009, column dead_letter. retry_delay (0 to
-- 86400 s; null: 5), retry_backoff ('exponential', null: the same, or
-- 'fixed'; stored as the boolean jobs.queue.retry_backoff, as pg-boss's
-- retryBackoff) and retry_delay_max (1 to 604800 s; null: an hour, or
-- retry_delay when longer; never under retry_delay) are the queue's retry
-- policy (jobs.queue_backoff, sql/0007), checked with PD007 naming the
-- argument; with all three null its retries wait jobs.backoff. max_running
-- (1 to 100000; null: unlimited) caps the queue's running jobs across every
-- claim (jobs.pick, sql/0011), checked with PD015 as max_size. A job
-- published with a retry policy of its own (any of jobs.publish's retry_*)
-- keeps it over its queue's. expire_in (more than 0, at most 315360000 s:
-- ten years; null: never) gives each job published here without an
-- expires_at one this many seconds after its scheduled time (PD007).
-- group_concurrency (1 to 100000; null: unlimited) caps the running jobs of
-- each group (a job's group_id, jobs.publish) across every claim, and
-- group_tiers ({"tier": n}, each n an integer 1 to 100000, 5.0 as 5; null: none) the running
-- jobs of a group whose jobs are of that tier (jobs.publish's group_tier;
-- others: group_concurrency, which tiers need): PD019 naming the argument.
-- Best called by name:
--   jobs.create_queue('mail', max_size => 1000, default_timeout => 300, dead_letter => 'mail_dead')
--   jobs.create_queue('mail', retry_delay => 30, retry_backoff => 'fixed')
--   jobs.create_queue('mail', max_size => null)   -- unbounded again; the rest stays
--   jobs.create_queue('mail', max_running => 5)   -- at most 5 of its jobs run at once
--   jobs.create_queue('mail', group_concurrency => 2, group_tiers => '{"pro": 5}')
create function jobs.create_queue(name text, max_size integer default -2147483648,
                                  default_timeout numeric default 'NaN', default_priority integer default -2147483648,
                                  default_max_retries integer default -2147483648,
                                  dead_letter text default '(unchanged)',
                                  retry_delay numeric default 'NaN', retry_backoff text default '(unchanged)',
                                  retry_delay_max numeric default 'NaN', max_running integer default -2147483648,
                                  expire_in numeric default 'NaN',
                                  group_concurrency integer default -2147483648,
                                  group_tiers jsonb default '"(unchanged)"')
returns void language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  k_keep constant integer := -2147483648;
  v_max integer := nullif(create_queue.max_size, k_keep);
  v_timeout numeric := nullif(create_queue.default_timeout, 'NaN');
  v_priority integer := nullif(create_queue.default_priority, k_keep);
  v_retries integer := nullif(create_queue.default_max_retries, k_keep);
  v_dead text := nullif(create_queue.dead_letter, '(unchanged)');
  v_delay numeric := nullif(create_queue.retry_delay, 'NaN');
  v_backoff text := nullif(create_queue.retry_backoff, '(unchanged)');
  v_delay_max numeric := nullif(create_queue.retry_delay_max, 'NaN');
  v_running integer := nullif(create_queue.max_running, k_keep);
  v_expire_in numeric := nullif(create_queue.expire_in, 'NaN');
  v_group_cap integer := nullif(create_queue.group_concurrency, k_keep);
  v_tiers jsonb := nullif(create_queue.group_tiers, '"(unchanged)"');
  v_bad record;
  v_loop text;
  v_path text[];
  v_at text;
begin
  perform jobs.check_name(create_queue.name, 'PD009', 'name', 'queue name');
  if v_max is not null and (v_max < 1 or v_max > 100000000) then
    perform jobs.raise_invalid('PD015', 'max_size', format('must be between 1 and 100000000, or null for unbounded, got %s',
                                                          v_max));
  end if;
  if v_running is not null and (v_running < 1 or v_running > 100000) then
    perform jobs.raise_invalid('PD015', 'max_running',
      format('must be between 1 and 100000, or null for unlimited, got %s', v_running));
  end if;
  if v_group_cap is not null and (v_group_cap < 1 or v_group_cap > 100000) then
    perform jobs.raise_invalid('PD019', 'group_concurrency',
      format('must be between 1 and 100000, or null for unlimited, got %s', v_group_cap));
  end if;
  if jsonb_typeof(v_tiers) is distinct from 'object' and v_tiers is not null and v_tiers <> 'null' then
    perform jobs.raise_invalid('PD019', 'group_tiers',
      format('must be a JSON object of tier names to caps ({"pro": 5}), or null for none, got %s', jsonb_typeof(v_tiers)));
  end if;
  v_tiers := nullif(nullif(v_tiers, 'null'), '{}');
  select e.key, e.value into v_bad from jsonb_each(v_tiers) e
  where jobs.blank(e.key) or length(e.key) > 200 or jsonb_typeof(e.value) <> 'number'
     or case when jsonb_typeof(e.value) = 'number'
             then e.value::numeric not between 1 and 100000 or e.value::numeric <> trunc(e.value::numeric) else true end
  order by e.key limit 1;
  if found then
    perform jobs.raise_invalid('PD019', case when jobs.blank(v_bad.key) or length(v_bad.key) > 200 then 'group_tiers'
                                            else format('group_tiers.%s', v_bad.key) end,
      case when jobs.blank(v_bad.key) or length(v_bad.key) > 200 then 'tier names must be non-empty texts of at most 200 characters, not only whitespace'
           else format('must be an integer between 1 and 100000, got %s', v_bad.value) end);
  end if;
  -- An integral number written with a fraction (5.0) is kept as the integer
  -- (jobs.pick_grouped reads each cap as one).
  v_tiers := (select jsonb_object_agg(e.key, e.value::numeric::integer) from jsonb_each(v_tiers) e);
  perform jobs.check_options(v_timeout, v_priority, v_retries, 'default_');
  if v_expire_in is not null and not (v_expire_in > 0 and v_expire_in <= 315360000) then
    perform jobs.raise_invalid('PD007', 'expire_in',
      format('must be more than 0 and at most 315360000 seconds (ten years), or null for never, got %s', v_expire_in));
  end if;
  -- The cap against the base below, against the values the queue keeps.
  perform jobs.check_retry_policy(v_delay, v_backoff, v_delay_max, '', false);
  if v_dead is not null then
    perform jobs.check_name(v_dead, 'PD009', 'dead_letter', 'queue name');
    -- One change of dead letters at a time: two could close a loop unseen.
    perform pg_advisory_xact_lock(736040, 0);
    if v_dead = create_queue.name then
      perform jobs.raise_invalid('PD009', 'dead_letter', format(
        'must name another queue, not %s itself (its failed jobs would go round for ever)', quote_literal(v_dead)));
    elsif not exists (select 1 from jobs.queue q where q.name = v_dead) then
      -- In an old snapshot, one created since says so (sql/0039).
      perform jobs.raise_no_queue(v_dead, format('no queue named %s; create it first with jobs.create_queue(%s)',
                                                 quote_literal(v_dead), quote_literal(v_dead)), 'dead_letter');
    end if;
    -- Where v_dead's own dead letters go, and theirs: back here is a loop.
    -- Each row read FOR SHARE: in REPEATABLE READ or SERIALIZABLE, whose
    -- snapshot may predate a change committed while this waited for the
    -- lock above, such a row raises a serialization failure (40001) instead
    -- of being read as it was. (A loop made behind create_queue's back
    -- ends the walk too.)
    v_path := array[create_queue.name];
    v_at := v_dead;
    while v_at is not null and v_at <> all(v_path) loop
      v_path := v_path || v_at;
      select q.dead_letter into v_at from jobs.queue q where q.name = v_at for share;
    end loop;
    if v_at = create_queue.name then
      v_loop := array_to_string(v_path || v_at, ' -> ');
    end if;
    if v_loop is not null then
      perform jobs.raise_invalid('PD009', 'dead_letter', format(
        'must not lead back to %s: %s would be a loop (its failed jobs would go round for ever)',
        quote_literal(create_queue.name), v_loop));
    end if;
  end if;
  -- A bound set on an unbounded queue: its publishes in flight, which read it unbounded and counted nothing, commit
  -- first (jobs.lock_queue_writers: the order of jobs.delete_queue), so the next bounded admit counts their jobs; and
  -- the row's old version, locked so, fails the key share of an admit whose snapshot predates this (40001), which
  -- would read it unbounded. A limit changed: the claims' lock (below) tried under those, else waited for without.
  if create_queue.max_running is distinct from k_keep or create_queue.group_concurrency is distinct from k_keep then
    perform jobs.lock_queue_claims(create_queue.name, v_max is not null);
  end if;
  if v_max is not null then
    perform jobs.lock_queue_writers(create_queue.name, true);  -- held already, unless lock_queue_claims gave up
  end if;
  insert into jobs.queue as q (name, max_size, default_timeout, default_priority, default_max_retries, dead_letter,
                               retry_delay, retry_backoff, retry_delay_max, max_running, expire_in,
                               group_concurrency, group_tiers)
  values (create_queue.name, v_max, v_timeout, v_priority, v_retries, v_dead,
          v_delay, v_backoff = 'exponential', v_delay_max, v_running, v_expire_in, v_group_cap, v_tiers)
  on conflict (name) do update set
    max_size = case when create_queue.max_size is not distinct from k_keep then q.max_size else excluded.max_size end,
    default_timeout = case when create_queue.default_timeout is not distinct from 'NaN' then q.default_timeout
                           else excluded.default_timeout end,
    default_priority = case when create_queue.default_priority is not distinct from k_keep then q.default_priority
                            else excluded.default_priority end,
    default_max_retries = case when create_queue.default_max_retries is not distinct from k_keep
                               then q.default_max_retries else excluded.default_max_retries end,
    dead_letter = case when create_queue.dead_letter is not distinct from '(unchanged)' then q.dead_letter
                       else excluded.dead_letter end,
    retry_delay = case when create_queue.retry_delay is not distinct from 'NaN' then q.retry_delay
                       else excluded.retry_delay end,
    retry_backoff = case when create_queue.retry_backoff is not distinct from '(unchanged)' then q.retry_backoff
                         else excluded.retry_backoff end,
    retry_delay_max = case when create_queue.retry_delay_max is not distinct from 'NaN' then q.retry_delay_max
                           else excluded.retry_delay_max end,
    max_running = case when create_queue.max_running is not distinct from k_keep then q.max_running
                       else excluded.max_running end,
    expire_in = case when create_queue.expire_in is not distinct from 'NaN' then q.expire_in
                     else excluded.expire_in end,
    group_concurrency = case when create_queue.group_concurrency is not distinct from k_keep then q.group_concurrency
                             else excluded.group_concurrency end,
    group_tiers = case when create_queue.group_tiers is not distinct from '"(unchanged)"' then q.group_tiers
                       else excluded.group_tiers end
  returning q.retry_delay, q.retry_delay_max, q.group_concurrency, q.group_tiers into v_delay, v_delay_max, v_group_cap, v_tiers;
  -- A limit set, changed or cleared: the claims in flight, which read the queue before this, end first, and those
  -- after wait for this to commit (jobs.claim_settings), so every claim's jobs are counted as this commits them. The
  -- row first (the update above, which key-share locks do not wait for), then the claims' lock, not the row FOR
  -- UPDATE before it: a transaction whose claim this waits for may then key-share the row (jobs.publish_event), and
  -- one that wrote the row (jobs.pause_queue) may then claim, and either would wait for this while it waited for
  -- them (40P01).
  if create_queue.max_running is distinct from k_keep or create_queue.group_concurrency is distinct from k_keep then
    perform pg_advisory_xact_lock(736044, hashtext(create_queue.name));
  end if;
  -- Tiers as the queue keeps them now, one of the two perhaps kept.
  if v_tiers is not null and v_group_cap is null then
    perform jobs.raise_invalid('PD019', case when create_queue.group_tiers is distinct from '"(unchanged)"'
                                             then 'group_tiers' else 'group_concurrency' end,
      'tiers need a group_concurrency (the cap of the groups of no tier, or of a tier not listed): give one, or clear group_tiers');
  end if;
  -- The cap against the base as they are now, one of them perhaps kept (a
  -- base left null is the default 5 s): the error names the argument given
  -- (the cap when both were).
  v_delay := coalesce(v_delay, 5);
  if v_delay > v_delay_max then
    if create_queue.retry_delay_max is distinct from 'NaN' then
      perform jobs.raise_invalid('PD007', 'retry_delay_max',
        format('must be at least the retry delay (%s seconds), got %s', v_delay, v_delay_max));
    end if;
    perform jobs.raise_invalid('PD007', 'retry_delay',
      format('must be at most the cap on retry delays (%s seconds), got %s', v_delay_max, v_delay));
  end if;
  -- A limit given: the queue's jobs running now take their slots (jobs.running_slot),
  -- under its claims' lock (no claim that read the queue before this is
  -- still in flight: above). Cleared: its slots go.
  if create_queue.max_running is distinct from k_keep then
    perform pg_advisory_xact_lock(736043, hashtext(create_queue.name));
    if v_running is null then
      delete from jobs.running_slot s where s.queue = create_queue.name;
    else
      -- Not a dependant a cascade deferred (leased at attempt 0, never run: jobs.after_end).
      insert into jobs.running_slot (job_id, queue)
      select q.job_id, q.queue from jobs.job_queue q
      where q.queue = create_queue.name and q.lease_until is not null and q.attempt > 0
      on conflict (job_id) do update set queue = excluded.queue;
    end if;
  end if;
end $$;

-- A paused queue still takes jobs but hands none out until resumed; its
-- running jobs finish normally. Both return false for an unknown queue (as
-- jobs.delete_queue does; jobs.purge_queue answers 0), and refuse what is
-- no queue name (PD009 name), as those two do.
create function jobs.pause_queue(name text)
returns boolean language sql security definer set search_path = pg_catalog, pg_temp as $$
  select jobs.check_name(pause_queue.name, 'PD009', 'name', 'queue name');
  with u as (update jobs.queue q set paused = true where q.name = pause_queue.name returning 1)
  select exists (select 1 from u)
$$;

create function jobs.resume_queue(name text)
returns boolean language sql security definer set search_path = pg_catalog, pg_temp as $$
  select jobs.check_name(resume_queue.name, 'PD009', 'name', 'queue name');
  with u as (update jobs.queue q set paused = false where q.name = resume_queue.name returning 1)
  select exists (select 1 from u)
$$;
