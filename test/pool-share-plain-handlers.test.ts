// Drains side by side on one pool keep the transactional handlers they run
// under its size less one (pool-share.ts). Plain handlers and batch calls of
// a drain that also has a transactional task hold no connection while they
// run (they borrow one per statement, as ctx.publish): they counted there
// all the same, so a drain running as many of them as the bound (given
// `concurrency`, or pool-bound itself) left the pool-bound drain beside it
// no slot, and it waited until its deadline with the pool idle.
import { afterAll, expect, it } from 'vitest';
import { defineTask } from '../src/index.js';
import { fullPool } from './support/full-pool.js';
import { until } from './support/drain-process.js';

const naps: (() => void)[] = [];
let awake = false; // at a case's end: a pool-bound drain's job left for later runs through
const nap = () => (awake ? Promise.resolve() : new Promise<void>((resolve) => naps.push(resolve)));
const { db, driver, queue } = await fullPool({
  nap: defineTask('nap', async () => nap()),
  naps: defineTask('naps', async () => nap(), { batch: { maxSize: 10 } }),
  quick: defineTask('quick', async (_body: unknown, ctx) => {
    await ctx.db.query('select 1');
  }, { transactional: true }),
  stubborn: defineTask('stubborn', async () => new Promise<void>((resolve) => (release = resolve))), // past its timeout
});
let release: (() => void) | undefined;
afterAll(() => driver.close());

const cases = [
  { task: 'nap', concurrency: 3, calls: 3 }, // beside a drain given concurrency: plain handlers
  { task: 'naps', concurrency: 3, calls: 1 }, // a batch call of 3 jobs
  { task: 'nap', concurrency: undefined, calls: 2 }, // beside a pool-bound drain (2 slots on a pool of 3)
];
for (const [i, { task, concurrency, calls }] of cases.entries()) {
  it(`a pool-bound drain claims beside ${calls} ${task} call(s) of a drain ${concurrency ? 'given concurrency' : 'bound too'}`, async () => {
    const busy = `busy_${i}`, short = `short_${i}`;
    await db.sql(`select jobs.create_queue($1), jobs.create_queue($2)`, [busy, short]);
    await db.sql(`select jobs.publish($1, '{}'::jsonb, timeout_seconds => 100, queue => $2) from generate_series(1, 3)`, [task, busy]);
    await db.sql(`select jobs.publish('quick', '{}'::jsonb, timeout_seconds => 1, queue => $1) from generate_series(1, 2)`, [short]);
    const sleeper = queue.drain(10, Date.now() + 120_000, { queue: busy, concurrency });
    await until(async () => naps.length === calls, `the ${busy} drain to run its ${calls} call(s)`);
    try {
      // Unfixed: it waited for a slot until its deadline, then looked once (claimed 0, batches 1, skipped 2).
      const report = await queue.drain(10, Date.now() + 3000, { queue: short, overrunMs: 1000 });
      expect(report).toMatchObject({ claimed: 2, succeeded: 2, skipped: 0, stoppedBy: 'empty' });
      expect(naps).toHaveLength(calls); // the plain handlers still sleep
    } finally {
      awake = true;
      for (const wake of naps.splice(0)) wake();
      await sleeper;
      awake = false;
    }
  });
}

// Its own plain handler's slot a pool-bound drain counts until the handler
// returns, past its job's end (its timeout); it no longer wakes the share's
// waiters when it does, so it wakes its own drain's wait for a slot.
it("a pool-bound drain claims again when its own plain handler returns after its timeout", async () => {
  await db.sql(`select jobs.create_queue('own')`);
  await db.sql(`select jobs.publish('stubborn', '{}'::jsonb, timeout_seconds => 1, max_retries => 0, queue => 'own')`);
  const drained = queue.drain(1, Date.now() + 8000, { queue: 'own' }); // concurrency 1: its one slot
  await until(async () => release !== undefined, 'the stubborn handler to run');
  await db.sql(`select jobs.publish('quick', '{}'::jsonb, timeout_seconds => 1, queue => 'own')`);
  await until(async () => (await db.sql(`select 1 from jobs.job where task = 'stubborn'`)).length === 1, 'its timeout to fail it');
  release!(); // the drain waits for its slot meanwhile
  // Without the wake: it waited until its deadline, then looked (claimed 1, skipped 1, stoppedBy deadline).
  expect(await drained).toMatchObject({ claimed: 2, succeeded: 1, failed: 1, skipped: 0, stoppedBy: 'empty' });
});
