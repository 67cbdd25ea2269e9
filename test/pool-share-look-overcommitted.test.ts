// A drain given `concurrency` at or above its pool's size can hold every
// connection with its transactional handlers (README: Typed tasks warns). A
// pool-bound drain beside it waits for a slot until its deadline, then would
// send its last look (a claim with no budget, only to count what is due):
// that look waited for a connection no handler would give back, and drain()
// rejected with database_unavailable once its overrun passed, the database
// healthy. A last look never waits for a connection (src/last-look.ts): the
// drain returned its report, skipped as its last claim counted (0 before any).
// Since, transactional handlers take no more than the pool's size less one
// connection whatever their drain's concurrency (pool-share.ts enter): the
// explicit drain's third handler waits for one, and the look has the third
// connection, so it counts the due jobs. (A pool of one, where the look is
// still given up: pool-share-one-session.)
import { afterAll, expect, it } from 'vitest';
import { fullPool } from './support/full-pool.js';
import { until } from './support/drain-process.js';

const { db, driver, releases, queue } = await fullPool();
afterAll(() => driver.close());

it("a pool-bound drain beside one given concurrency at its pool's size counts the due jobs at its deadline", async () => {
  await db.sql(`select jobs.create_queue('explicit'), jobs.create_queue('short')`);
  await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 100, queue => 'explicit') from generate_series(1, 3)`);
  await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 1, queue => 'short') from generate_series(1, 3)`);
  const explicit = queue.drain(10, Date.now() + 120_000, { queue: 'explicit', concurrency: 3 });
  await until(async () => releases.length === 2, 'the explicit drain to hold 2 connections, its third handler waiting');
  try {
    for (const lingerMs of [0, 1000]) {
      // Unfixed: rejects with database unavailable (no reply within 1000 ms after the drain's deadline).
      const report = await queue.drain(10, Date.now() + 2000, { queue: 'short', lingerMs, pollMs: 100, overrunMs: 1000 });
      expect(releases).toHaveLength(2); // it ran none: no slot came free
      expect(report).toMatchObject({ claimed: 0, batches: 1, skipped: 3, stoppedBy: 'deadline' });
    }
    expect(await db.sql(`select count(*)::int as n from jobs.job_queue where queue = 'short' and attempt = 0`)).toEqual([{ n: 3 }]);
  } finally {
    // The waiting handler begins once one returns: released as it does.
    let done = false;
    void explicit.finally(() => (done = true));
    while (!done) {
      for (const release of releases.splice(0)) release();
      await new Promise((r) => setTimeout(r, 50));
    }
    await explicit;
  }
});
