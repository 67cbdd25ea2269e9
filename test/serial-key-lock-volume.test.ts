// Serial-key lock volume. Each serial key a statement ends, hands on or puts
// back takes a transaction-level lock: one entry of PostgreSQL's lock table,
// held until commit, from a table of about max_locks_per_transaction x
// max_connections entries that every session shares. An expiry ends at most
// 500 serial-key jobs per call, and a 53200 ("out of shared memory") that
// reaches a drain is translated into an error saying what to change, its
// jobs running again once their leases pass: none is lost.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, PgDrainError } from '../src/index.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';
import { useSmallLockTable, type Sql } from './support/small-lock-table.js';
import { count } from './support/sql-count.js';

/** Publishes `count` jobs of task, each with its own serial key `<prefix><i>`, in bulks of 500. */
async function publishKeyed(sql: Sql, task: string, count: number, options: { prefix?: string; timeout?: number;
  maxRetries?: number; attributes?: unknown } = {}): Promise<void> {
  for (let from = 0; from < count; from += 500) {
    const n = Math.min(500, count - from);
    await sql(`select jobs.publish_arrays(array_fill($1::text, array[$3::int]),
                 timeouts => array_fill($4::numeric, array[$3::int]), max_retries => array_fill($5::int, array[$3::int]),
                 serial_keys => (select array_agg($6 || g) from generate_series($2::int, $2::int + $3::int - 1) g),
                 attributes => (select jsonb_agg($7::jsonb) from generate_series(1, $3::int) where $7::jsonb is not null))`,
              [task, from, n, options.timeout ?? 10, options.maxRetries ?? 3, options.prefix ?? 'key:',
               options.attributes === undefined ? null : JSON.stringify(options.attributes)]);
  }
}

async function publishPlain(sql: Sql, task: string, count: number, attributes: unknown = null): Promise<void> {
  await sql(`select jobs.publish_arrays(array_fill($1::text, array[$2::int]), timeouts => array_fill(10::numeric, array[$2::int]),
               attributes => case when $3::jsonb is null then null else (select jsonb_agg($3::jsonb) from generate_series(1, $2::int)) end)`,
            [task, count, attributes === null ? null : JSON.stringify(attributes)]);
}

const db = await testDb();

describe('on the shared test server', () => {
  const sql: Sql = db.sql;
  beforeEach(async () => {
    await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
  });

  it('an expiry ends at most 500 serial-key jobs per call; the next call ends the rest', async () => {
    await publishKeyed(sql, 't', 600, { maxRetries: 0 });
    // Leased, then their leases passed.
    await sql('select count(*) from jobs.consume(1000)');
    await sql(`update jobs.job_queue set lease_until = now() - interval '1 second'`);
    expect(await count(sql, `select count(*) as n from jobs.job_queue where lease_until < now()`)).toBe(600);
    expect(await count(sql, 'select jobs.expire(1000) as n')).toBe(500);
    expect(await count(sql, 'select jobs.expire(1000) as n')).toBe(100);
    expect(await count(sql, `select count(*) as n from jobs.job where status = 'failure'`)).toBe(600);
  });

});

// Its own cluster, with a lock table of about 3,200 entries (support/small-lock-table.ts).
describe('on a server with a small lock table', () => {
  const locks = useSmallLockTable();
  const sql = locks.sql;

  it('a full lock table fails a drain with resources_exhausted naming what to change; its jobs run again, none lost', async () => {
    // A timeout the lock table's filling fits in even on a loaded machine: a job its timer ended first was nacked
    // then, before the table was full, and the drain ended with no error (at 5 s: its timer at 4.5 s, CI at load 14).
    await publishKeyed(sql, 'noop', 600, { timeout: 15 });
    const runs = new Map<string, number>();
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    const tasks = { noop: async (_b: unknown, ctx: { job: { id: string } }) => {
      runs.set(ctx.job.id, (runs.get(ctx.job.id) ?? 0) + 1);
      await gate;
      return null;
    } };
    const queue = createQueue({ connectionString: locks.url, tasks });
    const filler = new pg.Client({ connectionString: locks.url });
    await filler.connect();
    try {
      const drained = queue.drain(1000, Date.now() + 30_000).then(() => undefined, (e: unknown) => e);
      await until(async () => runs.size === 600, 'the drain to run its 600 jobs');
      // Another session takes advisory locks until none is left (chunks of 100, then one at a time).
      await filler.query('begin');
      let next = 0;
      for (const chunk of [100, 1]) {
        for (;;) {
          await filler.query('savepoint s');
          try {
            await filler.query('select count(pg_advisory_xact_lock(1, g)) from generate_series($1::int, $2::int) g', [next, next + chunk - 1]);
            await filler.query('release savepoint s');
            next += chunk;
          } catch (error) {
            expect((error as { code?: string }).code).toBe('53200');
            await filler.query('rollback to savepoint s');
            break;
          }
        }
      }
      release(); // their settle needs the keys' locks: none is left
      const error = await drained;
      expect(error).toBeInstanceOf(PgDrainError);
      expect(error).toMatchObject({ code: 'resources_exhausted' });
      expect((error as Error).message).toMatch(/^database out of resources \(SQLSTATE 53200: out of shared memory\): the lock table is full .*smaller batch.*max_locks_per_transaction.*run again once their leases expire; 600 jobs' outcomes were not recorded \(600 succeeded\): the drain's last settle failed\. .*$/);
      await filler.query('rollback');
      // Nothing lost: once their leases have passed, a drain runs every job a second time.
      await until(async () => await count(sql, 'select count(*) as n from jobs.job_queue where lease_until > now()') === 0,
        'the leases of the jobs not settled to pass');
      expect(await queue.drain(1000, Date.now() + 30_000)).toMatchObject({ succeeded: 600, failed: 0 });
      expect(await count(sql, `select count(*) as n from jobs.job where status = 'success'`)).toBe(600);
      expect(await count(sql, 'select count(*) as n from jobs.job_queue')).toBe(0);
      expect([...runs.values()].filter((n) => n === 2).length).toBe(600);
      expect([...runs.values()].every((n) => n <= 2)).toBe(true);
    } finally {
      release();
      await filler.end();
      await queue.close();
    }
  });
});
