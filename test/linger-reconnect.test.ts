// A lingering drain whose LISTEN session is lost: a job published while no
// session listens sent a NOTIFY nobody heard, so the drain claims once when
// its session is back rather than wait for its next poll. Over a real
// PostgreSQL; no timing assertions beyond the drains' own deadlines.
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { createQueue, type Driver, type TaskMap } from '../src/index.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';
import { tcpProxy } from './support/tcp-proxy.js';

const db = await testDb();
const HOUR = 3_600_000;
const ran: string[] = [];
const tasks: TaskMap = { note: async (body: { n: string }) => void ran.push(body.n) };

// Sessions held all along: while the test database refuses new connections,
// the test still terminates, publishes and looks with admin; server (on
// another database: none can refuse connections to its own) flips it.
const admin = new pg.Client({ connectionString: db.url });
const serverUrl = new URL(db.url);
serverUrl.pathname = '/postgres';
const server = new pg.Client({ connectionString: serverUrl.href });
beforeAll(() => Promise.all([admin.connect(), server.connect()]));
afterAll(() => Promise.all([admin.end(), server.end()]));
const sql = async <R>(text: string, params?: unknown[]) => (await admin.query(text, params)).rows as R[];

/** Refuses (false) or accepts new connections to the test database: a server down for new sessions. */
const allowConnections = (allow: boolean) => server.query(`alter database ${db.name} with allow_connections ${allow}`);

/** The drain's LISTEN sessions on this database. */
const listeners = async () => (await sql<{ pid: number }>(
  `select pid from pg_stat_activity where datname = current_database() and application_name = 'pgdrain-events'`))
  .map((r) => r.pid);

const succeeded = async (n: string) =>
  (await sql(`select 1 from jobs.job where status = 'success' and body->>'n' = $1`, [n])).length > 0;

/** db.driver (onQueued optionally from another driver), counting the drain's claims. */
function counting(onQueued: Driver['onQueued'] = db.driver.onQueued) {
  let claims = 0;
  const driver: Driver = {
    ...db.driver, onQueued, close: async () => {},
    query: (text, params, options) => {
      if (text.includes('jobs.claim_json(')) claims++;
      return db.driver.query(text, params, options);
    },
  };
  return { queue: createQueue({ driver, tasks }), claims: () => claims };
}

/** Unhandled rejections while fn runs. */
async function unhandledDuring(fn: () => Promise<void>): Promise<unknown[]> {
  const seen: unknown[] = [];
  const onRejection = (reason: unknown) => void seen.push(reason);
  process.on('unhandledRejection', onRejection);
  try {
    await fn();
    await new Promise((r) => setTimeout(r, 50)); // a rejection is reported a turn after it happens
  } finally {
    process.off('unhandledRejection', onRejection);
  }
  return seen;
}

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
  ran.length = 0;
});

