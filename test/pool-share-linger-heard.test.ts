// A lingering drain whose linger ends before its deadline while its pool's
// other drains hold every handler connection looks once more, with no budget,
// before it returns: it waited for a free connection (idle.pause, deaf to
// NOTIFYs and polls), so jobs published meanwhile stayed due, and it said
// 'empty', skipped 0, as if its queue were empty (DESIGN: the report says why
// it ran nothing). pool-share-linger-last-look covers a linger that runs to
// the deadline.
import { afterAll, expect, it } from 'vitest';
import { fullPool } from './support/full-pool.js';
import { until } from './support/drain-process.js';

const { db, driver, releases, queue } = await fullPool();
afterAll(() => driver.close());

it('a lingering drain whose linger ends on a full pool counts the due jobs it heard of and left', async () => {
  await db.sql(`select jobs.create_queue('busy'), jobs.create_queue('short')`);
  // Finds its queue empty and lingers 5 s, its deadline far off.
  const lingering = queue.drain(10, Date.now() + 120_000, { queue: 'short', lingerMs: 5000, pollMs: 100 });
  await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 100, queue => 'busy') from generate_series(1, 2)`);
  const busy = queue.drain(10, Date.now() + 120_000, { queue: 'busy' });
  await until(async () => releases.length === 2, 'the busy drain to hold the pool');
  try {
    await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 1, queue => 'short') from generate_series(1, 3)`);
    const report = await lingering;
    expect(releases).toHaveLength(2); // it ran none of them: no connection came free
    expect(await db.sql(`select count(*)::int as n from jobs.job_queue where queue = 'short'`)).toEqual([{ n: 3 }]);
    expect(report).toMatchObject({ claimed: 0, skipped: 3, stoppedBy: 'deadline' });
  } finally {
    for (const release of releases) release();
    await busy;
  }
});
