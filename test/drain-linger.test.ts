// Fast pickup: a drain with lingerMs waits on an empty queue for new work,
// woken by publish's NOTIFY (pgDriver) or by polling (every driver), over a
// real PostgreSQL. No timing assertions: each test waits for a state.
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { neonHttpDriver } from '../src/db/neon-http.js';
import { createQueue, ValidationError, type DrainReport, type Driver, type TaskMap } from '../src/index.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';
import { startNeonHttpServer } from './support/neon-http-server.js';

const db = await testDb();
const sql = db.sql;
const endpoint = await startNeonHttpServer(); // stands in for Neon's HTTP SQL endpoint
afterAll(() => endpoint.close());

const ran: string[] = [];
const tasks: TaskMap = { note: async (body: { n: string }) => void ran.push(body.n) };
const HOUR = 3_600_000;
// A drain claims only jobs whose timeout fits its budget: these fit the tests' short deadlines.
const FITS = { timeoutSeconds: 5 };

/** A queue on the test database's pgDriver (which can LISTEN), or on the given driver. */
function queueOn(driver: Driver = db.driver) {
  return createQueue({ driver: { ...driver, close: async () => {} }, tasks });
}

/** db.driver, counting the drain's claims. */
function countingClaims(): { driver: Driver; claims: () => number } {
  let claims = 0;
  const driver: Driver = {
    ...db.driver,
    query: (text, params, options) => {
      if (text.includes('jobs.claim_json(')) claims++;
      return db.driver.query(text, params, options);
    },
  };
  return { driver, claims: () => claims };
}

/** This database's LISTEN sessions (the drain's, opened while it lingers). */
async function listeners(): Promise<number[]> {
  const rows = await sql<{ pid: number }>(
    `select pid from pg_stat_activity where datname = current_database() and query ilike 'listen %'`);
  return rows.map((r) => r.pid);
}

const succeeded = async (n: string) =>
  (await sql(`select 1 from jobs.job where status = 'success' and body->>'n' = $1`, [n])).length > 0;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
  ran.length = 0;
});

