// A lingering drain whose linger ends while its pool's other drains hold
// every handler connection ends with its linger: it waited for a free
// connection (idle.pause) until stopAt, its deadline less the margin, not
// until the end of its linger (a poll found its pool full), so a drain with
// lingerMs 300 stayed as long as the other drain's handlers held the pool.
import { afterAll, expect, it } from 'vitest';
import { fullPool } from './support/full-pool.js';

const { db, driver, releases, queue } = await fullPool();
afterAll(() => driver.close());

it('a lingering drain on a pool the other drains fill ends when its linger does', async () => {
  await db.sql(`select jobs.create_queue('idle'), jobs.create_queue('busy')`);
  const lingering = queue.drain(10, Date.now() + 120_000, { queue: 'idle', lingerMs: 1500, pollMs: 100 });
  await db.sql(`select 1 from pg_sleep(0.3)`); // it found its queue empty, and lingers
  await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 100, queue => 'busy') from generate_series(1, 2)`);
  const busy = queue.drain(10, Date.now() + 120_000, { queue: 'busy' });
  try {
    // Unfixed, it returns only once a handler lets go, here after the test's timeout.
    const report = await lingering;
    expect(releases).toHaveLength(2); // the other drain's handlers still hold the pool
    expect(report).toMatchObject({ claimed: 0, stoppedBy: 'empty' });
  } finally {
    for (const release of releases) release();
    await busy;
  }
});
