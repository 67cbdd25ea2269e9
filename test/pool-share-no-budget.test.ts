// A drain with no budget from its start (3466a35: one claim with no budget
// counts the due jobs it left in skipped) sends that claim also when its
// pool's other drains hold every handler connection: a claim with no budget
// starts no handler, so it needs no free slot.
import { afterAll, expect, it } from 'vitest';
import { fullPool } from './support/full-pool.js';

const { db, driver, releases, queue } = await fullPool();
afterAll(() => driver.close());

it('a drain with no budget on a full pool still counts the due jobs it left', async () => {
  await db.sql(`select jobs.create_queue('busy'), jobs.create_queue('short')`);
  await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 100, queue => 'busy') from generate_series(1, 2)`);
  await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 1, queue => 'short') from generate_series(1, 3)`);
  const busy = queue.drain(10, Date.now() + 120_000, { queue: 'busy' });
  while (releases.length < 2) await new Promise((r) => setTimeout(r, 20)); // its handlers hold the pool
  try {
    for (const lingerMs of [0, 60_000]) {
      const report = await queue.drain(10, Date.now() + 200, { queue: 'short', lingerMs }); // settle margin 500 ms
      expect(report).toMatchObject({ claimed: 0, skipped: 3, batches: 1, stoppedBy: 'deadline' });
    }
  } finally {
    for (const release of releases) release();
    await busy;
  }
});
