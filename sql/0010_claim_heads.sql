-- pgdrain 0010: what a claim builds on: claimed rows, remembered queue heads,
-- running counts, grouped picks.

-- Claiming -------------------------------------------------------------------

create type jobs.claimed_job as (
  job_id      bigint,
  task        text,
  body        jsonb,
  attempt     integer,
  max_retries integer,
  timeout     numeric,
  lease_until timestamptz,
  priority    integer,
  scheduled_at timestamptz,
  created_at  timestamptz,
  queue       text,
  attributes  jsonb
);

-- A place in the claim order of a queue's claimable jobs.
create type jobs.head as (priority integer, scheduled_at timestamptz, job_id bigint);

-- Where the session's last remembering claim of the queue found its head,
-- if the last of its claims that read the queue from its true head (not
-- from a remembered one) ran at most a second of p_now before; else null.
-- A busy queue's claim index starts with the entries of every job claimed
-- since the last vacuum (a minute of throughput at the server's defaults):
-- a claim that starts at a remembered head steps over the few claimed
-- since, not over all of them. What it costs: a job that turned claimable
-- behind that head meanwhile (a release, a retry after an expired lease, an
-- unblocked dependant, a job published by a transaction that began
-- earlier) waits while newer jobs of its priority go first, until a claim
-- finds nothing else to take at its priority or above, or for a second.
-- p_key: the setting it is kept in ('pgdrain.claim_group_head': where a
-- claim of a queue with group_concurrency took its first job, jobs.pick).
create function jobs.remembered_head(p_queue text, p_now timestamptz, p_key text default 'pgdrain.claim_head')
returns jobs.head language plpgsql stable as $$
declare
  v_parts text[] := regexp_match(current_setting(p_key, true),
                                 '^(-?\d{1,7})\|(-?\d{1,16})\|(-?\d{1,18})\|(-?\d{1,18})\|(-?\d{1,18})\|(.*)$');
  v_now bigint := (extract(epoch from p_now) * 1000000)::bigint;
begin
  if v_parts is null or v_parts[6] <> p_queue or v_parts[4]::bigint > v_now or v_now - v_parts[5]::bigint > 1000000 then
    return null;
  end if;
  return (v_parts[1]::integer, timestamptz 'epoch' + v_parts[2]::bigint * interval '1 microsecond',
          v_parts[3]::bigint)::jobs.head;
end $$;

-- Remembers for the session (jobs.remembered_head) where a claim at p_now
-- found the head; p_full: the claim read the queue from its true head (else
-- the last such claim's now is kept). (PL/pgSQL, not SQL: its plan is kept
-- for the session.)
create function jobs.remember_head(p_queue text, p_head jobs.head, p_now timestamptz, p_full boolean,
                                   p_key text default 'pgdrain.claim_head')
returns void language plpgsql as $$
declare
  v_now bigint := (extract(epoch from p_now) * 1000000)::bigint;
begin
  perform set_config(p_key,
                     concat_ws('|', p_head.priority, (extract(epoch from p_head.scheduled_at) * 1000000)::bigint,
                               p_head.job_id, v_now,
                               case when p_full then v_now::text
                                    else split_part(current_setting(p_key, true), '|', 5) end,
                               p_queue),
                     false);
end $$;

-- The head of the claim order among claimable jobs of a queue with a
-- priority below `below` (null: any), due or not: its priority, scheduled_at
-- and job_id, or nulls. One probe of the claim index. Given `start`, a
-- head a recent claim found (used when below is null), it looks above
-- start's priority, then at start's priority from start on, and over the
-- whole queue only when both come up empty.
create function jobs.claim_head(p_queue text, below integer, start jobs.head default null,
                                out head_priority integer, out head_at timestamptz, out head_id bigint)
language plpgsql stable as $$
begin
  if below is null and start.job_id is not null then
    select q.priority, q.scheduled_at, q.job_id into head_priority, head_at, head_id
    from jobs.job_queue q
    where q.queue = p_queue and q.lease_until is null and q.waiting_deps = 0 and not q.serial_wait
      and q.priority > start.priority
    order by q.priority desc, q.scheduled_at, q.job_id limit 1;
    if head_id is not null then
      return;
    end if;
    select q.priority, q.scheduled_at, q.job_id into head_priority, head_at, head_id
    from jobs.job_queue q
    where q.queue = p_queue and q.lease_until is null and q.waiting_deps = 0 and not q.serial_wait
      and q.priority = start.priority and (q.scheduled_at, q.job_id) >= (start.scheduled_at, start.job_id)
    order by q.scheduled_at, q.job_id limit 1;
    if head_id is not null then
      return;
    end if;
  end if;
  -- Two statements, so that `priority < below` bounds the index range.
  if below is null then
    select q.priority, q.scheduled_at, q.job_id into head_priority, head_at, head_id
    from jobs.job_queue q
    where q.queue = p_queue and q.lease_until is null and q.waiting_deps = 0 and not q.serial_wait
    order by q.priority desc, q.scheduled_at, q.job_id limit 1;
  else
    select q.priority, q.scheduled_at, q.job_id into head_priority, head_at, head_id
    from jobs.job_queue q
    where q.queue = p_queue and q.lease_until is null and q.waiting_deps = 0 and not q.serial_wait
      and q.priority < below
    order by q.priority desc, q.scheduled_at, q.job_id limit 1;
  end if;
end $$;

-- Whether a queue has a due claimable job with a priority below `below`:
-- one probe of the claim index per lower priority in use, highest first,
-- until one's head is due.
create function jobs.due_below(p_queue text, below integer, p_now timestamptz)
returns boolean language plpgsql stable as $$
declare
  v_prio integer := below;
  v_at timestamptz;
begin
  loop
    select h.head_priority, h.head_at into v_prio, v_at from jobs.claim_head(p_queue, v_prio) h;
    if v_prio is null then
      return false;
    elsif v_at <= p_now then
      return true;
    end if;
  end loop;
end $$;

-- A claim's exclude: at most 100 JSON objects (jobs.check_object's rule
-- and SQLSTATE, each named by its place: exclude[2]). A null element would
-- make `not (attributes @> any(exclude))` null for every job: refused too;
-- so is {}, which every job's attributes contain (it would exclude them all).
create function jobs.check_exclude(p_exclude jsonb[])
returns void language plpgsql immutable as $$
declare
  v_bad record;
