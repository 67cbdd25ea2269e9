// A database that stops answering: the network between drain and server
// freezes (a real TCP proxy stops forwarding, its sockets left open), so no
// error ever comes, only silence. A drain must still return near its deadline,
// and nothing may be lost.
import { createServer } from 'node:net';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { createQueue, PgDrainError, type JobContext, type TaskMap } from '../src/index.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';
import { proxiedUrl, type TcpProxy } from './support/tcp-proxy.js';

const db = await testDb();
const sql = db.sql;
let proxy: TcpProxy;
let viaProxy: string;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
  ({ proxy, url: viaProxy } = await proxiedUrl(db.url));
});
afterEach(async () => proxy.close());

/** A queue over the proxy whose `freeze.now` task freezes the network the first time it runs. */
function frozenMidDrain(): { queue: ReturnType<typeof createQueue>; ran: string[] } {
  const ran: string[] = [];
  const tasks: TaskMap = {
    freeze: { now: async (_b: unknown, ctx: JobContext) => {
      ran.push(ctx.job.id);
      proxy.freeze();
    } },
    ok: async (_b: unknown, ctx: JobContext) => void ran.push(ctx.job.id),
  };
  return { queue: createQueue({ driver: pgDriver(viaProxy), tasks }), ran };
}

const left = async () => (await sql<{ n: number }>('select count(*)::int as n from jobs.job_queue'))[0]!.n;

/** After the frozen drain: the leases it held end, and a drain on a working connection finishes every job once. */
async function expectNothingLost(jobs: number): Promise<void> {
  await sql(`update jobs.job_queue set lease_until = now() where lease_until > now()`); // as if the leases had run out
  const tasks = { ok: async () => null, freeze: { now: async () => null } };
  const report = await createQueue({ driver: { ...db.driver, close: async () => {} }, tasks }).drain(100, Date.now() + 120_000);
  expect(report).toMatchObject({ stoppedBy: 'empty', failed: 0 });
  expect(await left()).toBe(0);
  expect(await sql(`select count(*)::int as n, count(distinct job_id)::int as ids from jobs.job where status = 'success'`))
    .toEqual([{ n: jobs, ids: jobs }]);
}

describe('drain() against a database that stops answering', () => {
  it('rejects with database_unavailable overrunMs after its deadline; its jobs run again once their leases end', async () => {
    const { queue, ran } = frozenMidDrain();
    await queue.publish('freeze.now', {}, { priority: 1, timeoutSeconds: 1 });
    await queue.publishBulk(Array.from({ length: 20 }, () => ({ task: 'ok', timeoutSeconds: 1 })));
    try {
      const outcome = await queue.drain(5, Date.now() + 3000, { overrunMs: 300, flushIntervalMs: 10 })
        .then(() => 'returned', (e: unknown) => e);
      expect(outcome, String(outcome)).toBeInstanceOf(PgDrainError);
      // Then what it had not settled, if anything (src/unrecorded.ts).
      expect(outcome).toMatchObject({ code: 'database_unavailable', message: expect.stringMatching(
        /^database unavailable: no reply within 300 ms after the drain's deadline(; \d+ jobs?'s? outcomes? (was|were) not recorded .+)?$/) });
      expect(ran.length).toBeGreaterThan(0);
    } finally {
      await queue.close(); // returns: the abandoned statements' connections were ended
    }
    await expectNothingLost(21);
  });

  it.each([
    ['its signal, with graceMs,', (stop: AbortSignal) => ({ signal: stop, graceMs: 100 }), "after the drain's grace period"],
    ['its hardSignal', (stop: AbortSignal) => ({ hardSignal: stop }), 'after the drain was told to stop at once'],
  ] as const)('%s moves that limit to overrunMs after it (and the grace), long before a far deadline',
              async (_, stops, after) => {
    const { queue, ran } = frozenMidDrain();
    await queue.publish('freeze.now', {});
    const stop = new AbortController();
    try {
      const draining = queue.drain(5, Date.now() + 3_600_000, { overrunMs: 200, ...stops(stop.signal) })
        .then(() => 'returned', (e: unknown) => e);
      // Its handler ran, so the network is frozen. (Not the job's lease, seen over another
      // connection: once, under load, the stop came before the claim's answer reached the
      // drain, which then gave the job back over a network still working and returned.)
      await until(async () => ran.length === 1, 'the job to run and freeze the network', 30_000, 5);
      stop.abort();
      expect(await draining).toMatchObject({ code: 'database_unavailable', message: expect.stringMatching(new RegExp(
        `^database unavailable: no reply within 200 ms ${after}(; 1 job's outcome was not recorded .+)?$`)) });
    } finally {
      await queue.close();
    }
    await expectNothingLost(1);
  });
});

describe('pgDriver and a statement given up on', () => {
  it('when its signal aborts, the statement fails and its connection leaves the pool', async () => {
    const pool = new pg.Pool({ connectionString: viaProxy, max: 2 });
    try {
      const driver = pgDriver(pool);
      await driver.query('select 1');
      expect(pool.totalCount).toBe(1);
      proxy.freeze();
      const giveUp = new AbortController();
      const reply = driver.query('select 2', [], { signal: giveUp.signal }).then(() => 'answered', (e: unknown) => e);
      // Sent once the pool handed it the idle client (callbacks and promises, no I/O): given up before, it goes back to the pool.
      await new Promise((sent) => setImmediate(sent));
      expect(pool.idleCount).toBe(0);
      giveUp.abort();
      expect(await reply).toBeInstanceOf(Error);
      expect(pool.totalCount).toBe(0);
    } finally {
      await pool.end(); // would wait forever for a client still waiting for its reply
    }
  });

  it('a warm() that fails fails the statements that waited for it, with no second connection attempt', async () => {
    // A server that accepts and at once hangs up: every attempt is seen, every one fails.
    let attempts = 0;
    const server = createServer((s) => {
      attempts++;
      s.destroy();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const driver = pgDriver(`postgres://nobody@127.0.0.1:${(server.address() as { port: number }).port}/none`);
    try {
      const warming = driver.warm!().then(() => 'connected', (e: unknown) => e);
      const query = driver.query('select 1').then(() => 'answered', (e: unknown) => e);
      const [warmError, queryError] = await Promise.all([warming, query]);
      expect(warmError).toBeInstanceOf(Error);
      expect(queryError).toBe(warmError);
      expect(attempts).toBe(1);
    } finally {
      await driver.close();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
