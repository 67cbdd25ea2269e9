// A PROTOTYPE, not pgdrain: what a claim costs when claimed jobs leave the
// queue table instead of being updated in it (bench/RESULTS.md, "Where the
// time goes"). A claim deletes its batch from bl.job_queue (rows as wide as
// jobs.job_queue, with its partial indexes) and keeps the rows, as one array,
// in a single bl.running row per batch, the batch's lease; the settle, riding
// on the next claim as in pgdrain, deletes that row and writes each job to
// bl.job (as wide as jobs.job, same indexes). Per job: a delete and a history
// insert, where floor+history does an update, a delete and an insert. No
// retries, expiry, cancel, events or checks: only acks, to price the storage.
import pg from 'pg';
import { BATCH, chunks, DRAINERS, expectCount, type System } from './system.js';

const SCHEMA = `
drop schema if exists bl cascade;
create schema bl;
create table bl.job_queue (
  job_id bigint generated always as identity primary key,
  task text not null, body jsonb, scheduled_at timestamptz not null, timeout numeric not null,
  priority integer not null, max_retries integer not null, attempt integer not null default 0,
  created_at timestamptz not null, last_error text, queue text not null default 'default',
  dedupe_key text, serial_key text, serial_wait boolean not null default false,
  waiting_deps integer not null default 0, attributes jsonb, cancel_requested_at timestamptz, cancel_reason text
) with (autovacuum_vacuum_cost_delay = 0);
create index on bl.job_queue (queue, priority desc, scheduled_at, job_id) where waiting_deps = 0 and not serial_wait;
create unique index on bl.job_queue (dedupe_key) where dedupe_key is not null;
create index on bl.job_queue (serial_key, job_id) where serial_key is not null;
create table bl.running (
  batch_id bigint generated always as identity primary key,
  worker_id text not null, lease_until timestamptz not null, started_at timestamptz not null,
  jobs bl.job_queue[] not null);
alter table bl.running alter column jobs set storage external;
create index on bl.running (lease_until);
create table bl.job (
  job_id bigint primary key, task text not null, body jsonb, status text not null, result jsonb, error text,
  attempts integer not null, priority integer not null, max_retries integer not null, timeout numeric not null,
  scheduled_at timestamptz not null, created_at timestamptz not null, started_at timestamptz,
  ended_at timestamptz not null, duration_ms double precision, queue text not null, dedupe_key text,
  serial_key text, attributes jsonb, worker_id text);
create index on bl.job (ended_at);
create index on bl.job (ended_at) where status = 'failure';

-- Settles batch prev (its acked jobs) and claims up to n more, in one call.
create function bl.claim_settle(prev bigint, acked bigint[], n integer, worker text) returns json
language plpgsql as $$
declare v_now timestamptz := now(); v json;
begin
  if prev is not null then
    with b as (delete from bl.running r where r.batch_id = prev and r.worker_id = worker
               returning r.jobs, r.started_at, r.worker_id)
    insert into bl.job (job_id, task, body, status, result, error, attempts, priority, max_retries, timeout,
                        scheduled_at, created_at, started_at, ended_at, duration_ms, queue, dedupe_key,
                        serial_key, attributes, worker_id)
    select j.job_id, j.task, j.body, 'success', null, j.last_error, j.attempt, j.priority, j.max_retries, j.timeout,
           j.scheduled_at, j.created_at, b.started_at, v_now, 1, j.queue, j.dedupe_key, j.serial_key,
           j.attributes, b.worker_id
    from b, unnest(b.jobs) j where j.job_id = any(acked);
  end if;
  if n = 0 then return null; end if;
  with moved as (
    delete from bl.job_queue q
    where q.job_id = any(array(select p.job_id from bl.job_queue p
                               where p.queue = 'default' and p.waiting_deps = 0 and not p.serial_wait
                                 and p.scheduled_at <= v_now
                               order by p.priority desc, p.scheduled_at, p.job_id limit n for update skip locked))
    returning q.*
  ), claimed as (
    select (m.job_id, m.task, m.body, m.scheduled_at, m.timeout, m.priority, m.max_retries, m.attempt + 1,
            m.created_at, m.last_error, m.queue, m.dedupe_key, m.serial_key, m.serial_wait, m.waiting_deps,
            m.attributes, m.cancel_requested_at, m.cancel_reason)::bl.job_queue as r
    from moved m
  ), batch as (
    insert into bl.running (worker_id, lease_until, started_at, jobs)
    select worker, v_now + interval '60 seconds', v_now, array_agg(r) from claimed having count(*) > 0
    returning batch_id
  )
  select json_build_object('batch', (select batch_id from batch), 'ids', array_agg((r).job_id),
                           'tasks', array_agg((r).task), 'bodies', array_agg((r).body),
                           'attempts', array_agg((r).attempt))
  into v from claimed;
  return v;
end $$;`;

type Answer = { batch: string; ids: string[] | null } | null;

export async function batchLeaseSystem(url: string): Promise<System> {
  const pool = new pg.Pool({ connectionString: url, max: DRAINERS + 1 });
  await pool.query(SCHEMA);
  return {
    name: 'batch-lease',
    async reset() {
      await pool.query('truncate bl.job_queue, bl.running, bl.job');
    },
    async enqueue(n) {
      for (const [from, to] of chunks(n)) {
        const bodies = Array.from({ length: to - from }, (_, k) => JSON.stringify({ i: from + k }));
        await pool.query(`insert into bl.job_queue (task, body, scheduled_at, timeout, priority, max_retries, created_at)
                          select 'noop', b, now(), 60, 0, 3, now() from unnest($1::jsonb[]) as b`, [bodies]);
      }
    },
    async drain(n) {
      let done = 0;
      await Promise.all(Array.from({ length: DRAINERS }, async (_, i) => {
        const client = await pool.connect();
        const worker = `drain-${i}`;
        try {
          let batch: string | null = null;
          let acked: string[] = [];
          for (;;) {
            const { rows }: pg.QueryResult<{ r: Answer }> = await client.query('select bl.claim_settle($1, $2, $3, $4) as r',
              [batch, `{${acked.join(',')}}`, BATCH, worker]);
            done += acked.length;
            const r: Answer = rows[0]!.r;
            if (!r?.ids) {
              if (batch === null) return;
              [batch, acked] = [null, []]; // settle the last batch, claim nothing more
              continue;
            }
            // the handlers would run here: no-op jobs
            [batch, acked] = [r.batch, r.ids];
          }
        } finally {
          client.release();
        }
      }));
      expectCount('batch-lease jobs done', done, n);
    },
    async verify(n) {
      const { rows } = await pool.query<{ left: number; done: number; running: number }>(
        `select (select count(*) from bl.job_queue)::int as left, (select count(*) from bl.job)::int as done,
                (select count(*) from bl.running)::int as running`);
      expectCount('batch-lease jobs left', rows[0]!.left, 0);
      expectCount('batch-lease jobs in history', rows[0]!.done, n);
      expectCount('batch-lease batches left running', rows[0]!.running, 0);
    },
    async close() {
      await pool.end();
    },
  };
}
