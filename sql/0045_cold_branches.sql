-- pgdrain 0045: the rare branches of jobs.pick (sql/0011), jobs.settle_arrays
-- (sql/0013) and jobs.publish_keyed (sql/0005), kept apart so that those
-- functions stay readable. Each is called only on its branch: a claim or a
-- settle of plain jobs (drain()'s) calls none of them.

-- jobs.pick's refusal of a claim of a queue with max_running or
-- group_concurrency outside READ COMMITTED (its count would be low): 0A000,
-- naming the queue, its limits and the isolation level.
create function jobs.raise_pick_isolation(p_queue text, p_max_running integer, p_group_cap integer)
returns void language plpgsql as $$
begin
  raise exception 'a claim of queue % (%) must run in a READ COMMITTED transaction, not %',
    quote_literal(p_queue), concat_ws(', ', 'max_running ' || p_max_running, 'group_concurrency ' || p_group_cap),
    upper(current_setting('transaction_isolation'))
    using errcode = '0A000', hint = 'where the database''s or the role''s default_transaction_isolation is another, '
      || 'set it for the role that claims: alter role … set default_transaction_isolation = ''read committed''';
end $$;

-- How many claimable jobs (up to 1000) a group-limited claim of p_queue
-- stepped over between the head it found (p_found) and the first job it
-- took (p_taken); 1000 when it took that job at another priority. jobs.pick
-- remembers p_taken as the group-limited claims' head only when they are
-- many (1000: the backlog of a group at its cap, which every claim would read
-- again); fewer cost little to read again, and a claim that starts past them
-- would leave a job whose group's slot came free waiting behind newer ones
-- for up to a second.
create function jobs.pick_stepped(p_queue text, p_found jobs.head, p_taken jobs.head)
returns integer language plpgsql as $$
declare
  v_stepped integer;
begin
  if (p_taken).priority <> (p_found).priority then
    return 1000;
  end if;
  select count(*) into v_stepped from (
    select 1 from jobs.job_queue q
    where q.queue = p_queue and q.lease_until is null and q.waiting_deps = 0 and not q.serial_wait
      and q.priority = (p_found).priority and (q.scheduled_at, q.job_id) >= ((p_found).scheduled_at, (p_found).job_id)
      and (q.scheduled_at, q.job_id) < ((p_taken).scheduled_at, (p_taken).job_id)
    order by q.scheduled_at, q.job_id
    limit 1000) s;
  return v_stepped;
end $$;

-- jobs.pick's filtered claim of a queue without group_concurrency: up to
-- p_n due jobs whose attributes contain p_filter (its GIN index), locked
-- (FOR UPDATE SKIP LOCKED), in claim order; the other arguments as
-- jobs.pick's (p_like: its pattern as a LIKE pattern; p_pick_at: the clock
-- an expires_at is compared with). Null when none.
create function jobs.pick_filtered(p_queue text, p_filter jsonb, p_now timestamptz, p_like text, p_max_timeout numeric,
                                   p_exclude jsonb[], p_pick_at timestamptz, p_n integer)
returns bigint[] language plpgsql as $$
declare
  v_ids bigint[];
begin
  select array_agg(p.job_id) into v_ids from (
    select q.job_id from jobs.job_queue q
    where q.attributes @> p_filter
      and q.queue = p_queue and q.lease_until is null and q.waiting_deps = 0 and not q.serial_wait
      and q.scheduled_at <= p_now
      and (q.task like p_like or p_like is null and q.task not like 'sql:%')
      and (p_max_timeout is null or q.timeout <= p_max_timeout)
      and (p_exclude is null or not q.attributes @> any(p_exclude))
      and (q.expires_at is null or q.expires_at > p_pick_at)
    order by q.priority desc, q.scheduled_at, q.job_id
    limit p_n
    for update skip locked) p;
  return v_ids;
end $$;