describe('a lingering drain whose LISTEN session is lost', () => {
  it('claims once its session is back: a job published while none listened runs with no poll before the deadline', async () => {
    const { queue, claims } = counting();
    const stop = new AbortController();
    // The poll (60 s) comes after the deadline (20 s): only the claim on reconnect can run the job.
    const drained = queue.drain(10, Date.now() + 20_000, { lingerMs: HOUR, pollMs: 60_000, signal: stop.signal });
    let over = false;
    void drained.finally(() => (over = true));
    let report;
    try {
      const [pid] = await until(async () => { const l = await listeners(); return l.length === 1 && l; }, 'the drain to LISTEN');
      // The claim that found nothing, and the one once it listened: none is in flight below.
      await until(async () => claims() >= 2, 'the claim after LISTEN');
      const before = claims();
      await allowConnections(false);
      await sql('select pg_terminate_backend($1)', [pid]);
      await until(async () => (await listeners()).length === 0, 'the LISTEN session to end');
      // Published while no session listens (none can open): its NOTIFY reaches no one.
      await sql(`select jobs.publish('note', '{"n":"gap"}'::jsonb, timeout_seconds => 5)`);
      expect(await listeners()).toEqual([]);
      expect(claims()).toBe(before);
      await allowConnections(true);
      await until(async () => over || succeeded('gap'), 'the job published in the gap to run (or the drain to end)');
    } finally {
      await allowConnections(true);
      stop.abort();
      report = await drained;
    }
    // Without the claim on reconnect it ends at its deadline: claimed 0, stoppedBy 'empty'.
    expect(report).toMatchObject({ claimed: 1, succeeded: 1, stoppedBy: 'signal' });
    expect(ran).toEqual(['gap']);
  });

  it('whose session flaps claims once per reconnect, never more', async () => {
    const { queue, claims } = counting();
    const stop = new AbortController();
    const drained = queue.drain(10, Date.now() + 40_000, { lingerMs: HOUR, pollMs: 60_000, signal: stop.signal });
    try {
      let [pid] = await until(async () => { const l = await listeners(); return l.length === 1 && l; }, 'the drain to LISTEN');
      await until(async () => claims() >= 2, 'the claim after LISTEN');
      const before = claims();
      for (let i = 1; i <= 3; i++) {
        await sql('select pg_terminate_backend($1)', [pid]);
        [pid] = await until(async () => { const l = await listeners(); return l.length === 1 && l[0] !== pid && l; },
          `LISTEN session ${i + 1}`);
        await until(async () => claims() >= before + i, `the claim after reconnect ${i}`);
      }
      stop.abort();
      const report = await drained;
      expect(report).toMatchObject({ claimed: 0, stoppedBy: 'signal' });
      expect(claims()).toBe(before + 3);
    } finally {
      stop.abort();
      await drained;
    }
  });

  it('that cannot come back (new connections refused to the end) still polls and ends by its deadline, no unhandled rejection', async () => {
    const { queue } = counting();
    let report: Awaited<ReturnType<typeof queue.drain>> | undefined;
    const unhandled = await unhandledDuring(async () => {
      // pollMs 200: the drain's claims reuse its pool's open connection; only the LISTEN needs a new one.
      const drained = queue.drain(10, Date.now() + 5000, { lingerMs: HOUR, pollMs: 200, settleMarginMs: 0 });
      try {
        const [pid] = await until(async () => { const l = await listeners(); return l.length === 1 && l; }, 'the drain to LISTEN');
        await allowConnections(false);
        await sql('select pg_terminate_backend($1)', [pid]);
        await until(async () => (await listeners()).length === 0, 'the LISTEN session to end');
        await sql(`select jobs.publish('note', '{"n":"polled"}'::jsonb, timeout_seconds => 1)`);
      } finally {
        report = await drained; // its deadline ends it, before the next test
        await allowConnections(true);
      }
    });
    expect(unhandled).toEqual([]);
    expect(report).toMatchObject({ claimed: 1, succeeded: 1, stoppedBy: 'empty' });
    expect(ran).toEqual(['polled']);
  });
});

describe('a lingering drain whose LISTEN cannot connect at all', () => {
  it('polls: a job published while it lingers runs, and it ends by its deadline with no unhandled rejection', async () => {
    // Its LISTEN goes to a server that refuses every connection; its claims to the test database.
    const proxy = await tcpProxy('127.0.0.1', Number(new URL(db.url).port));
    proxy.cut();
    const unreachable = new URL(db.url);
    unreachable.port = String(proxy.port);
    const listenDriver = pgDriver(unreachable.href);
    const { queue, claims } = counting(listenDriver.onQueued);
    let report: Awaited<ReturnType<typeof queue.drain>> | undefined;
    try {
      const unhandled = await unhandledDuring(async () => {
        const drained = queue.drain(10, Date.now() + 4000, { lingerMs: HOUR, pollMs: 200, settleMarginMs: 0 });
        await until(async () => claims() >= 2, 'the drain to poll');
        await sql(`select jobs.publish('note', '{"n":"polled"}'::jsonb, timeout_seconds => 1)`);
        report = await drained;
      });
      expect(unhandled).toEqual([]);
      expect(report).toMatchObject({ claimed: 1, succeeded: 1, stoppedBy: 'empty' });
      expect(ran).toEqual(['polled']);
    } finally {
      await listenDriver.close();
      await proxy.close();
    }
  });
});
