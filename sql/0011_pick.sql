-- pgdrain 0011: picking and leasing the next jobs of a queue (jobs.pick).

-- Picks (locks) up to n due pending jobs of one queue for a claim: the
-- shared part of jobs.claim and jobs.claim_json, which then mark them
-- running. It expires stale leases (and ends waiting jobs whose expires_at
-- passed: jobs.expire) first, then picks in claim order
-- (greatest priority first, then earliest scheduled_at, then job_id) jobs
-- whose task matches pattern (null = any), whose timeout is at most
-- max_timeout seconds (null = any: a drain never takes work it cannot finish
-- before its deadline) and whose attributes contain filter (null = any)
-- and none of exclude's objects (null or empty = none; a job without
-- attributes is never excluded; excluded jobs are stepped over by every
-- such claim: no index serves a NOT). A paused queue hands out nothing.
-- A queue with max_running hands out at most max_running minus its running
-- jobs (expired leases not yet reaped count), its claims serialized on an
-- advisory lock until each commits so that no two see the same free slots;
-- settles take no lock (one racing a claim only makes its count high). It
-- counts jobs.running_slot: jobs its claims handed out that still hold a
-- lease. A queue without max_running takes no lock and counts nothing.
-- A queue with group_concurrency hands out no more of a group's jobs (a
-- job's group_id) than the cap of the job's tier (group_tiers) or
-- group_concurrency, minus the group's running jobs (jobs.group_running:
-- expired leases not yet reaped count), under the same lock; jobs without a
-- group are not held back (jobs.pick_grouped); a queue without it, nothing.
-- Returns null when nothing was picked.
-- SQL tasks (sql:<schema>.<function>) run inside the database (jobs.drain_sql):
-- only a claim whose pattern matches them hands them out, so a drain without a
-- topic never takes one it has no handler for.
-- With remember (drain()'s claims), the session keeps where this claim found
-- the head of the queue, and its next claim within a second starts there
-- (see jobs.remembered_head); and up to when it found no passed lease (see
-- jobs.remembered_lease_floor). With holder (jobs.claim_json), its expiry
-- leaves the passed leases of that drain's own deliveries to it. With ticks (a claim's, a tick
-- due), it publishes the due ticks after that and its claim lock (jobs.publish_ticks: ticks, the rows it leaves).
create function jobs.pick(n integer, pattern text, max_timeout numeric, now timestamptz, queue text, filter jsonb,
                          remember boolean default false, exclude jsonb[] default null, holder bigint default null,
                          ticks text[] default null)
returns bigint[] language plpgsql as $$
declare
  v_now timestamptz := coalesce(pick.now, pg_catalog.now());
  v_queue text := coalesce(pick.queue, 'default');
  v_paused boolean;
  v_max_running integer;
  v_group_cap integer; -- group_concurrency
  -- The group-limited claims' head is where a claim of this selection took
  -- its first job: it is kept under the queue and the claim's pattern,
  -- max_timeout and exclude, so that a claim of another topic on the session
  -- does not start past its own older jobs.
  v_group_key text := coalesce(pick.queue, 'default') || '|'
                      || md5(format('%L|%L|%L', pick.pattern, pick.max_timeout, pick.exclude));
  v_stepped integer;   -- claimable jobs between the head found and the first taken (up to 1000)
  v_tiers jsonb;       -- group_tiers
  v_counts jsonb;      -- running jobs by group (jobs.group_running), plus those picked
  v_n integer := pick.n; -- n, or the slots max_running leaves free when fewer
  v_like text;
  v_ids bigint[];
  v_some bigint[];
  v_prio integer;
  v_head_at timestamptz;
  v_head_id bigint;
  v_left integer := pick.n;
  v_start jobs.head;
  v_found jobs.head;   -- the head this claim found first
  v_taken jobs.head;   -- with group_concurrency: where the first job it took is
  v_first_at timestamptz;
  v_first_id bigint;
  v_full boolean;      -- this claim read its queue from the true head
  v_picked bigint[]; -- picked at v_prio before a second read of it
  v_floor timestamptz;
  v_exclude jsonb[];   -- exclude when it holds any
  v_lease boolean;     -- a passed lease to expire
  v_stale boolean;     -- a waiting job past its expires_at
  v_pick_at timestamptz; -- what expires_at is compared with: the clock as the picks begin
