// Drains on one pool through drivers that say different maxConnections (a
// wrapper { ...driver, maxConnections: 2 } keeping a queue's transactional
// handlers to one connection) each keep to their own bound: the pool's share
// took the bound of whichever drain made it first, for the pool's life, so
// after a drain of the wrapper every drain of the driver itself was held to
// one handler at once (here none: the wrapper's handler holds that one),
// its pool's other connections idle, and it ran nothing until its deadline.
import { afterAll, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { fullPool } from './support/full-pool.js';
import { until } from './support/drain-process.js';

const { db, driver, releases, tasks, queue } = await fullPool({}, { max: 5 }); // four connections for handlers
afterAll(() => driver.close());

it("a drain keeps to its own driver's bound on a pool a wrapper with a lower one shares", async () => {
  await db.sql(`select jobs.create_queue('small'), jobs.create_queue('big')`);
  await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 100, queue => 'small') from generate_series(1, 3)`);
  await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 100, queue => 'big') from generate_series(1, 3)`);
  const small = createQueue({ driver: { ...driver, maxConnections: 2 }, tasks });
  const smallDrain = small.drain(10, Date.now() + 120_000, { queue: 'small' });
  await until(async () => releases.length === 1, "the wrapper's drain to start its one handler");
  const bigDrain = queue.drain(10, Date.now() + 120_000, { queue: 'big' });
  try {
    // Unfixed, it starts none: the share's bound is the wrapper's (one), and that one is held.
    await until(async () => releases.length === 4, "the driver's drain to start three handlers (its bound: four)");
    expect(releases).toHaveLength(4);
  } finally {
    let done = false;
    const both = Promise.all([smallDrain, bigDrain]).finally(() => (done = true));
    while (!done) {
      for (const release of releases.splice(0)) release();
      await new Promise((r) => setTimeout(r, 50));
    }
    await both;
  }
});
