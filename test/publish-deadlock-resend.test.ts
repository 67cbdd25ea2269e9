// A queue call whose statement PostgreSQL rolls back as a deadlock victim
// (40P01) is sent again when the statement was a transaction of its own (a
// pool, a pgdrain driver), and not when it ran in the caller's transaction
// (aborted whole: the caller runs it again). src/send.ts.
// The deadlock is real, and the call is its victim with no timing: three
// serial keys k1 < k2 < k3 in their locks' order; `holder` holds k2 and
// `other` (deadlock_timeout 1 min) holds k3. The call takes k1 and waits for
// k2; `other` asks for k1 and waits for the call; `holder` commits, and the
// call, waiting now for k3, closes the cycle: its own deadlock check, 20 ms
// into that wait (its connection's deadlock_timeout), finds it first.
import pg from 'pg';
import { afterAll, beforeEach, expect, it } from 'vitest';
import { createQueue, publishBulk, type Driver } from '../src/index.js';
import { createApp } from '../src/http/index.js';
import { neonHttpDriver } from '../src/db/neon-http.js';
import { neonDriver } from '../src/db/neon.js';
import { pgDriver } from '../src/db/pg.js';
import { runsAlone } from '../src/send.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;

const victimUrl = new URL(db.url);
victimUrl.searchParams.set('options', '-c deadlock_timeout=20ms');
victimUrl.searchParams.set('application_name', 'victim');
const pool = new pg.Pool({ connectionString: victimUrl.href, max: 2 });
const queue = createQueue({ connectionString: victimUrl.href });
afterAll(async () => {
  await pool.end();
  await queue.close();
});

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
});

/** Three serial keys in their locks' order (jobs.lock_serial_keys: hashtext). */
const [k1, k2, k3] = (await sql<{ k: string }>(`select k from unnest(array['sa', 'sb', 'sc']) k order by hashtext(k), k`))
  .map((r) => r.k) as [string, string, string];

const session = async (): Promise<pg.Client> => {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  await c.query(`set deadlock_timeout = '1min'`);
  return c;
};
const lockKey = (c: pg.Client, key: string) => c.query('select pg_advisory_xact_lock(736038, hashtext($1))', [key]);
const waiting = async (where: string) =>
  (await sql(`select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and ${where}`)).length > 0;

/** Runs call (taking k1, k2, k3 in order) into the deadlock above; answers its outcome. */
async function loseDeadlock<T>(call: () => Promise<T>): Promise<{ value?: T; error?: { code?: string } }> {
  const [holder, other] = [await session(), await session()];
  try {
    await holder.query('begin');
    await lockKey(holder, k2);
    await other.query('begin');
    await lockKey(other, k3);
    let settled = false;
    const outcome = call().then((value) => ({ value }), (error: { code?: string }) => ({ error }))
      .finally(() => { settled = true; });
    await until(async () => settled || waiting(`application_name = 'victim'`), 'the call to wait for k2');
    const otherPid = (await other.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
    const tookK1 = lockKey(other, k1);
    await until(async () => settled || waiting(`pid = ${otherPid}`), 'the other session to wait for k1');
    await holder.query('commit');
    // The call is rolled back as the victim: the other session gets k1.
    await tookK1;
    await other.query('commit');
    return await outcome;
  } finally {
    await holder.end();
    await other.end();
  }
}

const threeJobs = [{ task: 'p1', serialKey: k1 }, { task: 'p2', serialKey: k2 }, { task: 'p3', serialKey: k3 }];
const ids = async () => (await sql<{ id: string }>(`select job_id::text as id from jobs.job_queue order by job_id`)).map((r) => r.id);

it.each([
  ['a node-postgres Pool', () => publishBulk(pool, threeJobs)],
  ['a node-postgres Pool, with a signal', () => publishBulk(pool, threeJobs, undefined, { signal: new AbortController().signal })],
  ['the queue (pgDriver)', () => queue.publishBulk(threeJobs)],
  ['the queue (pgDriver), with a signal', () => queue.publishBulk(threeJobs, undefined, { signal: new AbortController().signal })],
])('a publishBulk on %s rolled back as a deadlock victim is sent again: each job exists once', async (_, call) => {
  const { value, error } = await loseDeadlock(call);
  // Before: it rejected with the deadlock (40P01), nothing published.
  expect(error).toBeUndefined();
  expect(value).toHaveLength(3);
  expect(await ids()).toEqual(value);
  expect(await sql(`select task, serial_key from jobs.job_queue order by job_id`)).toEqual([
    { task: 'p1', serial_key: k1 }, { task: 'p2', serial_key: k2 }, { task: 'p3', serial_key: k3 }]);
});

it('an admin call on the queue (redrive) rolled back as a deadlock victim is sent again', async () => {
  const jobs = await queue.publishBulk(threeJobs);
  expect(await queue.fail(jobs, 'by test')).toBe(3);
  const { value, error } = await loseDeadlock(() => queue.redrive({ ids: jobs }));
  // Before: it rejected with the deadlock (40P01), the dead letters left as they were.
  expect(error).toBeUndefined();
  expect(value).toEqual({ redriven: 3, heldByKey: 0, serialLater: 0 });
  expect(await ids()).toEqual(jobs);
});

it('a dashboard action on the queue (redrive of a queue) rolled back as a deadlock victim is sent again, as the CLI\'s', async () => {
  const token = 'deadlock-dashboard-token-0123456789';
  const app = createApp({ queue, token, dashboardActions: true });
  const headers = { authorization: `Basic ${Buffer.from(`ops:${token}`).toString('base64')}` };
  await sql(`select jobs.create_queue('dq')`);
  const jobs = await queue.publishBulk(threeJobs, 'dq');
  expect(await queue.fail(jobs, 'by test')).toBe(3);
  // The token of the page's button for this redrive.
  const page = await (await app.request('/dashboard', { headers })).text();
  const csrf = /action="dashboard\/redrive"><input type="hidden" name="csrf" value="([^"]+)"><input type="hidden" name="queue" value="dq">/
    .exec(page)![1]!;
  const { value, error } = await loseDeadlock(async () => app.request('/dashboard/redrive', { method: 'POST',
    body: new URLSearchParams({ queue: 'dq', csrf }).toString(),
    headers: { ...headers, origin: 'http://localhost', 'content-type': 'application/x-www-form-urlencoded' } }));
  expect(error).toBeUndefined();
  // Before: a 500 page ("internal error"), the dead letters left as they were.
  expect(value!.status).toBe(303);
  expect(decodeURIComponent(value!.headers.get('location')!)).toContain('Queue dq: 3 failed jobs redriven.');
  expect(await ids()).toEqual(jobs);
});

