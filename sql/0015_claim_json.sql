-- pgdrain 0015: drain()'s round trip, settling and claiming in one statement.

-- Whether a queue's group caps hold back a due job a claim would take:
-- one of its jobs (of the claim's pattern, max_timeout, filter and exclude,
-- p_like as jobs.pick makes it) whose group's running jobs
-- (jobs.group_running, a claim's own included) reach the cap of its tier
-- (p_tiers), else p_cap. jobs.claim_json asks it only when a claim of a
-- queue with group_concurrency came back short. No group at the least of
-- the caps: one range of the index of grouped leases. Else one priority at
-- a time, from the head the claim found, until the first such job (all of
-- the due ones when none is: another read of what the short pick read).
create function jobs.group_held(p_queue text, p_cap integer, p_tiers jsonb, p_now timestamptz, p_like text,
                                p_max_timeout numeric, p_filter jsonb, p_exclude jsonb[])
returns boolean language plpgsql stable as $$
declare
  v_counts jsonb := jobs.group_running(p_queue);
  v_prio integer;
  v_head_at timestamptz;
  v_head_id bigint;
begin
  -- No group runs as many jobs as the least cap: none is at its cap.
  if not exists (select 1 from jsonb_each_text(v_counts) c
                 where c.value::integer >= least(p_cap, (select min(t.value::integer) from jsonb_each_text(p_tiers) t))) then
    return false;
  end if;
  loop
    select h.head_priority, h.head_at, h.head_id into v_prio, v_head_at, v_head_id
    from jobs.claim_head(p_queue, v_prio, case when v_prio is null then jobs.remembered_head(p_queue, p_now) end) h;
    exit when v_prio is null;
    if v_head_at <= p_now and exists (
      select 1 from jobs.job_queue q
      where q.queue = p_queue and q.lease_until is null and q.waiting_deps = 0 and not q.serial_wait
        and q.priority = v_prio and (q.scheduled_at, q.job_id) >= (v_head_at, v_head_id)
        and q.scheduled_at <= p_now
        and q.group_id is not null
        and coalesce((v_counts ->> q.group_id)::integer, 0) >= coalesce((p_tiers ->> q.group_tier)::integer, p_cap)
        and (q.expires_at is null or q.expires_at > p_now)
        and (q.task like p_like or p_like is null and q.task not like 'sql:%')
        and (p_max_timeout is null or q.timeout <= p_max_timeout)
        and (p_filter is null or q.attributes @> p_filter)
        and (p_exclude is null or q.attributes is null or not q.attributes @> any(p_exclude))) then
      return true;
    end if;
  end loop;
  return false;
end $$;

-- Once per session (its first claim settling 100 or more): one 1 MiB
-- value made and freed. glibc's malloc gives the top of a backend's heap
-- back to the kernel whenever a free leaves more than its trim threshold
-- there, and a claim of 500 jobs grows the heap by ~0.5 MiB and frees it:
-- whether that crosses the threshold depends on where the session's other
-- memory happens to lie, so a change anywhere in the claim can turn it on
-- (one after 2d0f790 did). Then every claim faults ~110 pages in
-- again: 4-6 µs of server CPU per job on the bench's guests (bench/RESULTS.md,
-- 2026-12-06 04:47). A freed allocation larger than malloc's mmap threshold
-- raises it, and the trim threshold to twice it, for the process's life:
-- 2 MiB from then on. A few hundred page faults, once; other allocators, and
-- servers started with MALLOC_* settings, are not affected either way.
create function jobs.keep_heap() returns void language plpgsql as $$
begin
  perform pg_catalog.length(pg_catalog.repeat(pg_catalog.repeat('x', 4096), 256));
  perform pg_catalog.set_config('pgdrain.heap_kept', 'yes', false);
end $$;

