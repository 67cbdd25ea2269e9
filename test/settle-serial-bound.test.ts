// A drain's settle takes at most 500 serial keys per statement (jobs.max_serial_keys()).
// Each serial-key job a statement ends takes its key's advisory lock until
// commit: one entry of PostgreSQL's lock table (about max_locks_per_transaction
// x max_connections entries, shared by every session). A drain of thousands
// of keyed jobs settling them all in one statement failed with 53200 ("out of
// shared memory"), settled none, and failed the same way on every rerun.
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { claimedIds, type ClaimResult } from '../src/claim-answer.js';
import type { Queryable } from '../src/db/driver.js';
import { createQueue } from '../src/index.js';
import type { Outcome } from '../src/outcome-arrays.js';
import type { Pause } from '../src/settle-pause.js';
import { Settler } from '../src/settler.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';
import { expectLocksNotToFit, useSmallLockTable, type Sql } from './support/small-lock-table.js';
import { count } from './support/sql-count.js';

/** Publishes `count` jobs of task, each with its own serial key `<prefix><i>`, in bulks of 500. */
async function publishKeyed(sql: Sql, task: string, count: number, prefix = 'key:', maxRetries = 3): Promise<void> {
  for (let from = 0; from < count; from += 500) {
    const n = Math.min(500, count - from);
    await sql(`select jobs.publish_arrays(array_fill($1::text, array[$3::int]),
                 timeouts => array_fill(30::numeric, array[$3::int]), max_retries => array_fill($5::int, array[$3::int]),
                 serial_keys => (select array_agg($4 || g) from generate_series($2::int, $2::int + $3::int - 1) g))`,
              [task, from, n, prefix, maxRetries]);
  }
}

const db = await testDb();

// Its own cluster, with a lock table of about 3,200 entries (support/small-lock-table.ts).
describe('on a server with a small lock table', () => {
  const locks = useSmallLockTable();
  const sql = locks.sql;

  it('a drain of 8,000 jobs of distinct serial keys settles them all, each run once', async () => {
    const n = 8000;
    await publishKeyed(sql, 'noop', n);
    // One statement taking every key's lock does not fit this lock table.
    await expectLocksNotToFit(locks.url, n);
    const runs = new Map<string, number>();
    const tasks = { noop: async (_b: unknown, ctx: { job: { id: string } }) => {
      runs.set(ctx.job.id, (runs.get(ctx.job.id) ?? 0) + 1);
      return null;
    } };
    const queue = createQueue({ connectionString: locks.url, tasks });
    try {
      const report = await queue.drain(10_000, Date.now() + 60_000);
      expect(report).toMatchObject({ claimed: n, succeeded: n, failed: 0, retried: 0, released: 0, stale: 0 });
    } finally {
      await queue.close();
    }
    expect(runs.size).toBe(n);
    expect([...runs.values()].every((r) => r === 1)).toBe(true);
    expect(await count(sql, `select count(*) as n from jobs.job where status = 'success' and attempts = 1`)).toBe(n);
    expect(await count(sql, 'select count(*) as n from jobs.job_queue')).toBe(0);
  }, 120_000);
});