begin
  if array_ndims(p_exclude) > 1 then
    perform jobs.raise_invalid('PD014', 'exclude', format('must be a one-dimensional array of JSON objects, got %s dimensions',
                                                          array_ndims(p_exclude)));
  elsif cardinality(p_exclude) > 100 then
    perform jobs.raise_invalid('PD014', 'exclude', format('must hold at most 100 JSON objects, got %s', cardinality(p_exclude)));
  end if;
  select e.value, e.ord into v_bad from unnest(p_exclude) with ordinality e(value, ord)
  where e.value is null or jsonb_typeof(e.value) <> 'object' or e.value = '{}' order by e.ord limit 1;
  if found then
    perform jobs.raise_invalid('PD014', format('exclude[%s]', v_bad.ord),
                               case when v_bad.value = '{}' then 'must not be empty: {} is in every job''s attributes, so it would exclude them all'
                                    else format('must be a JSON object, got %s', coalesce(jsonb_typeof(v_bad.value), 'null')) end);
  end if;
end $$;

-- How many of a queue's jobs run, as its max_running counts them: its slots
-- (jobs.running_slot, written by its claims) whose job is still in it and
-- holds a delivery's lease (attempt > 0, as jobs.group_running and
-- jobs.create_queue count running jobs). Not a job leased at attempt 0: a
-- serial-key head or dependant whose cancel was deferred (jobs.after_end,
-- jobs.cancel_bulk), which never runs again, though a claim once handed it
-- out (a release or snooze gave the attempt back; the slot's row stays
-- until the next claim of the queue deletes it: jobs.pick, which asks the
-- same). jobs.pick and jobs.claim_json's answer.
create function jobs.running_count(p_queue text)
returns bigint language sql stable as $$
  select count(*) from jobs.running_slot s join jobs.job_queue q on q.job_id = s.job_id
  where s.queue = p_queue and q.queue = p_queue and q.lease_until is not null and q.attempt > 0
$$;

-- How many of each group's jobs run in a queue, as its group_concurrency
-- counts them: {"group_id": n}. Running: holding a lease (expired ones
-- not yet reaped count), delivered (attempt > 0: not a dependant a cascade
-- deferred). One range of the partial index of grouped leases
-- (job_queue_group_running_idx, whose predicate this repeats).
create function jobs.group_running(p_queue text)
returns jsonb language sql stable as $$
  select coalesce(jsonb_object_agg(c.group_id, c.n), '{}') from (
    select q.group_id, count(*) as n from jobs.job_queue q
    where q.queue = p_queue and q.group_id is not null and case when q.lease_until is null then false else true end
      and q.attempt > 0
    group by q.group_id) c
$$;