-- drain()'s round trip: settles the deliveries it has gathered (if any, as
-- jobs.settle_arrays takes them), then claims the next batch like
-- jobs.claim, answering one json value
--   {"jobs": {"id": [...], "task": [...], "body": [...], "attempt": [...],
--             "maxRetries": [...], "timeout": [...], "priority": [...],
--             "scheduledAt": [...], "createdAt": [...], "attributes": [...],
--             "keyed": [...] | null, "keyedMaxRetries": [...] | null},
--    "count": c, "queue": q, "now": t, "unfit": k, "unfitTimeouts": [min, max] | null,
--    "settled": {...} | null,
--    "waitedMs": w, how long it waited for a bounded queue's tick (0 mostly),
--    "paused": true when it claimed nothing from a paused queue,
--    "atMaxRunning": true when the queue's max_running held it to fewer
--    than n jobs, none included (it took every slot left: jobs.pick),
--    "atGroupConcurrency": true when it took fewer than n jobs and a due
--    job it would take waits for its group (jobs.group_held)}
-- one array per field, element i of each describing job i (in no particular
-- order: a drain starts all it claims at once), times as epoch seconds;
-- each job's lease ends at now + timeout (now: after that wait, which max_timeout
-- counts as spent: a job it takes ends by the drain's stop). Columns and epoch numbers because
-- building and reading the answer is per-job work on every batch: an object
-- per job and timestamp text cost about twice as much. Settling first means
-- a drain never reaps its own just-finished jobs as expired, and a steady
-- drain costs one statement per batch. Its pick starts at the head the
-- session's last claim of the queue found, for up to a second after the
-- session last read the queue from its true head (jobs.remembered_head).
-- "unfit" counts (up to 1000) due jobs left alone because their timeout
-- exceeds max_timeout (not the jobs exclude leaves: no budget would make
-- this claim take them); it is computed only when the claim came back short.
-- "unfitTimeouts": the shortest and longest timeout of those counted (null
-- when none is), read by the same count: a report can say what budget
-- would have taken them (a first drain with a short deadline runs nothing).
-- exclude (jobs.pick) comes after the settle's arrays: positional calls of
-- the arguments before it keep their meaning; holder after it.
-- holder: a token of the drain call (random, one per drain(): worker ids
-- may be shared, and a successor after a crash may have its predecessor's),
-- kept on the jobs it claims (lease_holder). Its claims leave the passed
-- leases of its own deliveries to it (jobs.expire_due: its timer settles
-- them, as timed out with their backoff), so a claim sent as a job's timer
-- came due neither retries that job at once nor hands it out again while
-- it runs here. Null: its expiry takes every passed lease, as jobs.claim's.
-- random_page_cost 1.1 (as jobs.claim): its update and settle find their
-- 500 rows by key (job_id = any(...)), which with a hashed array the planner
-- rated near a seq scan of a 15,000-job queue at the default 4, and took
-- the seq scan once the statistics moved (30 ms a claim, not 3). Not
-- enable_seqscan off: its penalty cost set JIT compiling a claim that had a
-- seq scan of a small table left (hundreds of ms under load).
-- "keyed" lists the claimed jobs that have a serial key (with their
-- max_retries, in the same order), null when none has: each such job's end
-- takes its key's lock, so a drain settles at most jobs.max_serial_keys()
-- of them per statement (src/settler.ts).
create function jobs.claim_json(
  n           integer,
  pattern     text               default null,
  max_timeout numeric            default null,
  now         timestamptz        default null,
  queue       text               default null,
  filter      jsonb              default null,
  worker_id   text               default null,
  ids         bigint[]           default null,
  attempts    integer[]          default null,
  outcomes    text[]             default null,
  results     jsonb[]            default null,
  errors      text[]             default null,
  retry_at    timestamptz[]      default null,
  ms          double precision[] default null,
  exclude     jsonb[]            default null,
  holder      bigint             default null
) returns json language plpgsql security definer set search_path = pg_catalog, pg_temp
  set random_page_cost = 1.1 as $$
declare
  v_now timestamptz := jobs.clock(claim_json.now);
  v_from timestamptz := v_now; -- where its leases start: after a tick's wait, if it waited
  v_budget numeric := claim_json.max_timeout; -- what the wait left of max_timeout: its jobs' time counts from v_from
  v_settled jsonb;
  v_ids bigint[];
  v_prio integer;
  v_head_at timestamptz;
  v_head_id bigint;
  v_jobs json;
  v_count integer := 0;
  v_unfit integer := 0;
  v_unfit_min numeric;  -- the shortest and longest timeout of those unfit
  v_unfit_max numeric;
  v_paused boolean := false;
  v_at_max boolean := false;
  v_max_running integer;
  v_at_group boolean := false;
  v_group_cap integer;
  v_tiers jsonb;
  v_lost text[];  -- a tick due: the bounded queues whose rows its ticks leave alone (jobs.tick_queues)
begin
  perform jobs.check_worker_id(claim_json.worker_id);
  -- Only a session settling a batch of 100 or more (a drain through a
  -- backlog): a short-lived one (a CLI drain of an empty queue) pays nothing.
  if cardinality(claim_json.ids) >= 100 and pg_catalog.current_setting('pgdrain.heap_kept', true) is distinct from 'yes' then
    perform jobs.keep_heap();
  end if;
  -- Drain-run schedules (sql/0022) with a tick due: one index probe when none is.
  -- Their bounded queues' locks before the settle (jobs.tick_queues): a
  -- tick's publish takes its queue's lock and the settle a serial key's,
  -- the order jobs.publish takes them in; the other order deadlocks with a
  -- publish of that key to that queue. A claim carrying outcomes waits on
  -- no tick's lock: the settle after it would wait too, for as long as an
  -- app transaction that published to a bounded queue stays open, while the
  -- leases of the jobs it acks pass and another drain's expiry runs them
  -- again. The ticks themselves after the settle and expiry (jobs.pick), whose
  -- waits for keys, with a schedule's row held, deadlocked with an app
  -- transaction holding a key that then called jobs.schedule for it.
  if exists (select 1 from jobs.recurring r where r.runner = 'drains' and r.next_run_at <= v_now) then
    if cardinality(claim_json.ids) > 0 then
      v_lost := (jobs.tick_queues(v_now, false)).lost;
    else
      -- Its wait for a bounded queue's tick, a tenth of its budget at most (jobs.tick_wait_bound).
      perform set_config('pgdrain.tick_budget', coalesce(claim_json.max_timeout::text, ''), true);
      v_lost := (jobs.tick_queues(v_now, true)).lost;
      perform set_config('pgdrain.tick_budget', '', true);
      -- Its leases start after the wait (seconds at most), not before it: the
      -- wait is not the claimed jobs' time (waitedMs tells the drain).
      if claim_json.now is null then v_from := greatest(v_now, clock_timestamp()); end if;
    end if;
  end if;
  if cardinality(claim_json.ids) > 0 then
    v_settled := jobs.settle_arrays(claim_json.ids, claim_json.attempts, claim_json.outcomes, claim_json.results,
                                    claim_json.errors, claim_json.retry_at, claim_json.ms, v_now, claim_json.worker_id);
  end if;

  -- The same marking as jobs.claim, answered straight from the update: no
  -- row set in between. json, not jsonb: built as text, it is not converted
  -- twice on its way out.
  -- now as given (null: the clock; pick's v_now is this one), for its expiry check.
  v_ids := jobs.pick(claim_json.n, claim_json.pattern, v_budget, claim_json.now,
                     claim_json.queue, claim_json.filter, remember => true, exclude => claim_json.exclude,
                     holder => claim_json.holder, ticks => v_lost);
  -- Its leases start after the ticks it published there too (100 due schedules: 0.2 to 0.7 s,
  -- measured), not before them: that is not the claimed jobs' time (waitedMs tells the drain),
  -- and what it took came out of the budget (pick's jobs.pick_ticks; the wait's, from v_now too).
  if v_lost is not null and claim_json.now is null then v_from := greatest(v_from, clock_timestamp()); end if;
  if v_lost is not null then
    v_budget := case when v_budget is not null then greatest(0, v_budget - date_part('epoch', v_from - v_now)::numeric) end;
  end if;
  if v_ids is not null then
    with claimed as (
      update jobs.job_queue q
      set attempt = q.attempt + 1,
          lease_until = v_from + make_interval(secs => q.timeout),
          started_at = v_now,
          worker_id = claim_json.worker_id,
          lease_holder = claim_json.holder
      where q.job_id = any(v_ids)
      returning q.job_id, q.task, q.body, q.attempt, q.max_retries, q.timeout, q.priority,
                q.scheduled_at, q.created_at, q.attributes, q.serial_key
    )
    -- The ids as one text, split by the client: as JSON strings of up to 10
    -- characters, V8's JSON.parse would enter each id in its string table
    -- (a unique key per job), a tenth of a drain's Node-side CPU.
    select json_build_object(
             'id', string_agg(c.job_id::text, ','), 'task', array_agg(c.task), 'body', json_agg(c.body),
             'attempt', array_agg(c.attempt), 'maxRetries', array_agg(c.max_retries),
             'timeout', array_agg(c.timeout), 'priority', array_agg(c.priority),
             'scheduledAt', array_agg(date_part('epoch', c.scheduled_at)),
             'createdAt', array_agg(date_part('epoch', c.created_at)), 'attributes', json_agg(c.attributes),
             'keyed', array_agg(c.job_id::text) filter (where c.serial_key is not null),
             'keyedMaxRetries', array_agg(c.max_retries) filter (where c.serial_key is not null)),
           count(*)
    into v_jobs, v_count
    from claimed c;
    perform jobs.notify_ids('pgdrain_picked', v_ids);
  end if;

  -- Why a claim came back short: one probe of the queue, only then. Paused:
  -- it hands out nothing. At max_running: not paused, every slot taken (as
  -- jobs.pick counts them: this claim's jobs too), and a due job waits (of
  -- any task, filter or exclude: jobs.due_below).
  -- At its group caps: a queue with group_concurrency, not paused, and a due
  -- job of this claim's selection whose group is at its cap (jobs.group_held).
  if v_count < claim_json.n then
    select x.paused, x.max_running, x.group_concurrency, x.group_tiers into v_paused, v_max_running, v_group_cap, v_tiers
    from jobs.queue x where x.name = coalesce(claim_json.queue, 'default');
    if v_max_running is not null and not v_paused then
      v_at_max := v_max_running <= jobs.running_count(coalesce(claim_json.queue, 'default'))
                  and jobs.due_below(coalesce(claim_json.queue, 'default'), null, v_now);
    end if;
    if v_group_cap is not null and not v_paused then
      v_at_group := jobs.group_held(coalesce(claim_json.queue, 'default'), v_group_cap, v_tiers, v_now,
                                    replace(replace(claim_json.pattern, '\', '\\'), '_', '\_'), v_budget,
                                    claim_json.filter, nullif(claim_json.exclude, '{}'));
    end if;
  end if;
  -- (A paused queue hands out nothing: none of its jobs was left for its timeout.)
  if v_count < claim_json.n and claim_json.max_timeout is not null and not v_paused then
    -- Due jobs left alone because their timeout does not fit, up to 1000,
    -- one priority at a time as jobs.pick walks them (jobs scheduled for
    -- later are never read), from the head the pick found: one that turned
    -- claimable behind it is not counted.
    while v_unfit < 1000 loop
      select h.head_priority, h.head_at, h.head_id into v_prio, v_head_at, v_head_id
      from jobs.claim_head(coalesce(claim_json.queue, 'default'), v_prio,
                           case when v_prio is null then jobs.remembered_head(coalesce(claim_json.queue, 'default'), v_now) end) h;
      exit when v_prio is null;
      select v_unfit + count(*), least(v_unfit_min, min(s.timeout)), greatest(v_unfit_max, max(s.timeout))
      into v_unfit, v_unfit_min, v_unfit_max from (
        select q.timeout from jobs.job_queue q
        where q.queue = coalesce(claim_json.queue, 'default')
          and q.lease_until is null and q.waiting_deps = 0 and not q.serial_wait
          and q.priority = v_prio and (q.scheduled_at, q.job_id) >= (v_head_at, v_head_id)
          and q.scheduled_at <= v_now
          and q.timeout > v_budget
          and (q.expires_at is null or q.expires_at > v_now)
          and (q.task like replace(replace(claim_json.pattern, '\', '\\'), '_', '\_')
               or claim_json.pattern is null and q.task not like 'sql:%')
          and (claim_json.filter is null or q.attributes @> claim_json.filter)
          and (claim_json.exclude is null or q.attributes is null or not q.attributes @> any(claim_json.exclude))
        order by q.scheduled_at, q.job_id
        limit 1000 - v_unfit) s;
    end loop;
  end if;
  return json_build_object('jobs', v_jobs, 'count', v_count, 'queue', coalesce(claim_json.queue, 'default'),
                           'now', date_part('epoch', v_from), 'unfit', v_unfit, 'settled', v_settled,
                           'waitedMs', floor(1000 * date_part('epoch', v_from - v_now)),
                           'unfitTimeouts', case when v_unfit > 0 then json_build_array(v_unfit_min, v_unfit_max) end,
                           'paused', v_count = 0 and coalesce(v_paused, false),
                           'atMaxRunning', coalesce(v_at_max, false),
                           'atGroupConcurrency', coalesce(v_at_group, false));
end $$;
