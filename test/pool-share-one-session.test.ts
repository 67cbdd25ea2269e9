// A drain on a pool of one connection (PGlite, pgDriver(url, { max: 1 }))
// whose other drain's transactional handler holds that connection until past
// its deadline stops at its deadline, as it did before c2a1063: the last look
// with no budget that a wait for a slot ending at stopAt (or a linger's end)
// now sends needs a connection, and there is none to spare (no connection is
// kept for claims on a pool of one), so it waited behind the handler's
// transaction and the drain rejected with database_unavailable once its
// overrun passed, the database healthy.
import { afterAll, expect, it } from 'vitest';
import { fullPool } from './support/full-pool.js';
import { until } from './support/drain-process.js';

const { db, driver, releases, queue } = await fullPool({}, { max: 1 });
afterAll(() => driver.close());

it('a drain waiting for the one connection of its pool until its deadline returns its report', async () => {
  await db.sql(`select jobs.create_queue('busy'), jobs.create_queue('short')`);
  await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 100, queue => 'busy')`);
  await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 1, queue => 'short') from generate_series(1, 3)`);
  const busy = queue.drain(10, Date.now() + 120_000, { queue: 'busy' });
  await until(async () => releases.length === 1, 'the busy drain to hold the connection');
  try {
    for (const lingerMs of [0, 500]) {
      // Unfixed: rejects with database unavailable (no reply within 1000 ms after the drain's deadline).
      const report = await queue.drain(10, Date.now() + 2000, { queue: 'short', lingerMs, pollMs: 100, overrunMs: 1000 });
      expect(releases).toHaveLength(1);
      expect(report).toMatchObject({ claimed: 0, batches: 0 });
    }
    expect(await db.sql(`select count(*)::int as n from jobs.job_queue where queue = 'short' and attempt = 0`)).toEqual([{ n: 3 }]);
  } finally {
    for (const release of releases) release();
    await busy;
  }
});
