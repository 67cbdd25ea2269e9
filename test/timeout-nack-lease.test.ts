// A job's lease is its timeout. Its handler's timer ends it a margin before
// the lease's end (timeouts.ts timerEnd) and the drain sends that nack at
// once (Timeouts' fired: settler.sendSoon), so it lands while the lease
// holds. Made at the lease's end and sent at the settler's next flush, it
// came after the lease had passed: another consumer's expiry (another
// drain's claim, jobs.maintain) took the job back first, last_error said its
// worker had stopped or been killed, and the drain counted the nack stale.
// A handler that ignores its signal keeps its slot, so no claim of the drain
// carries the nack; a long flushIntervalMs makes the race certain. On a real
// PostgreSQL, another session expiring passed leases every 20 ms.
import { afterEach, beforeEach, expect, it } from 'vitest';
import { createQueue, defineTask } from '../src/index.js';
import { testDb } from './support/db.js';
import { expiringElsewhere } from './support/expiring.js';

const db = await testDb();
const sql = db.sql;
beforeEach(async () => void (await sql('truncate jobs.job_queue, jobs.job')));

/** Handlers that ignore their signal, until the test lets them go. */
const hung: (() => void)[] = [];
afterEach(() => { for (const go of hung.splice(0)) go(); });
const ignoresSignal = () => new Promise<void>((resolve) => hung.push(resolve));
const tasks = {
  hangs: defineTask('hangs', ignoresSignal),
  batch: defineTask('batch', ignoresSignal, { batch: { maxSize: 10 } }),
};
const newQueue = () => createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });

/** Drains with another consumer expiring passed leases meanwhile. */
async function drainExpiredElsewhere(batch: number, options: Parameters<ReturnType<typeof newQueue>['drain']>[2]) {
  const stopExpiring = await expiringElsewhere(db.url);
  try {
    return await newQueue().drain(batch, Date.now() + 4000, options);
  } finally {
    await stopExpiring();
  }
}

for (const flushIntervalMs of [1500, undefined]) {
  it(`a hung handler's nack lands before its lease ends (flushIntervalMs ${flushIntervalMs ?? 'default'})`, async () => {
    // Two more keep two of its three slots (refillAt 2): no claim carries the first one's nack.
    await sql(`select jobs.publish('hangs', '{"first":true}'::jsonb, timeout_seconds => 1.5, max_retries => 1, priority => 1)`);
    await sql(`select jobs.publish('hangs', '{}'::jsonb, timeout_seconds => 3, max_retries => 1) from generate_series(1, 2)`);
    const report = await drainExpiredElsewhere(3, { concurrency: 3, ...flushIntervalMs && { flushIntervalMs } });
    // Before: retried 2, stale 1, last_error 'timed out: no ack within 1.5 seconds (attempt 1 of 2): its lease passed with no outcome from worker …'.
    expect(report).toMatchObject({ claimed: 3, retried: 3, failed: 0, stale: 0 });
    expect(await sql(`select attempt, last_error from jobs.job_queue order by timeout`)).toEqual([
      { attempt: 1, last_error: 'timed out after 1.5 s' },
      { attempt: 1, last_error: 'timed out after 3 s' }, { attempt: 1, last_error: 'timed out after 3 s' }]);
  });
}

it("a hung batch call's nack lands before its job's lease ends", async () => {
  await sql(`select jobs.publish('batch', '{}'::jsonb, timeout_seconds => 1.5, max_retries => 0, priority => 1)`);
  await sql(`select jobs.publish('hangs', '{}'::jsonb, timeout_seconds => 3, max_retries => 1) from generate_series(1, 2)`);
  const report = await drainExpiredElsewhere(3, { concurrency: 3, flushIntervalMs: 1500 });
  // Before: failed 0, stale 1 (or more), error 'timed out: no ack within 1.5 seconds (attempt 1 of 1): its lease passed …'.
  expect(report).toMatchObject({ claimed: 3, failed: 1, retried: 2, stale: 0 });
  expect(await sql(`select status, error from jobs.job`)).toEqual([{ status: 'failure', error: 'timed out after 1.5 s' }]);
});
