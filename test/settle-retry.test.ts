// The settle at the end of a drain against a database that is briefly gone:
// it tries again about a second later rather than three times at once, and
// never past the drain's limit on its round trips (deadline + overrunMs, or
// overrunMs after hardSignal).
import pg from 'pg';
import { afterAll, beforeEach, describe, expect, inject, it } from 'vitest';
import type { Driver } from '../src/db/driver.js';
import { pgDriver } from '../src/db/pg.js';
import { createQueue, PgDrainError, type JobContext } from '../src/index.js';
import { testDb } from './support/db.js';
import { until, withAppName } from './support/drain-process.js';
import { proxiedUrl } from './support/tcp-proxy.js';

const db = await testDb();
const sql = db.sql;
// On the server's `postgres` database: it turns this file's database away and back.
const admin = new pg.Client({ connectionString: inject('serverUrl') });
await admin.connect();
afterAll(() => admin.end());

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
});

/** A promise and the function that resolves it. */
function gate(): [Promise<void>, () => void] {
  let open!: () => void;
  return [new Promise<void>((resolve) => (open = resolve)), () => open()];
}

const JOBS = 8;

/** A drain on a working connection finds nothing left, and jobs.job holds each job once, succeeded. */
async function expectAllSucceededOnce(): Promise<void> {
  const after = await createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: { work: async () => 'again' } })
    .drain(JOBS, Date.now() + 120_000);
  expect(after).toMatchObject({ claimed: 0, stoppedBy: 'empty' });
  expect(await sql(`select count(*)::int as n, count(distinct job_id)::int as ids from jobs.job
                    where status = 'success' and attempts = 1`)).toEqual([{ n: JOBS, ids: JOBS }]);
  expect(await sql('select count(*)::int as n from jobs.job_queue')).toEqual([{ n: 0 }]);
}

describe("a drain's final settle", () => {
  it('meets a database that refuses connections for half a second: it tries again a second later, and every finished job is settled once', async () => {
    const app = 'settle-retry-drain';
    const runs: string[] = [];
    const [finish, letFinish] = gate();
    const [reopened, letReopen] = gate();
    // The drain's settle statements that failed: the outage met.
    let settlesFailed = 0;
    // Half a second from the first failure (its timer set as it failed, before the drain's pause: Node fires it
    // first): a try sent in it came back to back, not a second later. The outage lasts at least that long.
    let quick = false;
    let triedQuick = 0;
    let outage = true;
    const driver = pgDriver(withAppName(db.url, app));
    const query = (async (text, params, options) => {
      const settle = text.includes('jobs.settle_arrays');
      if (settle && quick) triedQuick++;
      // A try after that half second, while the database is still away (a loaded machine's test is slow to let it
      // back): held until it is back, as if the outage had ended before it. Back-to-back tries are not held.
      if (settle && settlesFailed > 0 && !quick && outage) await reopened;
      try {
        return await driver.query(text, params, options);
      } catch (error) {
        if (settle && settlesFailed++ === 0) {
          quick = true;
          setTimeout(() => (quick = false), 500);
        }
        throw error;
      }
    }) as Driver['query'];
    const queue = createQueue({
      driver: { ...driver, query },
      tasks: { work: async (_b: unknown, ctx: JobContext) => { runs.push(ctx.job.id); await finish; return 'done'; } },
    });
    await queue.publishBulk(Array.from({ length: JOBS }, () => ({ task: 'work' })));
    const stop = new AbortController();
    try {
      // No flush before the drain's end: its final settle sends every outcome.
      const drained = queue.drain(JOBS, Date.now() + 600_000, { signal: stop.signal, flushIntervalMs: 60_000 }).catch((e: unknown) => e);
      await until(async () => runs.length === JOBS, 'every handler to run');
      // Stopped, the drain claims no more: what its handlers end with is left to its final settle.
      stop.abort();
      // The outage, before any handler can end: new connections refused (as
      // while a server restarts), the drain's open ones dropped.
      await admin.query(`alter database ${db.name} allow_connections false`);
      await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1', [app]);
      // Once the settle met the outage and half a second passed (longer than three tries back to back take,
      // milliseconds each), the database is let back: however late that comes, the tries after the pause wait for it.
      letFinish();
      await until(async () => settlesFailed > 0 && !quick, 'the final settle to meet the outage, and half a second more');
      await admin.query(`alter database ${db.name} allow_connections true`);
      outage = false;
      letReopen();

      // Three tries back to back would all have met the outage (in its first half second), and the drain rejected.
      const report = await drained;
      expect(report).toMatchObject({ claimed: JOBS, succeeded: JOBS, failed: 0, released: 0, stoppedBy: 'signal' });
      expect({ settlesFailed, triedQuick }).toEqual({ settlesFailed: 1, triedQuick: 0 });
    } finally {
      await admin.query(`alter database ${db.name} allow_connections true`);
      letReopen();
      await queue.close();
    }
    expect(new Set(runs).size).toBe(JOBS);
    await expectAllSucceededOnce();
  });

  it('against a database that never comes back stops trying at the drain\'s limit, and rejects with the failure its last try met', async () => {
    const { proxy, url: viaProxy } = await proxiedUrl(db.url);
    const running: string[] = [];
    const queue = createQueue({
      driver: pgDriver(viaProxy),
      // Each handler runs until the drain aborts it.
      tasks: { work: (_b: unknown, ctx: JobContext) => new Promise((resolve) => {
        running.push(ctx.job.id);
        ctx.signal.addEventListener('abort', resolve);
      }) },
    });
    await queue.publishBulk(Array.from({ length: JOBS }, () => ({ task: 'work' })));
    const hard = new AbortController();
    try {
      // The limit: overrunMs after hardSignal, far inside the settle's first pause (1 s).
      const drained = queue.drain(JOBS, Date.now() + 600_000, { hardSignal: hard.signal, overrunMs: 500 })
        .then(() => 'returned', (e: unknown) => e);
      await until(async () => running.length === JOBS, 'every handler to run');
      proxy.cut(); // for good: every connection dropped, every new one refused
      hard.abort(); // the handlers are given back at once: their releases are left to the final settle

      const error = await drained;
      expect(error, String(error)).toBeInstanceOf(PgDrainError);
      // What its last try met (a dropped or a refused connection): had it
      // paused past the limit, its next try would have been given up by the
      // limit itself ("no reply within 500 ms after the drain was told to stop at once").
      expect(error).toMatchObject({ code: 'database_unavailable',
        message: expect.stringMatching(/^database unavailable: (Connection terminated unexpectedly|connect ECONNREFUSED )/) });
    } finally {
      await proxy.close();
      await queue.close();
    }
    // Not settled: still leased by the drain that gave up. Once the leases end, the jobs run again.
    expect(await sql(`select count(*)::int as n from jobs.job_queue where lease_until > now() and attempt = 1`))
      .toEqual([{ n: JOBS }]);
    await sql('update jobs.job_queue set lease_until = now() where lease_until > now()'); // as if the leases had run out
    const report = await createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: { work: async () => 'done' } })
      .drain(JOBS, Date.now() + 120_000);
    expect(report).toMatchObject({ claimed: JOBS, succeeded: JOBS, stoppedBy: 'empty' });
    expect(await sql('select count(*)::int as n from jobs.job_queue')).toEqual([{ n: 0 }]);
  });
});