// The settler on the shared test server: what each of its statements carries.
describe('the settler', () => {
  let pool: pg.Pool;
  let closing = false;
  beforeAll(() => {
    // Short lock waits: a settle that meets a key's lock held elsewhere fails rather than waits.
    pool = new pg.Pool({ connectionString: db.url, max: 2, options: '-c lock_timeout=300' });
    // pool.end() resolves before its sockets close: the file's database, dropped next, can still reach one.
    pool.on('error', (error) => {
      if (!closing) throw error;
    });
  });
  afterAll(async () => {
    closing = true;
    await pool?.end();
  });
  beforeEach(async () => {
    await db.sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
  });

  /** The real database, with the ids of each statement that settles outcomes recorded. */
  const recording = (statements: string[][]): Queryable => ({
    async query(text, params) {
      if (text.includes('jobs.settle_arrays')) statements.push(String(params![0]).slice(1, -1).split(',').filter(Boolean));
      return await pool.query(text, params as unknown[]) as never;
    },
  });
  const claim = async (n: number) =>
    (await db.sql<{ r: ClaimResult }>(`select jobs.claim_json($1, worker_id => 'w') as r`, [n]))[0]!.r;
  const ack = (id: string, attempt = 1): Outcome => ({ id, attempt, outcome: 'ack', result: null, ms: 1 });
  const count = async (text: string) => Number((await db.sql<{ n: string }>(text))[0]!.n);

  it('a statement carries every other outcome, and at most 500 that end a serial-key job', async () => {
    const sql: Sql = db.sql;
    await publishKeyed(sql, 'ends', 1200, 'end:', 0);
    await publishKeyed(sql, 'keeps', 300, 'keep:', 3);
    await sql(`select jobs.publish_arrays(array_fill('plain'::text, array[300]))`);
    const { jobs } = await claim(2000);
    const byTask = (task: string) => claimedIds(jobs!).filter((_, i) => jobs!.task[i] === task);
    const [ends, keeps, plain] = [byTask('ends'), byTask('keeps'), byTask('plain')];
    expect([ends.length, keeps.length, plain.length]).toEqual([1200, 300, 300]);
    expect(new Set(jobs!.keyed)).toEqual(new Set([...ends, ...keeps]));

    const statements: string[][] = [];
    const settler = new Settler(recording(statements), 60_000, 'w');
    settler.claimedKeyed(jobs!.keyed!, jobs!.keyedMaxRetries!);
    // Ends: acks, fails, and nacks with no retry left (max_retries 0). Keeps the key's turn: retries and releases.
    ends.forEach((id, i) => settler.add(i < 400 ? ack(id) : i < 800 ? { id, attempt: 1, outcome: 'fail', error: 'x' }
      : { id, attempt: 1, outcome: 'nack', error: 'x' }));
    keeps.forEach((id, i) => settler.add(i < 150 ? { id, attempt: 1, outcome: 'nack', error: 'x' }
      : { id, attempt: 1, outcome: 'release' }));
    plain.forEach((id) => settler.add(ack(id)));

    const endSet = new Set(ends);
    await settler.close();

    expect(statements.map((ids) => ids.filter((id) => endSet.has(id)).length)).toEqual([500, 500, 200]);
    expect(statements[0]!.length).toBe(500 + 300 + 300);
    expect(new Set(statements.flat()).size).toBe(1800);
    expect(settler.totals).toEqual({ succeeded: 700, failed: 800, cancelled: 0, retried: 150, released: 150, stale: 0 });
    expect(await count('select count(*) as n from jobs.job')).toBe(1500);
    expect(await count(`select count(*) as n from jobs.job_queue where task = 'keeps' and lease_until is null`)).toBe(300);
  });

  // A release with a reason of a job released so 25 times in a row is a nack (jobs.unstarted_bound): on its last
  // attempt it ends the job and takes its key's lock. The settler counted such releases as keeping the key's turn:
  // 600 went in one statement.
  it('releases that the unstarted bound makes ends of serial-key jobs count toward the 500', async () => {
    await publishKeyed(db.sql, 'unrun', 600, 'unrun:', 0);
    await db.sql('update jobs.job_queue set unstarted = 25');
    const { jobs } = await claim(600);
    const statements: string[][] = [];
    const settler = new Settler(recording(statements), 60_000, 'w');
    settler.claimedKeyed(jobs!.keyed!, jobs!.keyedMaxRetries!);
    for (const id of claimedIds(jobs!)) settler.add({ id, attempt: 1, outcome: 'release', error: 'no connection' });
    await settler.close();
    // Unfixed: [600].
    expect(statements.map((ids) => ids.length)).toEqual([500, 100]);
    expect(settler.totals).toMatchObject({ failed: 600, released: 0, stale: 0 });
    expect(await count(`select count(*) as n from jobs.job where status = 'failure'
                          and error like 'never started: released unstarted 25 times in a row%'`)).toBe(600);
  });

  it('outcomes held back go by themselves, with no claim to carry them', async () => {
    await publishKeyed(db.sql, 'ends', 1200, 'end:', 0);
    const { jobs } = await claim(1200);
    const statements: string[][] = [];
    const settler = new Settler(recording(statements), 10, 'w');
    settler.claimedKeyed(jobs!.keyed!, jobs!.keyedMaxRetries!);
    for (const id of claimedIds(jobs!)) settler.add(ack(id));
    await until(async () => await count('select count(*) as n from jobs.job_queue') === 0, 'the 1,200 to be settled');
    expect(statements.map((ids) => ids.length)).toEqual([500, 500, 200]);
    expect(settler.totals.succeeded).toBe(1200);
    expect(settler.hasBuffered()).toBe(false);
    await settler.close();
  });

  // A claim expires passed leases (jobs.pick): sent while this drain still
  // held finished jobs' acks, it expired them, and they ran again (reviewer
  // V: with 0.5 s timeouts, 17,500 of 20,000 succeeded jobs ended as timed out).
  it('a claim waits for the ends held back past what it carries: none of them is left for its expiry', async () => {
    await publishKeyed(db.sql, 'ends', 1700, 'end:', 0);
    await db.sql(`select jobs.publish_arrays(array_fill('plain'::text, array[100]))`);
    const { jobs } = await claim(1800);
    const statements: string[][] = [];
    // No flush within the test: only take() sends the held-back ones.
    const settler = new Settler(recording(statements), 60_000, 'w');
    settler.claimedKeyed(jobs!.keyed!, jobs!.keyedMaxRetries!);
    const ids = claimedIds(jobs!).sort((a, b) => Number(a) - Number(b));
    for (const id of ids) settler.add(ack(id));
    const taken = await settler.take();
    // Settled before take() answered, in statements of 500 keyed ends: all of them, the claim carries none.
    expect(statements.map((s) => s.length)).toEqual([500 + 100, 500, 500, 200]);
    expect(taken).toEqual([]);
    expect(await count('select count(*) as n from jobs.job_queue')).toBe(0);
    expect(await count(`select count(*) as n from jobs.job where status = 'success' and attempts = 1`)).toBe(1800);
    await settler.close();
  });

  it('a settle that fails keeps the outcomes it held back: after its pause, every one is settled', async () => {
    await publishKeyed(db.sql, 'ends', 1100, 'end:', 0);
    const { jobs } = await claim(1100);
    const ids = claimedIds(jobs!).sort((a, b) => Number(a) - Number(b));
    // Another session holds the key of a job of the first statement: that settle fails (lock_timeout).
    const holder = await pool.connect();
    const { key } = (await holder.query<{ key: string }>('select serial_key as key from jobs.job_queue where job_id = $1', [ids[0]])).rows[0]!;
    await holder.query('begin');
    await holder.query('select pg_advisory_xact_lock(736038, hashtext($1))', [key]);
    const pauses: number[] = [];
    const pause: Pause = async (ms) => {
      pauses.push(ms);
      await holder.query('rollback');
      return true;
    };
    const statements: string[][] = [];
    const settler = new Settler(recording(statements), 60_000, 'w', pause);
    settler.claimedKeyed(jobs!.keyed!, jobs!.keyedMaxRetries!);
    try {
      for (const id of ids) settler.add(ack(id));
      await settler.close();
    } finally {
      holder.release();
    }
    expect(pauses).toEqual([1000]);
    expect(statements.map((s) => s.length)).toEqual([500, 500, 500, 100]);
    expect(settler.totals).toMatchObject({ succeeded: 1100, stale: 0 });
    expect(await count(`select count(*) as n from jobs.job where status = 'success' and attempts = 1`)).toBe(1100);
    expect(await count('select count(*) as n from jobs.job_queue')).toBe(0);
  });
});