describe('drain with lingerMs', () => {
  it('runs a job published while it waits on an empty queue, woken by NOTIFY; then returns once idle for lingerMs', async () => {
    const { driver, claims } = countingClaims();
    const q = queueOn(driver);
    // No poll within the test: only the NOTIFY can wake it.
    const drained = q.drain(10, Date.now() + 50_000, { lingerMs: 1500, pollMs: HOUR });
    await until(async () => (await listeners()).length === 1, 'the lingering drain to LISTEN');
    // The claim that finds nothing, and the one once it listens (for what came in between).
    await until(async () => claims() >= 2, 'the claim after LISTEN');
    await q.publish('note', { n: 'late' }, FITS);
    const report = await drained;
    expect(report).toMatchObject({ claimed: 1, succeeded: 1, failed: 0, stoppedBy: 'empty' });
    expect(ran).toEqual(['late']);
    // Woken once by the NOTIFY; once its job had run, the queue empty again, it lingered without polling.
    expect(claims()).toBeLessThanOrEqual(5);
    // Its LISTEN session ended with it.
    await until(async () => (await listeners()).length === 0, 'the LISTEN session to close');
  });

  it('at its deadline an idle drain returns with stoppedBy empty', async () => {
    const drained = queueOn().drain(10, Date.now() + 4000, { lingerMs: HOUR, settleMarginMs: 0 });
    await until(async () => (await listeners()).length === 1, 'the lingering drain to LISTEN');
    expect(await drained).toMatchObject({ claimed: 0, stoppedBy: 'empty' });
    await until(async () => (await listeners()).length === 0, 'the LISTEN session to close');
  });

  it('with a driver that cannot LISTEN (neon-http), polls: a job published while it lingers runs', async () => {
    const q = queueOn(neonHttpDriver(db.url, { fetchEndpoint: endpoint.endpoint }));
    const stop = new AbortController();
    const before = endpoint.requests;
    const drained = q.drain(10, Date.now() + 50_000, { lingerMs: HOUR, pollMs: 100, signal: stop.signal });
    // Two claims: it found the queue empty and polled again.
    await until(async () => endpoint.requests - before >= 2, 'the drain to poll');
    await q.publish('note', { n: 'polled' }, FITS);
    await until(() => succeeded('polled'), 'the polled job to run');
    stop.abort();
    const report = await drained;
    expect(report).toMatchObject({ claimed: 1, succeeded: 1, stoppedBy: 'signal' });
    expect(ran).toEqual(['polled']);
  });

  it('idle, it sends at most one claim per pollMs', async () => {
    const q = queueOn(neonHttpDriver(db.url, { fetchEndpoint: endpoint.endpoint }));
    const report = await q.drain(10, Date.now() + 60_000, { lingerMs: 1000, pollMs: 200 });
    expect(report.stoppedBy).toBe('empty');
    // The first claim, one per poll in the linger; a slow machine claims fewer, never more.
    expect(report.batches).toBeGreaterThanOrEqual(2);
    expect(report.batches).toBeLessThanOrEqual(1 + 1000 / 200);
  });

  it('runs a scheduled job that comes due while it lingers (no NOTIFY then: the poll finds it)', async () => {
    const q = queueOn();
    await q.publish('note', { n: 'due soon' }, { ...FITS, delaySeconds: 1 });
    const report = await q.drain(10, Date.now() + 50_000, { lingerMs: 3000, pollMs: 200 });
    expect(report).toMatchObject({ claimed: 1, succeeded: 1, stoppedBy: 'empty' });
    expect(ran).toEqual(['due soon']);
  });

  it('options.signal during the idle wait ends the drain at once, stoppedBy signal, and closes its LISTEN session', async () => {
    const stop = new AbortController();
    // Neither its linger nor its deadline would end it within the test's timeout.
    const drained = queueOn().drain(10, Date.now() + 120_000, { lingerMs: HOUR, pollMs: HOUR, signal: stop.signal });
    await until(async () => (await listeners()).length === 1, 'the lingering drain to LISTEN');
    stop.abort();
    expect(await drained).toMatchObject({ claimed: 0, stoppedBy: 'signal' });
    await until(async () => (await listeners()).length === 0, 'the LISTEN session to close');
  });

  it('a lost LISTEN session (pg_terminate_backend) does not fail the drain: a job published after it still runs', async () => {
    const q = queueOn();
    const stop = new AbortController();
    const drained = q.drain(10, Date.now() + 50_000, { lingerMs: HOUR, pollMs: 200, signal: stop.signal });
    const [pid] = await until(async () => { const l = await listeners(); return l.length === 1 && l; }, 'the drain to LISTEN');
    await sql('select pg_terminate_backend($1)', [pid]);
    await until(async () => !(await listeners()).includes(pid!), 'the LISTEN session to end');
    await q.publish('note', { n: 'after loss' }, FITS);
    await until(() => succeeded('after loss'), 'the job published after the loss to run');
    stop.abort();
    const report: DrainReport = await drained;
    expect(report).toMatchObject({ claimed: 1, succeeded: 1, stoppedBy: 'signal' });
  });

  it('a NOTIFY for another queue does not count as work: the job of its own queue runs, the other stays', async () => {
    await queueOn().queues.create('other');
    const q = queueOn();
    const drained = q.drain(10, Date.now() + 50_000, { lingerMs: 1500, pollMs: HOUR, queue: 'other' });
    await until(async () => (await listeners()).length === 1, 'the lingering drain to LISTEN');
    await q.publish('note', { n: 'default queue' }, FITS);
    await q.publish('note', { n: 'other queue' }, { ...FITS, queue: 'other' });
    expect(await drained).toMatchObject({ claimed: 1, succeeded: 1, stoppedBy: 'empty' });
    expect(ran).toEqual(['other queue']);
  });
});

describe('lingerMs and pollMs are validated', () => {
  it.each([
    [{ lingerMs: -1 }, 'options.lingerMs: must be 0 or more'],
    [{ lingerMs: '5s' }, 'options.lingerMs: must be a number of milliseconds'],
    [{ lingerMs: 86_400_001 }, 'options.lingerMs: must be at most 86400000 (a day)'],
    [{ lingerMs: Infinity }, 'options.lingerMs: must be a number of milliseconds'],
    [{ lingerMs: 1000, pollMs: 10 }, 'options.pollMs: must be at least 50'],
    [{ pollMs: NaN }, 'options.pollMs: must be a number of milliseconds'],
  ])('%j', async (options, message) => {
    const q = queueOn();
    await q.publish('note', { n: 'untouched' }, FITS);
    const error = await q.drain(10, Date.now() + 10_000, options as never).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as Error).message).toBe(message);
    // Refused before any claim.
    expect(await sql(`select count(*)::int as n from jobs.job_queue where lease_until is null`)).toEqual([{ n: 1 }]);
  });
});
