// A job still waiting for a connection is released ahead of its timeout
// (unstarted.ts RELEASE_AHEAD_MS): released at it, its release (riding on
// the drain's next claim) met its lease's end, and another consumer's expiry
// took the lease back first, spending its attempt: with maxRetries 0 it
// failed without having run (R-pool2's repro, 9 of 9 stale).
import { afterAll, expect, it } from 'vitest';
import { expiringElsewhere } from './support/expiring.js';
import { fullPool } from './support/full-pool.js';

const { db, driver, releases, queue } = await fullPool({}, { max: 2 });
afterAll(() => driver.close());

it('a job released unstarted is not failed by another consumer\'s expiry of its lease', async () => {
  // One runs and hangs, holding the handlers' one connection; 8 wait for it until their timeout.
  await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 1.5, max_retries => 0) from generate_series(1, 9)`);
  const stopExpiring = await expiringElsewhere(db.url); // another consumer, expiring passed leases
  try {
    const report = await queue.drain(10, Date.now() + 2500, { concurrency: 9, overrunMs: 2000 });
    // Seen: { released: 0, stale: 9 }: every release came after the expiry and was stale.
    expect(report.released).toBe(8);
  } finally {
    await stopExpiring();
    for (const release of releases.splice(0)) release();
  }
  // Seen: 9 rows 'failure', 'timed out: no ack within 1.5 seconds (attempt 1 of 1): its lease passed with no outcome from worker …'.
  expect(await db.sql(`select count(*)::int as n from jobs.job where status = 'failure'`)).toEqual([{ n: 1 }]);
});
