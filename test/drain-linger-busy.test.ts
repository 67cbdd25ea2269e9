// A lingering drain while its jobs run, and under a flood of NOTIFYs it
// cannot act on, over a real PostgreSQL (pgDriver, which LISTENs). No timing
// assertions: the tests wait for states, and the one bound on claims is one
// a slower machine only stays further under.
import { beforeEach, expect, it } from 'vitest';
import { createQueue, type Driver, type TaskMap } from '../src/index.js';
import { NOTIFY_GAP_MS } from '../src/idle-wait.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const HOUR = 3_600_000;
const FITS = { timeoutSeconds: 30 };

let claims = 0;
const counting: Driver = {
  ...db.driver,
  close: async () => {},
  query: (text, params, options) => {
    if (text.includes('jobs.claim_json(')) claims++;
    return db.driver.query(text, params, options);
  },
};

let release: () => void = () => {};
const tasks: TaskMap = {
  hold: () => new Promise<void>((resolve) => (release = resolve)),
  note: async () => {},
};
const queue = createQueue({ driver: counting, tasks });

const listeners = async () => (await sql<{ n: number }>(
  `select count(*)::int as n from pg_stat_activity where datname = current_database() and query ilike 'listen %'`))[0]!.n;
const succeeded = async (task: string) =>
  (await sql<{ n: number }>(`select count(*)::int as n from jobs.job where status = 'success' and task = $1`, [task]))[0]!.n;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
  claims = 0;
});

it('runs a job published while a long one runs: a NOTIFY fills a free slot, without waiting for the long job', async () => {
  const stop = new AbortController();
  await queue.publish('hold', {}, FITS);
  const drained = queue.drain(10, Date.now() + 60_000, { lingerMs: HOUR, pollMs: HOUR, signal: stop.signal });
  await until(async () => (await sql(`select 1 from jobs.job_queue where task = 'hold' and lease_until is not null`)).length > 0,
    'the long job to start');
  await until(async () => (await listeners()) === 1, 'the drain to LISTEN while its job runs');
  await queue.publish('note', {}, FITS);
  await until(async () => (await succeeded('note')) === 1, 'the new job to run beside the long one');
  expect(await succeeded('hold')).toBe(0); // still held
  release();
  await until(async () => (await succeeded('hold')) === 1, 'the long job to end');
  stop.abort();
  expect(await drained).toMatchObject({ claimed: 2, succeeded: 2, stoppedBy: 'signal' });
});

it('a flood of NOTIFYs it cannot act on (jobs due later) sets off at most one claim per NOTIFY_GAP_MS', async () => {
  const stop = new AbortController();
  const drained = queue.drain(10, Date.now() + 60_000, { lingerMs: HOUR, pollMs: HOUR, signal: stop.signal });
  await until(async () => (await listeners()) === 1, 'the drain to LISTEN');
  // The claim it makes once it listens (its first found nothing) is behind it: waited for, not 2 gaps' time.
  // Sent later (a loaded machine), it fell among the claims counted below, and 'the NOTIFYs did wake it' held
  // with no NOTIFY heard.
  await until(async () => claims >= 2, 'the claim it makes once it listens');
  const before = claims;
  const from = Date.now();
  // Publishes for a while, 4 at a time, each its own statement and NOTIFY, none claimable for an hour: 4 at once
  // outrun one a gap on a loaded machine too (one after another, each publish slower than a gap set off a claim,
  // and 'fewer claims than NOTIFYs' failed), and on until they outnumber the claims twice over (at most 400).
  let published = 0;
  while ((Date.now() - from < 20 * NOTIFY_GAP_MS || published <= 2 * (claims - before)) && published < 400) {
    await Promise.all(Array.from({ length: 4 }, () => queue.publish('note', {}, { ...FITS, delaySeconds: 3600 })));
    published += 4;
  }
  // A claim they set off, waited for: a fixed 2 gaps' wait ended, on a loaded machine, before one was heard.
  await until(async () => claims > before, 'the NOTIFYs to wake it');
  const elapsed = Date.now() - from;
  const during = claims - before;
  stop.abort();
  expect(await drained).toMatchObject({ claimed: 0, stoppedBy: 'signal' });
  expect(during).toBeGreaterThan(0); // the NOTIFYs did wake it
  expect(during).toBeLessThanOrEqual(1 + Math.ceil(elapsed / NOTIFY_GAP_MS));
  expect(during).toBeLessThan(published);
});
