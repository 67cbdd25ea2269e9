// A drain's loop hands the outcomes gathered so far to its next claim
// (settler.take), which first waits for a settle in flight. When the
// drain's signal came during that wait, the loop gave them back to the
// settler and stopped, and nothing sent them until its close, after the
// grace: a quick job's ack waited that long, its lease passed meanwhile,
// another consumer's expiry ran the job again and the ack came stale. On a
// real PostgreSQL, another session expiring passed leases every 20 ms.
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { Driver } from '../src/db/driver.js';
import { createQueue, defineTask } from '../src/index.js';
import { testDb } from './support/db.js';
import { expiringElsewhere } from './support/expiring.js';

const db = await testDb();
const sql = db.sql;
beforeEach(async () => void (await sql('truncate jobs.job_queue, jobs.job')));

/** Handlers that ignore their signal, until the test (or its end) lets them go. */
const hung = new Map<string, () => void>();
afterEach(() => { for (const go of hung.values()) go(); hung.clear(); });
const waitFor = (name: string) => () => new Promise<void>((resolve) => hung.set(name, resolve));
const tasks = {
  hangs: defineTask('hangs', waitFor('hangs')),
  slow: defineTask('slow', waitFor('slow')),
  quick: defineTask('quick', waitFor('quick')),
};

it("outcomes a claim took while a settle was in flight still go before the grace ends, when the drain's signal came meanwhile", async () => {
  // hangs: its timer's nack is the settle held in flight; quick: acks while it is held; slow: runs through the grace.
  await sql(`select jobs.publish('hangs', '{}'::jsonb, timeout_seconds => 3, max_retries => 1, priority => 3)`);
  await sql(`select jobs.publish('quick', '{}'::jsonb, timeout_seconds => 4, max_retries => 1, priority => 2)`);
  await sql(`select jobs.publish('slow', '{}'::jsonb, timeout_seconds => 30, max_retries => 1, priority => 1)`);
  let held: (() => void) | undefined;
  let drained: Promise<unknown> | undefined;
  const stop = new AbortController();
  const stopExpiring = await expiringElsewhere(db.url);
  const settleHeld = new Promise<void>((sent) => {
    const driver = { ...db.driver, close: async () => {},
      query: async (text: string, params?: unknown[], options?: unknown) => {
        if (held === undefined && text.includes('jobs.settle_arrays')) {
          await new Promise<void>((go) => { held = go; sent(); });
        }
        return db.driver.query(text, params as never, options as never);
      } } as Driver;
    drained = createQueue({ driver, tasks }).drain(3, Date.now() + 60_000,
      { concurrency: 3, signal: stop.signal, graceMs: 3000 });
  });
  try {
    await settleHeld; // hangs's timer fired (2.7 s): its nack's settle is in flight
    hung.get('quick')!(); // its ack frees a slot: the loop's take() waits for that settle
    for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
    stop.abort();
    held!();
    const report = await drained;
    // Before: quick's ack was sent at the drain's close, after the grace (3 s), its 4 s lease passed at 4 s: stale 1, quick retried.
    expect(report).toMatchObject({ claimed: 3, succeeded: 1, retried: 2, stale: 0 });
    expect(await sql(`select task, status from jobs.job`)).toEqual([{ task: 'quick', status: 'success' }]);
  } finally {
    stop.abort();
    held?.();
    for (const go of hung.values()) go();
    await drained?.catch(() => {});
    await stopExpiring();
  }
});