begin
  perform jobs.check_pick(pick.n, pick.pattern, pick.max_timeout);
  if pick.pattern is not null then
    -- Only % is a wildcard; _ and \ match themselves.
    v_like := replace(replace(pick.pattern, '\', '\\'), '_', '\_');
  end if;
  perform jobs.check_object(pick.filter, 'filter');
  if cardinality(pick.exclude) > 0 then
    perform jobs.check_exclude(pick.exclude);
    v_exclude := pick.exclude;
  end if;
  select c.paused, c.max_running, c.group_concurrency, c.group_tiers into v_paused, v_max_running, v_group_cap, v_tiers
  from jobs.claim_settings(v_queue) c where c.known;
  if not found then
    perform jobs.raise_no_queue(v_queue, format('no queue named %s', quote_literal(v_queue)));
  end if;

  -- One probe of the partial lease index; the expiry statement runs only when
  -- it finds a passed lease. Bounded by now, it never reads the entries of
  -- leases still running or of jobs settled within their timeout; with
  -- remember, it starts where this session last found none passed (see
  -- jobs.remembered_lease_floor). It ends up to jobs.max_serial_keys()
  -- leases whatever n: a claim of one job ends as many dependants a
  -- cascade deferred (jobs.after_end) as any, and a backlog of them holds
  -- an expired lease behind it for backlog / 500 claims, not backlog / n.
  -- Likewise one probe of the partial expiry index (empty unless waiting
  -- jobs have an expiry), for jobs whose expires_at passed (in any queue):
  -- they end in the same statement, so the next claim sees them at once.
  -- The probe ignores whose lease it found: the holder's own passed lease,
  -- left alone, keeps the floor (the expiry runs on each claim until that
  -- drain settles it), so a claim after that drain died still finds it.
  if pick.remember then
    v_floor := jobs.remembered_lease_floor(v_now);
  end if;
  v_lease := (select q.lease_until from jobs.job_queue q
              where q.lease_until is not null and q.lease_until <= v_now and q.lease_until > coalesce(v_floor, '-infinity')
              order by q.lease_until limit 1) is not null;
  v_stale := (select q.expires_at from jobs.job_queue q
              where q.expires_at <= v_now and q.lease_until is null and q.waiting_deps = 0
              order by q.expires_at limit 1) is not null;
  if v_lease or v_stale then
    perform jobs.expire_due(greatest(pick.n, jobs.max_serial_keys()), v_now, v_floor, v_lease, v_stale, pick.holder);
  end if;
  if pick.remember and not v_lease then
    perform jobs.remember_lease_floor(v_now, v_floor is null);
  end if;
  -- The ticks after the expiry's waits and the claim lock below (a wait for it with rows
  -- held: 40P01 with an app transaction that claimed here, then called jobs.schedule).
  if v_paused and pick.ticks is not null then perform jobs.publish_ticks(v_now, pick.ticks); end if;
  if v_paused then return null; end if;
  -- A REPEATABLE READ or SERIALIZABLE snapshot may predate claims committed
  -- while this waited for the lock: its count would be low.
  if (v_max_running is not null or v_group_cap is not null)
     and not jobs.read_committed() then
    perform jobs.raise_pick_isolation(v_queue, v_max_running, v_group_cap);
  end if;
  -- After the expiry: an expired lease frees its slot first.
  if v_max_running is not null then
    -- Full already: nothing to hand out, and no wait for the lock (a
    -- transaction that claimed from the queue holds it until it ends).
    if jobs.running_count(v_queue) >= v_max_running then
      if pick.ticks is not null then perform jobs.publish_ticks(v_now, pick.ticks); end if;
      return null;
    end if;
    perform pg_advisory_xact_lock(736043, hashtext(v_queue));
    -- The other slots go: their job ended, was retried, released or expired,
    -- moved queue by a dedupe replace, or its cancel was deferred after a
    -- release (jobs.running_count).
    delete from jobs.running_slot s where s.queue = v_queue
      and not exists (select 1 from jobs.job_queue q
                      where q.job_id = s.job_id and q.queue = v_queue and q.lease_until is not null and q.attempt > 0);
    v_n := least(pick.n, v_max_running - (select count(*) from jobs.running_slot s where s.queue = v_queue));
    v_left := v_n;
  end if;
  if v_group_cap is not null then
    -- The lock max_running's claims take (already held if the queue has both).
    perform pg_advisory_xact_lock(736043, hashtext(v_queue));
    v_counts := jobs.group_running(v_queue);
  end if;
  if pick.ticks is not null then max_timeout := jobs.pick_ticks(v_now, pick.ticks, max_timeout, pick.now is null); end if;
  if v_n <= 0 then return null; end if;

  -- A job past its expiry is never handed out (one the expiry above left
  -- past its bound, or found locked): the expires_at filter, in both picks,
  -- against the clock now, not the statement's start: a settle or a lock
  -- wait before this point may have taken a while.
  v_pick_at := case when pick.now is null then clock_timestamp() else v_now end;
  -- Two ways rather than one statement with "filter is null or …", so a
  -- filtered claim can use the GIN index on attributes.
  if pick.filter is null then
    if pick.remember then
      -- A group-limited queue's claims start where the last one took its
      -- first job (below), past the jobs of groups at their cap.
      v_start := case when v_group_cap is null then jobs.remembered_head(v_queue, v_now)
                      else jobs.remembered_head(v_group_key, v_now, 'pgdrain.claim_group_head') end;
    end if;
    v_full := (v_start).job_id is null;
    -- One priority at a time, highest first (a skip scan over the priorities
    -- in use): within a priority the claim index is in scheduled_at order, so
    -- each range scan ends at the first job not yet due, and jobs scheduled
    -- for later cost nothing. (One scan over all priorities would read every
    -- one of them: the due-time bound cannot end it.)
    loop
      -- The range scan starts at the priority's head, not at its start: the
      -- entries before the head belong to jobs claimed since the last vacuum
      -- (up to a minute of throughput), and reading them twice per claim is
      -- what slows a busy queue down between vacuums. A job that turns
      -- claimable ahead of the head meanwhile waits for the next claim.
      select h.head_priority, h.head_at, h.head_id into v_prio, v_head_at, v_head_id
      from jobs.claim_head(v_queue, v_prio, v_start) h;
      exit when v_prio is null;
      if (v_found).job_id is null then
        v_found := (v_prio, v_head_at, v_head_id);
      end if;
      if v_group_cap is null then
        select array_agg(p.job_id) into v_some from (
          select q.job_id from jobs.job_queue q
          where q.queue = v_queue and q.lease_until is null and q.waiting_deps = 0 and not q.serial_wait
            and q.priority = v_prio and (q.scheduled_at, q.job_id) >= (v_head_at, v_head_id)
            and q.scheduled_at <= v_now
            and (q.task like v_like or v_like is null and q.task not like 'sql:%')
            and (pick.max_timeout is null or q.timeout <= pick.max_timeout)
            and (v_exclude is null or q.attributes is null or not q.attributes @> any(v_exclude))
            and (q.expires_at is null or q.expires_at > v_pick_at)
            and (v_picked is null or q.job_id <> all(v_picked))
          order by q.scheduled_at, q.job_id
          limit v_left
          for update skip locked) p;
      else
        select g.ids, g.counts, g.first_at, g.first_id into v_some, v_counts, v_first_at, v_first_id
        from jobs.pick_grouped(v_queue, v_prio, v_head_at, v_head_id, v_now, v_like, pick.max_timeout, v_exclude,
                               v_pick_at, v_picked, null, v_left, v_group_cap, v_tiers, v_counts) g;
        -- Remembered as the group-limited claims' head when the claim stepped
        -- over many jobs to take it (below): the jobs of groups at
        -- their cap before it (and those another claim held) are not read
        -- again by the session's next claims, until one comes up short or a
        -- second has passed (jobs.remembered_head); those of a higher
        -- priority are. (The true head stays claim_json's, for its count of
        -- jobs that do not fit.)
        if (v_taken).job_id is null and v_first_id is not null then
          v_taken := (v_prio, v_first_at, v_first_id);
        end if;
      end if;
      v_ids := v_ids || v_some;
      v_left := v_n - coalesce(cardinality(v_ids), 0);
      -- Started from a remembered head and still short: the jobs of its
      -- priority behind that head go next, before any lower priority. The
      -- next turn reads this priority again from its true head (below it by
      -- one: priorities are integers), passing over the jobs just picked,
      -- which this transaction's own locks do not skip. That read steps over
      -- every entry claimed since the last vacuum, so a claim that has jobs
      -- and finds no due job at a lower priority skips it: the drain claims
      -- again, and the claim that finds nothing ahead of the head reads
      -- behind it. (jobs.due_below also counts jobs this claim would not
      -- take, for its pattern, max_timeout or exclude: it can only make the
      -- claim read on, never stop it before a job it would take.)
      if v_left > 0 and v_prio = (v_start).priority
         and (v_head_at, v_head_id) >= ((v_start).scheduled_at, (v_start).job_id) then
        exit when v_ids is not null and not jobs.due_below(v_queue, v_prio, v_now);
        v_start := null;
        v_full := true;
        v_picked := v_some;
        v_prio := v_prio + 1;
        continue;
      end if;
      v_picked := null;
      exit when v_left = 0;
    end loop;
    if pick.remember and (v_found).job_id is not null then
      perform jobs.remember_head(v_queue, v_found, v_now, v_full);
      if v_group_cap is not null then
        -- Past the jobs it stepped over only when they are many (jobs.pick_stepped).
        if (v_taken).job_id is not null and (v_taken).job_id <> (v_found).job_id then
          v_stepped := jobs.pick_stepped(v_queue, v_found, v_taken);
        end if;
        perform jobs.remember_head(v_group_key, case when v_stepped >= 1000 then v_taken else v_found end, v_now, v_full,
                                   'pgdrain.claim_group_head');
      end if;
    end if;
  elsif v_group_cap is not null then
    select g.ids into v_ids
    from jobs.pick_grouped(v_queue, null, null, null, v_now, v_like, pick.max_timeout, v_exclude,
                           v_pick_at, null, pick.filter, v_n, v_group_cap, v_tiers, v_counts) g;
  else
    v_ids := jobs.pick_filtered(v_queue, pick.filter, v_now, v_like, pick.max_timeout, v_exclude, v_pick_at, v_n);
  end if;
  if v_max_running is not null and v_ids is not null then
    -- A slot another queue's claim left for the job (moved here since) is taken over.
    insert into jobs.running_slot (job_id, queue) select i, v_queue from unnest(v_ids) i
    on conflict (job_id) do update set queue = excluded.queue;
  end if;
  return v_ids;
end $$;