-- jobs.pick's picks in a queue with group_concurrency (cap; tiers: the
-- caps of group_tiers): up to p_left jobs as its own pick would take them
-- (at priority p_prio from the head p_head_at, p_head_id on; or, with
-- p_filter, over all priorities), passing over the jobs of a group whose
-- running ones (counts, from jobs.group_running, plus those picked here,
-- which it adds) reach the cap of the job's tier, else cap. Jobs without a
-- group are never held back. Row by row in claim order: a group at its cap
-- is stepped over job by job (no index leads to the jobs after a group's,
-- in claim order), which docs/concurrency.md (Concurrency per group) measures. first_at,
-- first_id: where the first job it took is (jobs.pick remembers it as the
-- head, so the session's next claim starts past the jobs stepped over).
-- The scan locks (FOR UPDATE SKIP LOCKED) every row its filter passes, so
-- the jobs of a group its own picks fill are locked as it reads them,
-- though it takes none: after 16 of them it starts again past the last,
-- with the counts as they are now in its filter. Else a claim that fills a
-- hot group would lock the group's whole backlog until it commits (100,000
-- row locks, 5.6 MB of WAL, 250 ms a claim); starting again at each group
-- it fills instead would cost a claim of 500 jobs of 500 groups 500 scans.
create function jobs.pick_grouped(p_queue text, p_prio integer, p_head_at timestamptz, p_head_id bigint,
                                  p_now timestamptz, p_like text, p_max_timeout numeric, p_exclude jsonb[],
                                  p_pick_at timestamptz, p_picked bigint[], p_filter jsonb, p_left integer,
                                  p_cap integer, p_tiers jsonb, inout counts jsonb, out ids bigint[],
                                  out first_at timestamptz, out first_id bigint)
language plpgsql as $$
declare
  r record;
  v_running integer;
  v_jobs refcursor;
  v_again boolean;         -- skipped enough jobs of groups it filled: scan again past the last
  v_skipped integer;       -- such jobs this scan locked
  -- Where the scan (again) starts: after this place in claim order. Ids are
  -- integers, so "after (at, id - 1)" is "from (at, id) on" (the head).
  v_prio integer := p_prio;
  v_at timestamptz := p_head_at;
  v_id bigint := p_head_id - 1;
begin
  loop
    v_again := false;
    v_skipped := 0;
    -- Groups at their cap as the scan starts are filtered out before the
    -- row lock; the loop checks the ones its own picks fill.
    if p_filter is null then
      open v_jobs for
        select q.job_id, q.group_id, q.group_tier, q.priority, q.scheduled_at from jobs.job_queue q
        where q.queue = p_queue and q.lease_until is null and q.waiting_deps = 0 and not q.serial_wait
          and q.priority = p_prio and (q.scheduled_at, q.job_id) > (v_at, v_id)
          and q.scheduled_at <= p_now
          and (q.task like p_like or p_like is null and q.task not like 'sql:%')
          and (p_max_timeout is null or q.timeout <= p_max_timeout)
          and (p_exclude is null or q.attributes is null or not q.attributes @> any(p_exclude))
          and (q.expires_at is null or q.expires_at > p_pick_at)
          and (p_picked is null or q.job_id <> all(p_picked))
          and (q.group_id is null
               or coalesce((counts ->> q.group_id)::integer, 0) < coalesce((p_tiers ->> q.group_tier)::integer, p_cap))
        order by q.scheduled_at, q.job_id
        for update skip locked;
    else
      open v_jobs for
        select q.job_id, q.group_id, q.group_tier, q.priority, q.scheduled_at from jobs.job_queue q
        where q.attributes @> p_filter
          and q.queue = p_queue and q.lease_until is null and q.waiting_deps = 0 and not q.serial_wait
          and q.scheduled_at <= p_now
          and (q.task like p_like or p_like is null and q.task not like 'sql:%')
          and (p_max_timeout is null or q.timeout <= p_max_timeout)
          and (p_exclude is null or not q.attributes @> any(p_exclude))
          and (q.expires_at is null or q.expires_at > p_pick_at)
          and (v_id is null or q.priority < v_prio or q.priority = v_prio and (q.scheduled_at, q.job_id) > (v_at, v_id))
          and (q.group_id is null
               or coalesce((counts ->> q.group_id)::integer, 0) < coalesce((p_tiers ->> q.group_tier)::integer, p_cap))
        order by q.priority desc, q.scheduled_at, q.job_id
        for update skip locked;
    end if;
    while coalesce(cardinality(ids), 0) < p_left loop
      fetch v_jobs into r;
      exit when not found;
      if r.group_id is not null then
        v_running := coalesce((counts ->> r.group_id)::integer, 0);
        if v_running >= coalesce((p_tiers ->> r.group_tier)::integer, p_cap) then
          -- Locked, not taken: another claim skips it until this one commits.
          v_skipped := v_skipped + 1;
          if v_skipped >= 16 then
            v_again := true;
            v_prio := r.priority;
            v_at := r.scheduled_at;
            v_id := r.job_id;
            exit;
          end if;
          continue;
        end if;
        counts := counts || jsonb_build_object(r.group_id, v_running + 1);
      end if;
      if ids is null then
        first_at := r.scheduled_at;
        first_id := r.job_id;
      end if;
      ids := ids || r.job_id;
    end loop;
    close v_jobs;
    exit when not v_again;
  end loop;
end $$;
