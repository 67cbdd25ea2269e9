-- pgdrain 0029: redrive: putting dead letters (and, by id, cancelled jobs)
-- back.

-- Whether dead letter (or cancelled job) j matches a redrive's filters
-- (jobs.redrive_counts, whose arguments these are; p_statuses the statuses
-- it puts back), written once for its four reads. Inlined into each (SQL,
-- immutable, no SET): the plans are those of the filters written out.
create function jobs.redrive_match(j jobs.job, p_statuses text[], p_job_ids bigint[], p_task text, p_queue text,
                                   p_ended_after timestamptz, p_error_like text)
returns boolean language sql immutable as $$
  select j.status = any(p_statuses)
     and (p_job_ids is null or j.job_id = any(p_job_ids))
     and (p_task is null or j.task like replace(replace(p_task, '\', '\\'), '_', '\_'))
     and (p_queue is null or j.queue = p_queue)
     and (p_ended_after is null or j.ended_at > p_ended_after)
     and (p_error_like is null or j.error like p_error_like)
$$;

-- Runs dead letters again, in one statement: all of them, or those matching
-- every filter given (job_ids, a task LIKE pattern where only % is a
-- wildcard, queue, ended_after, an error LIKE pattern). Each goes back to
-- pending under its own job id with a fresh set of retries; its error stays in
-- last_error. A job whose dedupe key an active job holds is left in place
-- (passed over, not locked; asked again under the serial keys' locks, just
-- before the insert), and of dead letters sharing a key only the oldest goes
-- back; a notice says how many it left.
-- Returns what it did as one row (jobs.redrive answers its first column):
-- redriven, how many went back; held_by_key, how many it left because an
-- active job (or an older dead letter going back now) holds their dedupe
-- key; serial_later, how many it left for the next call (below).
-- A queue that does not exist is refused (PD009 queue), and a now at
-- ±infinity (PD007 now).
-- With include_cancelled, cancelled jobs among job_ids go back too
-- (required with it: every cancel of history would otherwise match). A
-- cancelled dependant goes back without its dependencies, even one still
-- active: it runs as soon as it is due. Ids given that are not put back,
-- nor left in place for their dedupe key, are named in a notice with where
-- they are (archived, still queued, ...).
-- Each serial key it puts back jobs of takes the key's lock until commit:
-- one call takes at most 500 keys, those of the oldest dead letters; the
-- dead letters of the keys past them stay, and a notice says how many and
-- to call it again (each call puts back the next keys, until it returns 0).
-- With max_rows, it takes at most that many matching dead letters whose
-- dedupe key no active job holds, the oldest (by id) first: a call bounded
-- in time (a dashboard's click) over a million of them; call it again for
-- the next ones. Held ones are passed over, so those behind them are
-- reached, up to 100 * max_rows matching dead letters read in one call:
-- past that many held ones it stops (held_by_key counts those it read).
create function jobs.redrive_counts(
  job_ids     bigint[]    default null,
  task        text        default null,
  queue       text        default null,
  ended_after timestamptz default null,
  error_like  text        default null,
  now         timestamptz default null,
  include_cancelled boolean default false,
  max_rows    integer     default null
) returns table (redriven integer, held_by_key integer, serial_later integer)
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := jobs.clock(redrive_counts.now);
  v_statuses text[] := case when redrive_counts.include_cancelled then array['failure', 'cancelled'] else array['failure'] end;
  v_matched bigint[];
  v_ids bigint[];
  v_keys text[];
  v_count integer := 0;
  v_missing text;
  v_later integer;
  v_later_keys integer;
  v_admitted text[];   -- the bounded queues admitted (jobs.admit called in the statement that reads v_ids)
  v_chosen bigint[] := '{}';
  v_held integer := 0;
  v_held_ids bigint[] := '{}';
  v_bounded text[];
  v_counted text[];    -- the bounded queues some went back to
  r record;
begin
  if redrive_counts.include_cancelled and redrive_counts.job_ids is null then
    perform jobs.raise_invalid('PD005', 'job_ids', 'must be given with include_cancelled (cancelled jobs go back by id)');
  end if;
  -- A null among the ids (left out: every dead letter) is refused, as jobs.cancel_bulk's and jobs.fail's.
  if redrive_counts.job_ids is not null then
    perform jobs.check_job_ids(redrive_counts.job_ids);
  end if;
  if redrive_counts.max_rows < 1 then
    perform jobs.raise_invalid('PDC03', 'max_rows', format('must be null (every match) or at least 1, got %s', redrive_counts.max_rows));
  end if;
  -- A queue filter naming no queue would match nothing (a dead letter goes
  -- back only to a queue that exists): a typo answered 0 otherwise.
  if redrive_counts.queue is not null and not exists (select 1 from jobs.queue x where x.name = redrive_counts.queue) then
    perform jobs.check_name(redrive_counts.queue, 'PD009', 'queue', 'queue name'); -- not a name to create
    perform jobs.raise_no_queue(redrive_counts.queue, format('no queue named %s; the dead letters of a deleted queue go back once it is '
      || 'created again (jobs.create_queue(%s))', quote_literal(redrive_counts.queue), quote_literal(redrive_counts.queue)));
  end if;
  -- The matching dead letters; one whose dedupe key an active job holds is
  -- passed over (not locked) and counted. Without max_rows: those held
  -- counted and the others chosen and locked in one statement, so in one
  -- snapshot (one another session holds, redriving it, is left to it): a
  -- key freed or taken between two statements would be counted held and
  -- redriven anyway, or neither. (It costs a 100k redrive ~0.2-0.4 s of
  -- server CPU more than two statements did, bench/redrive-ab.ts; why is
  -- not known.)
  if redrive_counts.max_rows is null then
    select count(*), coalesce(array_agg(j.job_id) filter (where redrive_counts.job_ids is not null), '{}'),
           (select array_agg(l.job_id) from (
              select j.job_id from jobs.job j
              where not (j.dedupe_key is not null and exists (select 1 from jobs.job_queue q where q.dedupe_key = j.dedupe_key))
                and jobs.redrive_match(j, v_statuses, redrive_counts.job_ids, redrive_counts.task, redrive_counts.queue,
                                       redrive_counts.ended_after, redrive_counts.error_like)
                and exists (select 1 from jobs.queue x where x.name = j.queue)
              for update of j skip locked) l)
    into v_held, v_held_ids, v_matched
    from jobs.job j
    where j.dedupe_key is not null and exists (select 1 from jobs.job_queue q where q.dedupe_key = j.dedupe_key)
      and jobs.redrive_match(j, v_statuses, redrive_counts.job_ids, redrive_counts.task, redrive_counts.queue,
                             redrive_counts.ended_after, redrive_counts.error_like)
      and exists (select 1 from jobs.queue x where x.name = j.queue);
  else
    -- Under max_rows, read the oldest first, not locked yet, so max_rows
    -- counts those that can go back and a call reaches them behind held
    -- ones, reading at most 100 * max_rows.
    for r in
      select j.job_id, j.dedupe_key is not null and exists (select 1 from jobs.job_queue q where q.dedupe_key = j.dedupe_key) as held
      from jobs.job j
      where jobs.redrive_match(j, v_statuses, redrive_counts.job_ids, redrive_counts.task, redrive_counts.queue,
                               redrive_counts.ended_after, redrive_counts.error_like)
        and exists (select 1 from jobs.queue x where x.name = j.queue)
      order by j.job_id
      limit redrive_counts.max_rows::bigint * 100
    loop
      if r.held then
        v_held := v_held + 1;
        -- Only for the ids given (the notice below leaves them out): a few.
        if redrive_counts.job_ids is not null then v_held_ids := v_held_ids || r.job_id; end if;
      else
        v_chosen := v_chosen || r.job_id;
        exit when cardinality(v_chosen) = redrive_counts.max_rows;
      end if;
    end loop;
    -- Locked now; one another session holds (redriving it) is left to it.
    -- One changed since is read as it is now, so the filters are asked
    -- again: a job redriven, run and failed again since it was chosen goes
    -- back only if it still matches.
    select array_agg(j.job_id) into v_matched
    from (select j.job_id from jobs.job j
          where j.job_id = any(v_chosen)
        and jobs.redrive_match(j, v_statuses, redrive_counts.job_ids, redrive_counts.task, redrive_counts.queue,
                               redrive_counts.ended_after, redrive_counts.error_like)
        and exists (select 1 from jobs.queue x where x.name = j.queue)
          for update of j skip locked) j;
  end if;
  -- Cheap: only for the ids given, and only when some did not match.
  if redrive_counts.job_ids is not null and coalesce(cardinality(v_matched), 0) < cardinality(redrive_counts.job_ids) then
    select string_agg(format('%s (%s)', m.id, m.where_), ', ' order by m.id) into v_missing
    from (
      select d.id, case
               when exists (select 1 from jobs.job_queue q where q.job_id = d.id) then 'still queued'
               when j.status = 'cancelled' and not redrive_counts.include_cancelled then 'cancelled: give include_cancelled'
               when j.status = any(v_statuses) and not exists (select 1 from jobs.queue x where x.name = j.queue)
                 then format('%s of queue %s, which is gone: it goes back once the queue is created again', j.status, quote_literal(j.queue))
               when j.status is not null then j.status || case when j.status = any(v_statuses) then ': filtered out, or being redriven' else '' end
               when exists (select 1 from jobs.job_archive a where a.job_id = d.id) then 'archived by jobs.maintain: redrive reads jobs.job only'
               else 'unknown, or deleted by retention' end as where_
      from (select distinct x as id from unnest(redrive_counts.job_ids) x where x is not null
            and x <> all(coalesce(v_matched, '{}')) and x <> all(v_held_ids)) d
      left join jobs.job j on j.job_id = d.id
      order by d.id limit 20
    ) m;
    -- None left when the ids only repeat: no notice then.
    if v_missing is not null then
      raise notice 'pgdrain: not redriven: %', v_missing;
    end if;
  end if;
  -- None locked: what follows finds nothing to do (and counts the held ones).
  v_matched := coalesce(v_matched, '{}');
  -- From here as in sql/0017.
  with c as (
    select distinct on (coalesce(p.dedupe_key, p.job_id::text), p.dedupe_key is null) p.job_id, p.serial_key, p.queue
    from jobs.job p
    where p.job_id = any(v_matched)
      and (p.dedupe_key is null or not exists (select 1 from jobs.job_queue q where q.dedupe_key = p.dedupe_key))
    order by coalesce(p.dedupe_key, p.job_id::text), p.dedupe_key is null, p.job_id
  ), k as (
    -- Keys in the order of their oldest dead letter; those past the bound wait for the next call.
    select c.serial_key, row_number() over (order by min(c.job_id)) > jobs.max_serial_keys() as later
    from c where c.serial_key is not null group by c.serial_key
  )
  select array_agg(c.job_id) filter (where not coalesce(k.later, false)),
         array_agg(distinct c.serial_key) filter (where not k.later),
         count(*) filter (where k.later), count(distinct c.serial_key) filter (where k.later),
         -- The bounded queues among them (hashed: no sort of every row).
         (select array_agg(x.queue) from (select distinct c.queue from c) x
          where exists (select 1 from jobs.queue q where q.name = x.queue and q.max_size is not null))
  into v_ids, v_keys, v_later, v_later_keys, v_bounded
  from c left join k on k.serial_key = c.serial_key;
  -- Bounded queues' locks first, in their order (hashtext, as
  -- jobs.publish_event), then the serial keys', as jobs.publish_keyed
  -- takes them. Then each queue is admitted for the dead letters going
  -- back, a bounded one's keys asked again, as the insert asks them
  -- (below): one whose key a job took while this waited for a serial key
  -- does not count toward its queue's max_size (a nearly full queue
  -- refused the redrive for dead letters it then left), and is left out
  -- of the insert too (v_ids: the same scan), so one whose key is freed
  -- again before the insert does not go back uncounted, past max_size.
  -- Each bounded queue's jobs.queue_admits row is bumped after the insert,
  -- only if some went back there, as jobs.publish counts (below).
  perform pg_advisory_xact_lock(736037, hashtext(q)) from unnest(v_bounded) q order by hashtext(q), q;
  perform jobs.lock_serial_keys(v_keys);
  with m as materialized (
    select j.job_id, j.queue from jobs.job j
    where j.job_id = any(v_ids)
      and (j.dedupe_key is null or j.queue <> all(coalesce(v_bounded, '{}'))
           or not exists (select 1 from jobs.job_queue q where q.dedupe_key = j.dedupe_key))
  ), a as (
    select jobs.admit(x.queue, x.n::integer, 'redriven', p_count => false) as q
    from (select m.queue, count(*) as n from m group by m.queue order by hashtext(m.queue), m.queue) x
  )
  select array_agg(m.job_id), (select array_agg((a.q).name) filter (where (a.q).max_size is not null) from a)
  into v_ids, v_admitted from m;
  -- A dependant cancelled after one dependency failed keeps the rows of its
  -- others still active (jobs.after_end deletes only the failed one's): back
  -- without them, or their success would count it below zero, never to run.
  if redrive_counts.include_cancelled then
    delete from jobs.dependency d where d.job_id = any(v_ids);
  end if;
  with back as (
    insert into jobs.job_queue (job_id, task, body, scheduled_at, timeout, priority, max_retries,
                                created_at, last_error, queue, dedupe_key, serial_key, serial_wait, attributes,
                                retry_delay, retry_backoff, retry_delay_max, dead_letter, group_id, group_tier)
    overriding system value
    select p.job_id, p.task, p.body, v_now, p.timeout, p.priority, p.max_retries, p.created_at, p.error,
           p.queue, p.dedupe_key, p.serial_key, p.serial_key is not null, p.attributes,
           p.retry_delay, p.retry_backoff, p.retry_delay_max,
           -- Its own dead-letter queue, unless deleted since: then it follows
           -- its queue's (one made again later under that name is not its).
           case when p.dead_letter is null or exists (select 1 from jobs.queue x where x.name = p.dead_letter)
                then p.dead_letter end,
           p.group_id, p.group_tier
    from jobs.job p
    where p.job_id = any(v_ids)
      -- Asked again under the serial keys' locks (this statement's snapshot
      -- comes after them), as jobs.publish looks a key up under its locks:
      -- a job that took the key since it was chosen, and whose settle has
      -- deleted it, holds it until that settle commits, and the settle
      -- (jobs.after_end) waits for a serial key held here; inserting would
      -- wait for the settle, a deadlock (40P01). Left, it counts as held.
      -- A job of one of these serial keys cannot take a key after this
      -- (its publish waits for the key's lock).
      and (p.dedupe_key is null or not exists (select 1 from jobs.job_queue q where q.dedupe_key = p.dedupe_key))
    -- In one order of their dedupe keys: a concurrent redrive whose jobs
    -- share keys with these waits at the first key both take (an
    -- uncommitted entry of the unique index), rather than each holding one
    -- the other then waits for (40P01).
    order by p.dedupe_key
    on conflict do nothing
    returning job_id
  ), gone as (
    delete from jobs.job j using back b where j.job_id = b.job_id returning j.queue
  )
  select count(*), array_agg(distinct g.queue) filter (where g.queue = any(v_admitted)) into v_count, v_counted from gone g;
  -- A key taken meanwhile by a publish to another queue (no lock of these):
  -- its dead letter stays, and a queue none went back to counts none.
  if v_counted is not null then
    perform jobs.count_admit(q) from unnest(v_counted) q;
  end if;
  if v_keys is not null then
    perform jobs.after_end(null, null, v_keys, v_now);
  end if;
  if v_count > 0 then
    perform jobs.notify('pgdrain_queued', coalesce(redrive_counts.queue, '*'));
  end if;
  redriven := v_count;
  serial_later := v_later;
  -- Passed over, and locked but left (a key an older one going back takes, or one taken since).
  held_by_key := v_held + cardinality(v_matched) - v_count - v_later;
  if v_later > 0 then
    raise notice 'pgdrain: % matching dead letters of % more serial keys left in place: one call puts back at most % serial keys (each takes a lock until commit); call jobs.redrive again',
      v_later, v_later_keys, jobs.max_serial_keys();
  end if;
  if held_by_key > 0 then
    raise notice 'pgdrain: % of % matching dead letters left in place: an active job, or an older dead letter going back, holds their dedupe key',
      held_by_key, v_held + cardinality(v_matched);
  end if;
  return next;
end $$;

-- jobs.redrive_counts's redriven alone: how many went back.
create function jobs.redrive(
  job_ids     bigint[]    default null,
  task        text        default null,
  queue       text        default null,
  ended_after timestamptz default null,
  error_like  text        default null,
  now         timestamptz default null,
  include_cancelled boolean default false,
  max_rows    integer     default null
) returns integer language sql security definer set search_path = pg_catalog, pg_temp as $$
  select r.redriven from jobs.redrive_counts(redrive.job_ids, redrive.task, redrive.queue, redrive.ended_after, redrive.error_like,
                                            redrive.now, redrive.include_cancelled, redrive.max_rows) r
$$;
