-- pgdrain 0002: retries, lease expiry and claiming.

-- Retries --------------------------------------------------------------------

-- Delay before retry number `attempt` (1 = the first retry): exponential with
-- "equal jitter", so attempt k waits between 5*2^(k-1)/2 and 5*2^(k-1)
-- seconds, capped at one hour. Replace this function to change the policy.
create function jobs.backoff(attempt integer)
returns interval language sql volatile as $$
  select make_interval(secs => d / 2 + random() * d / 2)
  from (select least(3600.0, 5.0 * power(2, greatest(backoff.attempt, 1) - 1)) as d) s
$$;

-- Leases ---------------------------------------------------------------------

-- Settles up to n expired leases: a job with retries left goes back to pending
-- at once (its attempt stays counted), the others end as failures. consume
-- calls it first, so expiry needs no daemon; jobs.maintain-style callers may
-- call it on their own.
create function jobs.expire(n integer default 1000, now timestamptz default null)
returns integer language plpgsql as $$
declare
  v_now timestamptz := coalesce(expire.now, pg_catalog.now());
  v_count integer;
begin
  with expired as (
    select q.job_id from jobs.job_queue q
    where q.lease_until <= v_now
    order by q.lease_until
    limit expire.n
    for update skip locked
  ), spent as (
    delete from jobs.job_queue q using expired e
    where q.job_id = e.job_id and q.attempt > q.max_retries
    returning q.*
  ), failed as (
    insert into jobs.job (job_id, task, body, status, error, attempts, priority, max_retries,
                          timeout, scheduled_at, created_at, started_at, ended_at, duration_ms)
    select s.job_id, s.task, s.body, 'failure',
           format('timed out: no ack within %s seconds (attempt %s of %s)', s.timeout, s.attempt, s.max_retries + 1),
           s.attempt, s.priority, s.max_retries, s.timeout, s.scheduled_at, s.created_at,
           s.started_at, s.lease_until, extract(epoch from s.lease_until - s.started_at) * 1000
    from spent s
    returning 1
  ), retried as (
    update jobs.job_queue q
    set lease_until = null,
        scheduled_at = q.lease_until,
        last_error = format('timed out: no ack within %s seconds (attempt %s of %s)', q.timeout, q.attempt, q.max_retries + 1)
    from expired e
    where q.job_id = e.job_id and q.attempt <= q.max_retries
    returning 1
  )
  select (select count(*) from failed) + (select count(*) from retried) into v_count;
  return v_count;
end $$;

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
  created_at  timestamptz
);

-- The one claim statement behind consume, consume_topic and drain(). It
-- expires stale leases first, then claims up to n due pending jobs (greatest
-- priority first, then earliest scheduled_at, then job_id) whose task matches
-- pattern (null = any) and whose timeout is at most max_timeout seconds
-- (null = any): a drain never takes work it cannot finish before its deadline.
create function jobs.claim(
  n           integer,
  pattern     text        default null,
  max_timeout numeric     default null,
  now         timestamptz default null
) returns setof jobs.claimed_job language plpgsql as $$
declare
  v_now timestamptz := coalesce(claim.now, pg_catalog.now());
  v_like text;
begin
  perform jobs.check_batch(claim.n);
  if claim.pattern is not null then
    if claim.pattern = '' or length(claim.pattern) > 200 then
      perform jobs.raise_invalid('PD006', 'pattern', 'must be a non-empty LIKE pattern of at most 200 characters');
    end if;
    -- Only % is a wildcard; _ and \ match themselves.
    v_like := replace(replace(claim.pattern, '\', '\\'), '_', '\_');
  end if;

  -- Cheap when nothing expired: one probe of the partial lease index.
  perform jobs.expire(claim.n, v_now);

  return query
  with picked as (
    select q.job_id from jobs.job_queue q
    where q.lease_until is null
      and q.scheduled_at <= v_now
      and (v_like is null or q.task like v_like)
      and (claim.max_timeout is null or q.timeout <= claim.max_timeout)
    order by q.priority desc, q.scheduled_at, q.job_id
    limit claim.n
    for update skip locked
  )
  update jobs.job_queue q
  set attempt = q.attempt + 1,
      lease_until = v_now + make_interval(secs => q.timeout),
      started_at = v_now
  from picked p
  where q.job_id = p.job_id
  returning q.job_id, q.task, q.body, q.attempt, q.max_retries, q.timeout, q.lease_until,
            q.priority, q.scheduled_at, q.created_at;
end $$;

create function jobs.consume(n integer default 1, now timestamptz default null)
returns setof jobs.claimed_job language sql as $$
  select * from jobs.claim(consume.n, null, null, consume.now)
$$;

-- pattern is a LIKE pattern over task names in which only % is a wildcard:
-- 'email.%' matches email.send and email.digest.weekly; '_' and '\' match
-- themselves. It is passed as a value, never spliced into SQL.
create function jobs.consume_topic(pattern text, n integer default 1, now timestamptz default null)
returns setof jobs.claimed_job language plpgsql as $$
begin
  if consume_topic.pattern is null then
    perform jobs.raise_invalid('PD006', 'pattern', 'must be a non-empty LIKE pattern of at most 200 characters');
  end if;
  return query select * from jobs.claim(consume_topic.n, consume_topic.pattern, null, consume_topic.now);
end $$;


