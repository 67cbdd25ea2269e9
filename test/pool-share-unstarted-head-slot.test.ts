// A drain that released a job unstarted claims once more when its last claim
// came back full of transactional jobs (slot-wait.ts starve), for the plain
// jobs that may wait behind them. While a hung handler still held one of its
// slots, that claim had room for no more than the released job, first in the
// queue again: it came back with it alone, and the drain starved for good,
// though the hung job's timeout then freed a slot that could reach past it.
// On a real PostgreSQL.
import { afterAll, expect, it } from 'vitest';
import { defineTask } from '../src/index.js';
import type { JobEndEvent } from '../src/types.js';
import { fullPool } from './support/full-pool.js';

let plainRan = 0;
const plain = defineTask('plain', async () => { plainRan++; });
const quick = defineTask('quick', async (_body: unknown, ctx) => { await ctx.db.query('select 1'); }, { transactional: true });
// Pool of 2: one connection for transactional handlers, one kept for claims and settles.
const { db, driver, releases, queue } = await fullPool({ plain, quick }, { max: 2 });
afterAll(() => driver.close());

it('plain jobs behind the released one run once the hung job left its slot', async () => {
  await db.sql(`select jobs.create_queue('slot')`);
  // The hog holds the connection and, till its timeout (3 s), a slot of 2; quick waits in vain, released twice meanwhile.
  await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 3, max_retries => 0, priority => 3, queue => 'slot'),
    jobs.publish('quick', '{}'::jsonb, timeout_seconds => 1, max_retries => 0, priority => 2, queue => 'slot'),
    (select count(jobs.publish('plain', '{}'::jsonb, timeout_seconds => 2, queue => 'slot')) from generate_series(1, 6))`);
  let quickReleased = 0;
  try {
    const report = await queue.drain(10, Date.now() + 12_000, { queue: 'slot', concurrency: 2, overrunMs: 2000,
      onJobEnd: (e: JobEndEvent) => { if (e.job.task === 'quick' && e.outcome === 'release') quickReleased++; } });
    // Unfixed: starved after quick's second release, it claimed nothing more: ran 0 of 6 until its deadline.
    expect(plainRan).toBe(6);
    expect(report).toMatchObject({ succeeded: 6, failed: 1, stoppedBy: 'deadline' });
    expect(await db.sql(`select attempt from jobs.job_queue where task = 'quick'`)).toEqual([{ attempt: 0 }]);
    expect(quickReleased).toBeLessThan(10);
  } finally {
    for (const release of releases.splice(0)) release();
  }
});
