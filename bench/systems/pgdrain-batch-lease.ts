// A PROTOTYPE, not pgdrain as shipped: pgdrain's own drain() over a
// jobs.claim_json that keeps claimed jobs as batch-lease.ts does (deleted from
// jobs.job_queue, one jobs.running_batch row per batch), in a database of its
// own. It settles acks only (no retries, expiry, cancel, serial keys or
// dependencies), so it prices the storage under pgdrain's full client and
// claim: the pick with its head probes, the ten-field answer, NOTIFY.
// 'pgdrain-batch-lease-lean' also picks with one plain SKIP LOCKED select
// and sends no NOTIFY. bench/RESULTS.md, "Where the time goes".
import pg from 'pg';
import { createQueue } from '../../src/index.js';
import { BATCH, chunks, DRAINERS, expectCount, type System } from './system.js';

const PATCH = `
create table jobs.running_batch (
  batch_id bigint generated always as identity primary key,
  worker_id text not null,
  lease_until timestamptz not null,
  started_at timestamptz not null,
  jobs jobs.job_queue[] not null);
alter table jobs.running_batch alter column jobs set storage external;
create index on jobs.running_batch (worker_id);
create index on jobs.running_batch (lease_until);

create or replace function jobs.claim_json(
  n integer, pattern text default null, max_timeout numeric default null, now timestamptz default null,
  queue text default null, filter jsonb default null, worker_id text default null, ids bigint[] default null,
  attempts integer[] default null, outcomes text[] default null, results jsonb[] default null,
  errors text[] default null, retry_at timestamptz[] default null, ms double precision[] default null
) returns json language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_now timestamptz := coalesce(claim_json.now, pg_catalog.now());
  v_ids bigint[]; v_jobs json; v_count integer := 0; v_settled jsonb; v_ended bigint[];
begin
  if exists (select 1 from jobs.recurring r where r.runner = 'drains' and r.next_run_at <= v_now) then
    perform jobs.publish_due_schedules(v_now);
  end if;
  if cardinality(claim_json.ids) > 0 then
    if not claim_json.outcomes <@ array['ack'] then raise exception 'prototype: acks only'; end if;
    with o as materialized (
      select * from unnest(claim_json.ids, claim_json.attempts, claim_json.results, claim_json.ms) as o(id, attempt, result, ms)
    ), b as (
      select r.batch_id, r.jobs, r.started_at, r.worker_id from jobs.running_batch r
      where r.worker_id = claim_json.worker_id for update
    ), x as (
      select b.batch_id, b.started_at, b.worker_id, j, o.result, o.ms, o.id is not null as done
      from b cross join lateral unnest(b.jobs) j left join o on o.id = (j).job_id and o.attempt = (j).attempt + 1
    ), gone as (
      delete from jobs.running_batch r using (select batch_id from x group by batch_id having bool_and(done)) d
      where r.batch_id = d.batch_id
    ), kept as (
      update jobs.running_batch r set jobs = k.jobs
      from (select batch_id, array_agg(j) as jobs from x group by batch_id having not bool_and(done)) k
      where r.batch_id = k.batch_id and k.jobs is not null
    ), ended as (
      insert into jobs.job (job_id, task, body, status, result, error, attempts, priority, max_retries,
                            timeout, scheduled_at, created_at, started_at, ended_at, duration_ms,
                            queue, dedupe_key, serial_key, attributes, worker_id)
      select (x.j).job_id, (x.j).task, (x.j).body, 'success', x.result, (x.j).last_error, (x.j).attempt + 1,
             (x.j).priority, (x.j).max_retries, (x.j).timeout, (x.j).scheduled_at, (x.j).created_at, x.started_at,
             v_now, coalesce(x.ms, extract(epoch from v_now - x.started_at) * 1000),
             (x.j).queue, (x.j).dedupe_key, (x.j).serial_key, (x.j).attributes, x.worker_id
      from x where x.done
      returning job_id
    )
    select jsonb_build_object('succeeded', count(*), 'failed', 0, 'cancelled', 0, 'retried', 0, 'released', 0,
                              'stale', cardinality(claim_json.ids) - count(*)), array_agg(job_id)
    into v_settled, v_ended from ended;
    if v_ended is not null then perform jobs.notify_ids('pgdrain_completed', v_ended); end if;
  end if;
  v_ids := jobs.pick(claim_json.n, claim_json.pattern, claim_json.max_timeout, v_now,
                     claim_json.queue, claim_json.filter, remember => true);
  if v_ids is not null then
    with moved as (
      delete from jobs.job_queue q where q.job_id = any(v_ids) returning q
    ), batch as (
      insert into jobs.running_batch (worker_id, lease_until, started_at, jobs)
      select claim_json.worker_id, v_now + make_interval(secs => max((m.q).timeout)), v_now, array_agg(m.q) from moved m
    )
    select json_build_object(
             'id', string_agg(((c.q).job_id)::text, ','), 'task', array_agg((c.q).task), 'body', json_agg((c.q).body),
             'attempt', array_agg((c.q).attempt + 1), 'maxRetries', array_agg((c.q).max_retries),
             'timeout', array_agg((c.q).timeout), 'priority', array_agg((c.q).priority),
             'scheduledAt', array_agg(date_part('epoch', (c.q).scheduled_at)),
             'createdAt', array_agg(date_part('epoch', (c.q).created_at)), 'attributes', json_agg((c.q).attributes)),
           count(*)
    into v_jobs, v_count from moved c;
    perform jobs.notify_ids('pgdrain_picked', v_ids);
  end if;
  return json_build_object('jobs', v_jobs, 'count', v_count, 'queue', coalesce(claim_json.queue, 'default'),
                           'now', date_part('epoch', v_now), 'unfit', 0, 'settled', v_settled);
end $$;
`;

