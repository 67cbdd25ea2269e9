// A lingering drain whose linger runs to its deadline claims once more there
// (README: with no budget, to count the due jobs it never got to in skipped,
// and say 'deadline' when there are any) also when it spent that end waiting
// for a free connection: its pool's other drains held every handler
// connection, so the jobs it heard of stayed due, and it said 'empty'.
import { afterAll, expect, it } from 'vitest';
import { fullPool } from './support/full-pool.js';
import { until } from './support/drain-process.js';

const { db, driver, releases, queue } = await fullPool();
afterAll(() => driver.close());

it('a lingering drain that waits for a connection until its deadline counts the due jobs it left', async () => {
  await db.sql(`select jobs.create_queue('busy'), jobs.create_queue('short')`);
  // Lingers on its empty queue until its deadline (settle margin 500 ms).
  const lingering = queue.drain(10, Date.now() + 4000, { queue: 'short', lingerMs: 60_000, pollMs: 100 });
  await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 100, queue => 'busy') from generate_series(1, 2)`);
  const busy = queue.drain(10, Date.now() + 120_000, { queue: 'busy' });
  await until(async () => releases.length === 2, 'the busy drain to hold the pool'); // its handlers hold the pool
  try {
    await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 1, queue => 'short') from generate_series(1, 3)`);
    const report = await lingering;
    expect(releases).toHaveLength(2); // the lingering drain ran none of them
    expect(report).toMatchObject({ claimed: 0, skipped: 3, stoppedBy: 'deadline' });
  } finally {
    for (const release of releases) release();
    await busy;
  }
});
