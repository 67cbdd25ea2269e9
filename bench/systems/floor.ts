// The floor: the least a SKIP LOCKED queue can do. One INSERT ... unnest per
// chunk to enqueue; DRAINERS loops that claim a batch with one UPDATE (a
// lease, so a crashed drainer's jobs come back) and delete it with one
// DELETE ... WHERE id = ANY($1). No history, no retries, no validation.
// floor+history moves the deleted rows to a history table in the same
// statement: what keeping ended jobs costs at the least.
import pg from 'pg';
import { BATCH, chunks, DRAINERS, expectCount, type System } from './system.js';

export const SCHEMA = `
create schema if not exists floor;
create table if not exists floor.job (
  id          bigint generated always as identity primary key,
  task        text        not null,
  body        jsonb,
  priority    integer     not null default 0,
  run_at      timestamptz not null default now(),
  lease_until timestamptz
);
create index if not exists job_pending_idx on floor.job (priority desc, run_at, id) where lease_until is null;
create table if not exists floor.job_done (
  id       bigint      primary key,
  task     text        not null,
  body     jsonb,
  status   text        not null,
  ended_at timestamptz not null
);
create index if not exists job_done_ended_idx on floor.job_done (ended_at);`;

/** Enqueues one no-op job per element of $1 (jsonb bodies as text). */
export const INSERT = `insert into floor.job (task, body) select 'noop', b from unnest($1::jsonb[]) as b`;
export const DELETE = 'delete from floor.job where id = any($1::bigint[])';
export const MOVE = `
with done as (delete from floor.job where id = any($1::bigint[]) returning id, task, body)
insert into floor.job_done (id, task, body, status, ended_at) select id, task, body, 'success', now() from done`;

// The picked ids go in as an array, so the update probes the primary key for
// each: written as a join (UPDATE ... FROM (subquery)), the planner hashes
// the batch and scans the whole table for every claim once it holds ~20,000
// rows, and the floor stops being one.
export const CLAIM = `
update floor.job j set lease_until = now() + interval '60 seconds'
where j.id = any(array(select id from floor.job
                       where lease_until is null and run_at <= now()
                       order by priority desc, run_at, id
                       limit $1 for update skip locked))
returning j.id, j.task, j.body`;

/** The floor; with history, ended jobs move to floor.job_done. */
export async function floorSystem(url: string, { history = false } = {}): Promise<System> {
  const pool = new pg.Pool({ connectionString: url, max: DRAINERS + 1 });
  await pool.query(SCHEMA);
  const settle = history ? MOVE : DELETE;
  return {
    name: history ? 'floor+history' : 'floor',
    async reset() {
      await pool.query('truncate floor.job, floor.job_done');
    },
    async enqueue(n) {
      for (const [from, to] of chunks(n)) {
        const bodies = Array.from({ length: to - from }, (_, k) => JSON.stringify({ i: from + k }));
        await pool.query(INSERT, [bodies]);
      }
    },
    async drain(n) {
      let done = 0;
      await Promise.all(Array.from({ length: DRAINERS }, async () => {
        const client = await pool.connect();
        try {
          for (;;) {
            const { rows } = await client.query<{ id: string }>(CLAIM, [BATCH]);
            if (rows.length === 0) return;
            // the handlers would run here: no-op jobs
            await client.query(settle, [rows.map((r) => r.id)]);
            done += rows.length;
          }
        } finally {
          client.release();
        }
      }));
      expectCount('floor jobs done', done, n);
    },
    async verify(n) {
      const { rows } = await pool.query<{ left: number; done: number }>(
        'select (select count(*) from floor.job)::int as left, (select count(*) from floor.job_done)::int as done');
      expectCount('floor jobs left', rows[0]!.left, 0);
      expectCount('floor jobs in history', rows[0]!.done, history ? n : 0);
    },
    async close() {
      await pool.end();
    },
  };
}