it.each([
  ['a pg client', async (f: (q: pg.PoolClient) => Promise<unknown>) => {
    const client = await pool.connect();
    try {
      await client.query('begin');
      return await f(client);
    } finally {
      await client.query('rollback');
      client.release();
    }
  }],
  ['queue.driver.transaction', (f: (q: Driver) => Promise<unknown>) => queue.driver.transaction((tx) => f(tx as Driver))],
])("a publishBulk through %s in the caller's transaction is not sent again: the deadlock is the caller's", async (_, inTx) => {
  const { error } = await loseDeadlock(() => inTx((q) => publishBulk(q, threeJobs)));
  // Sent again in the aborted transaction, it would fail with 25P02 (or land outside it).
  expect(error?.code).toBe('40P01');
  expect(await ids()).toEqual([]);
});

it("a queue over pgDriver(client) of the caller's, in its transaction, is not sent again: the deadlock is the caller's", async () => {
  // driver-check's message offers pgDriver for a client too; the statements then run on the caller's session.
  const client = new pg.Client({ connectionString: victimUrl.href });
  await client.connect();
  const own = createQueue({ driver: pgDriver(client as unknown as pg.Pool) });
  try {
    expect(runsAlone(own.driver)).toBe(false);
    await client.query('begin');
    const { error } = await loseDeadlock(() => own.publishBulk(threeJobs));
    // Before: sent again in the aborted transaction, it failed with 25P02, hiding the deadlock from the caller's retry.
    expect(error?.code).toBe('40P01');
    await client.query('rollback');
    expect(await ids()).toEqual([]);
  } finally {
    await client.end();
  }
});

it('runsAlone: pgdrain pool drivers, Neon HTTP and a pg Pool; not a client, a transaction, an unmarked driver', async () => {
  const neonPool = neonDriver('postgres://u@127.0.0.1:1/db');
  const client = new pg.Client({ connectionString: db.url });
  try {
    expect([runsAlone(queue.driver), runsAlone(pgDriver(pool)), runsAlone(neonPool),
            runsAlone(neonHttpDriver('postgres://u@127.0.0.1:1/db')), runsAlone(pool)]).toEqual([true, true, true, true, true]);
    const pooled = await pool.connect();
    const inTx = await queue.driver.transaction(async (tx) => runsAlone(tx));
    expect([runsAlone(client), runsAlone(pooled), inTx, runsAlone({ query: queue.driver.query })]).toEqual([false, false, false, false]);
    pooled.release();
  } finally {
    await neonPool.close();
  }
});
