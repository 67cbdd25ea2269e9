-- pgdrain 0012: claiming: jobs.claim, consume and consume_topic.

-- Claims up to n jobs as jobs.pick chooses them (see there for the
-- arguments): marks them running with a lease ending at now + timeout,
-- counts the attempt, records worker_id (null, or 1 to 200 characters not
-- all whitespace: PD005), and returns them in claim order.
-- Its leases have no holder: any expiry takes them back once passed.
-- A lease runs from the claim, not from the transaction's start (now()):
-- consume inside a transaction open longer than a job's timeout (a psql
-- session, a PL/pgSQL loop, a trigger) would otherwise write a lease that
-- had already passed, and the next consume after its commit would hand the
-- job out again while it runs. started_at stays the transaction's time (an
-- ack in the same transaction ends at now(), never before it). With a `now`
-- given (an admin's clock), the lease runs from that.
-- The claim behind consume and consume_topic; drain() uses jobs.claim_json.
-- Index probes rated as on SSDs (random_page_cost 1.1): see jobs.claim_json.
create function jobs.claim(
  n           integer,
  pattern     text        default null,
  max_timeout numeric     default null,
  now         timestamptz default null,
  queue       text        default null,
  filter      jsonb       default null,
  worker_id   text        default null,
  exclude     jsonb[]     default null
) returns setof jobs.claimed_job language plpgsql security definer set search_path = pg_catalog, pg_temp
  set random_page_cost = 1.1 as $$
declare
  v_now timestamptz := jobs.clock(claim.now);
  v_from timestamptz := case when claim.now is null then greatest(v_now, clock_timestamp()) else v_now end;
  v_ids bigint[];
begin
  perform jobs.check_worker_id(claim.worker_id);
  -- now as given (null: the clock), which pick reads as v_now is read here.
  v_ids := jobs.pick(claim.n, claim.pattern, claim.max_timeout, claim.now, claim.queue, claim.filter,
                     exclude => claim.exclude);
  if v_ids is null then
    return;
  end if;

  -- jobs.claim_json marks its jobs with the same update, answering json from it.
  return query
  with claimed as (
    update jobs.job_queue q
    set attempt = q.attempt + 1,
        lease_until = v_from + make_interval(secs => q.timeout),
        started_at = v_now,
        worker_id = claim.worker_id,
        lease_holder = null
    where q.job_id = any(v_ids)
    returning q.job_id, q.task, q.body, q.attempt, q.max_retries, q.timeout, q.lease_until,
              q.priority, q.scheduled_at, q.created_at, q.queue, q.attributes
  )
  select * from claimed c order by c.priority desc, c.scheduled_at, c.job_id;
  perform jobs.notify_ids('pgdrain_picked', v_ids);
end $$;

create function jobs.consume(n integer default 1, now timestamptz default null, queue text default null)
returns setof jobs.claimed_job language sql security definer set search_path = pg_catalog, pg_temp as $$
  select * from jobs.claim(consume.n, null, null, consume.now, consume.queue)
$$;

-- pattern is a LIKE pattern over task names in which only % is a wildcard:
-- 'email.%' matches email.send and email.digest.weekly; '_' and '\' match
-- themselves. It is passed as a value, never spliced into SQL.
create function jobs.consume_topic(pattern text, n integer default 1, now timestamptz default null,
                                   queue text default null)
returns setof jobs.claimed_job language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
  if consume_topic.pattern is null then
    perform jobs.raise_invalid('PD006', 'pattern', 'must be a non-empty LIKE pattern of at most 200 characters');
  end if;
  return query select * from jobs.claim(consume_topic.n, consume_topic.pattern, null, consume_topic.now,
                                        consume_topic.queue);
end $$;
