// A drain's last look is given up only while transactional handlers hold
// every connection of its pool (src/last-look.ts). Plain handlers and batch
// calls of a drain that also has a transactional task hold none: a drain
// given `concurrency` running that many of them leaves the pool idle, and a
// drain beside it with no budget must still send its look and count what is
// due. (It once also waited beside them for a slot until its deadline, then
// looked: they no longer take the pool's slots, pool-share-plain-handlers.)
import { afterAll, expect, it } from 'vitest';
import { defineTask } from '../src/index.js';
import { fullPool } from './support/full-pool.js';
import { until } from './support/drain-process.js';

const naps: (() => void)[] = [];
const nap = () => new Promise<void>((resolve) => naps.push(resolve));
const { db, driver, queue } = await fullPool({
  nap: defineTask('nap', async () => nap()),
  naps: defineTask('naps', async () => nap(), { batch: { maxSize: 10 } }),
});
afterAll(() => driver.close());

for (const task of ['nap', 'naps']) {
  it(`a look beside ${task === 'nap' ? 'plain handlers' : 'a batch call'} that hold no connection counts the due jobs`, async () => {
    const busy = `busy_${task}`, short = `short_${task}`;
    await db.sql(`select jobs.create_queue($1), jobs.create_queue($2)`, [busy, short]);
    await db.sql(`select jobs.publish($1, '{}'::jsonb, timeout_seconds => 100, queue => $2) from generate_series(1, 3)`, [task, busy]);
    await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 1, queue => $1) from generate_series(1, 3)`, [short]);
    const explicit = queue.drain(10, Date.now() + 120_000, { queue: busy, concurrency: 3 });
    await until(async () => naps.length === (task === 'nap' ? 3 : 1), 'the explicit drain to run its 3 jobs');
    try {
      // Its 3 jobs hold no connection of the pool's 3: the look has one.
      const report = await queue.drain(10, Date.now() + 200, { queue: short, overrunMs: 1000 }); // settle margin 500 ms
      expect(report).toMatchObject({ claimed: 0, batches: 1, skipped: 3, stoppedBy: 'deadline' });
    } finally {
      for (const wake of naps.splice(0)) wake();
      await explicit;
    }
  });
}