/** The lean variant's pick: the floor's, from the true head, no head memory, no lease probe. */
const PLAIN_PICK = `v_ids := array(select p.job_id from jobs.job_queue p
    where p.queue = 'default' and p.lease_until is null and p.waiting_deps = 0 and not p.serial_wait
      and p.scheduled_at <= v_now
    order by p.priority desc, p.scheduled_at, p.job_id limit claim_json.n for update skip locked);
  if cardinality(v_ids) = 0 then v_ids := null; end if;`;

function patchFor(lean: boolean): string {
  if (!lean) return PATCH;
  const sql = PATCH.replace(/v_ids := jobs\.pick\([^;]*;/, PLAIN_PICK).replace(/perform jobs\.notify_ids\([^;]*;/g, 'null;');
  if (!sql.includes('limit claim_json.n') || sql.includes('notify_ids')) throw new Error('pgdrain-batch-lease-lean: the patch no longer applies');
  return sql;
}

export async function pgdrainBatchLeaseSystem(url: string, { lean = false } = {}): Promise<System> {
  const name = lean ? 'pgdrain-batch-lease-lean' : 'pgdrain-batch-lease';
  const database = name.replaceAll('-', '_');
  const server = new pg.Client({ connectionString: url });
  await server.connect();
  await server.query(`drop database if exists ${database}`);
  await server.query(`create database ${database}`);
  await server.end();
  const own = new URL(url);
  own.pathname = `/${database}`;
  const queue = createQueue({ connectionString: own.href, tasks: { noop: async () => null } });
  await queue.migrate();
  const admin = new pg.Pool({ connectionString: own.href, max: 1 });
  await admin.query(patchFor(lean));
  return {
    name,
    async reset() {
      await admin.query('truncate jobs.job_queue, jobs.job, jobs.running_batch');
    },
    async enqueue(n) {
      for (const [from, to] of chunks(n)) {
        await queue.publishBulk(Array.from({ length: to - from }, (_, k) => ({ task: 'noop', body: { i: from + k } })));
      }
    },
    async drain(n) {
      // The rounds analyze the bench database only; this one's, here, inside the timing (against it).
      await admin.query('analyze');
      const deadline = Date.now() + 30 * 60_000;
      const reports = await Promise.all(Array.from({ length: DRAINERS }, () => queue.drain(BATCH, deadline)));
      expectCount(`${name} drains succeeded`, reports.reduce((s, r) => s + r.succeeded, 0), n);
    },
    async verify(n) {
      const { rows } = await admin.query<{ queued: number; ok: number; running: number }>(
        `select (select count(*) from jobs.job_queue)::int as queued,
                (select count(*) from jobs.job where status = 'success')::int as ok,
                (select count(*) from jobs.running_batch)::int as running`);
      expectCount(`${name} jobs left in jobs.job_queue`, rows[0]!.queued, 0);
      expectCount(`${name} successes in jobs.job`, rows[0]!.ok, n);
      expectCount(`${name} batches left running`, rows[0]!.running, 0);
    },
    async close() {
      await queue.close();
      await admin.end();
    },
  };
}
