// A drain that finds its pool full from its start (the other drains on it hold
// every handler connection until past its deadline) waits for a connection
// until its deadline, then looks once with no budget (a claim that takes no
// job and needs no slot): it said 'deadline' with skipped 0, batches 0 while
// due jobs were left (DESIGN: the report says why it ran nothing). So does a
// lingering one: its linger starts when a claim finds its queue dry, and it
// made none. pool-share-no-budget covers a drain with no budget from its start.
import { afterAll, expect, it } from 'vitest';
import { fullPool } from './support/full-pool.js';
import { until } from './support/drain-process.js';

const { db, driver, releases, queue } = await fullPool();
afterAll(() => driver.close());

it('a drain that waits on a full pool until its deadline counts the due jobs it left', async () => {
  await db.sql(`select jobs.create_queue('busy'), jobs.create_queue('short')`);
  await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 100, queue => 'busy') from generate_series(1, 2)`);
  await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 1, queue => 'short') from generate_series(1, 3)`);
  const busy = queue.drain(10, Date.now() + 120_000, { queue: 'busy' });
  await until(async () => releases.length === 2, 'the busy drain to hold the pool');
  try {
    for (const lingerMs of [0, 1000]) {
      const report = await queue.drain(10, Date.now() + 2000, { queue: 'short', lingerMs, pollMs: 100 }); // settle margin 500 ms
      expect(releases).toHaveLength(2); // it ran none of them: no connection came free
      expect(report).toMatchObject({ claimed: 0, skipped: 3, batches: 1, stoppedBy: 'deadline' });
    }
    expect(await db.sql(`select count(*)::int as n from jobs.job_queue where queue = 'short' and attempt = 0`)).toEqual([{ n: 3 }]);
  } finally {
    for (const release of releases) release();
    await busy;
  }
});
