-- pgdrain 0035: extending a running job's lease (pg-boss's touch, heartbeat).
--
-- A lease starts as the job's timeout (jobs.claim); a long job can push it
-- later while it runs, so its timeout can stay short: a crashed drain's job
-- then goes back after that short time, not after the longest the job might need.

-- Moves the lease of job job_id's delivery `attempt` to at least now +
-- seconds (never earlier: greatest) and answers the new lease_until; null,
-- changing nothing, when that delivery is not running: unknown job, ended,
-- expired (put back, or handed out again: another attempt), released, or
-- not leased by worker_id (when given), as settles match it (sql/0013). A
-- lease that passed but that no expiry has settled yet is still this
-- delivery's (an ack would land too): it is extended. seconds: 0.001 to
-- 86400, as a timeout (PD002, naming seconds). With no `now` given, from the
-- time of the call, not the transaction's start: called inside a long
-- transaction, now() + seconds could already have passed (jobs.claim's lease too).
-- Later leases keep jobs.remembered_lease_floor right: a probe reads the
-- leases after its session's floor F, and a lease only moves later, so one
-- past F stays past it. One moved to at most F is one whose extension
-- committed after the probe at F (else the probe saw it passed, expired it
-- and kept no floor) yet began `seconds` before F: the case that comment
-- already covers (a transaction that ran longer than the lease it wrote),
-- expired by the next probe from the start, within ten seconds.
-- One statement, a primary-key probe; the row's lock orders it with an
-- expiry or settle of the same delivery, and the later sees the other's end.
create function jobs.extend_lease(job_id bigint, attempt integer, seconds numeric, now timestamptz default null,
                                  worker_id text default null)
returns timestamptz language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := case when extend_lease.now is null then greatest(pg_catalog.now(), clock_timestamp())
                            else jobs.clock(extend_lease.now) end;
  v_until timestamptz;
begin
  -- NaN is outside any range here (PostgreSQL orders it above every number).
  if extend_lease.seconds is null or not (extend_lease.seconds between 0.001 and 86400) then
    perform jobs.raise_invalid('PD002', 'seconds',
      format('must be 0.001 to 86400 seconds, got %s', coalesce(extend_lease.seconds::text, 'null')));
  end if;
  update jobs.job_queue q
  set lease_until = greatest(q.lease_until, v_now + make_interval(secs => extend_lease.seconds))
  -- attempt > 0: a job leased at attempt 0 is a dependant a cascade deferred
  -- (jobs.after_end), whose passed lease is its end. The CASE: as in jobs.settle_arrays.
  where q.job_id = extend_lease.job_id and q.attempt = extend_lease.attempt and extend_lease.attempt > 0
    and case when q.lease_until is null then false else true end
    and (extend_lease.worker_id is null or q.worker_id = extend_lease.worker_id)
  returning q.lease_until into v_until;
  return v_until;
end $$;

-- As every function a role of jobs.create_roles is granted: no role may
-- call it before migrate --roles grants it (PUBLIC may execute a new function).
revoke execute on function jobs.extend_lease(bigint, integer, numeric, timestamptz, text) from public;

-- Gives back every job still leased to one drain call (its holder, as
-- jobs.claim_json keeps it on the jobs it claims) and to worker_id, as a
-- release in jobs.settle_arrays does: its attempt given back, not run. A
-- drain whose own loop failed, or whose claim failed (its answer maybe lost
-- after it committed), calls it once, after its last settle landed
-- (drain-end.ts endOnFault, settleLast): what it still holds then is what it
-- lost track of, the jobs of the claim whose answer it could not read or had
-- not started yet. Through the leased rows' index only. Answers how many it released.
create function jobs.release_holder(holder bigint, worker_id text)
returns integer language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_ids bigint[];
  v_attempts integer[];
begin
  select array_agg(q.job_id order by q.job_id), array_agg(q.attempt order by q.job_id) into v_ids, v_attempts
  from jobs.job_queue q where q.lease_until is not null and q.lease_holder = release_holder.holder;
  if v_ids is null then
    return 0;
  end if;
  return (jobs.settle_arrays(v_ids, v_attempts, array_fill('release'::text, array[cardinality(v_ids)]),
                             worker_id => release_holder.worker_id)->>'released')::integer;
end $$;
