// A drain's last look never waits for a connection (src/last-look.ts): while
// transactional handlers hold every connection of its pool, it stops
// without it. That holds for a drain with no transactional task of its own
// too: a queue of plain tasks over the same pool as one whose transactional
// handler holds the pool's one connection (pg.Pool max 1, as PGlite).
import { afterAll, expect, it } from 'vitest';
import { createQueue, defineTask } from '../src/index.js';
import { fullPool } from './support/full-pool.js';
import { until } from './support/drain-process.js';

const { db, driver, releases, queue } = await fullPool({}, { max: 1 });
const plain = createQueue({ driver, tasks: { quick: defineTask('quick', async () => {}) } });
afterAll(() => driver.close());

it('a plain drain with no budget, its pool held by a transactional handler, returns its report', async () => {
  await db.sql(`select jobs.create_queue('busy'), jobs.create_queue('short')`);
  await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 100, queue => 'busy')`);
  await db.sql(`select jobs.publish('quick', '{}'::jsonb, timeout_seconds => 1, queue => 'short') from generate_series(1, 3)`);
  const busy = queue.drain(10, Date.now() + 120_000, { queue: 'busy' });
  await until(async () => releases.length === 1, 'the busy drain to hold the connection');
  try {
    // Unfixed: rejects with database unavailable (no reply within 1000 ms after the drain's deadline).
    const report = await plain.drain(10, Date.now() + 200, { queue: 'short', overrunMs: 1000 }); // margin 500 ms
    expect(report).toMatchObject({ claimed: 0, batches: 0, skipped: 0, stoppedBy: 'deadline' });
  } finally {
    for (const release of releases) release();
    await busy;
  }
  expect(await db.sql(`select count(*)::int as n from jobs.job_queue where queue = 'short' and attempt = 0`)).toEqual([{ n: 3 }]);
});
