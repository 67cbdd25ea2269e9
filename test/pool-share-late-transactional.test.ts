// A drain finds its jobs' handlers as the tasks are now (src/tasks.ts
// TaskLookup): a task queue.defineTask made transactional after the drain
// began runs in a transaction, holding a connection of the pool until it
// returns. Its drain, begun with no transactional task, had no pool share
// to count it in: the drains beside it read the pool as idle. One with no
// budget sent its last look, and a pool-bound one its claim, on a pool those
// handlers held whole: it waited for a connection none gave back, and drain()
// rejected with database_unavailable, the database healthy. Since, its
// transactional handlers take no more than the pool's size less one
// connection (pool-share.ts enter), counted there too: the third waits for
// one, and the drains beside it have the third for their look.
import { afterAll, expect, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { createQueue, defineTask } from '../src/index.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';

const db = await testDb();
const driver = pgDriver(db.url, { max: 3 });
afterAll(() => driver.close());
let openGate: (() => void) | undefined;
const gate = defineTask('gate', () => new Promise<void>((resolve) => (openGate = resolve)));
const queue = createQueue({ driver, tasks: { gate } }); // no transactional task yet

it("a task made transactional mid-drain counts in its pool's share", async () => {
  await db.sql(`select jobs.create_queue('late'), jobs.create_queue('short')`);
  await db.sql(`select jobs.publish('gate', '{}'::jsonb, queue => 'late')`);
  const early = queue.drain(10, Date.now() + 120_000, { queue: 'late' });
  await until(async () => openGate !== undefined, 'the early drain to run the gate');
  const releases: (() => void)[] = [];
  queue.defineTask('late', async (_body: unknown, ctx) => {
    await ctx.db.query('select 1');
    await new Promise<void>((resolve) => releases.push(resolve));
  }, { transactional: true });
  await db.sql(`select jobs.publish('late', '{}'::jsonb, timeout_seconds => 100, queue => 'late') from generate_series(1, 3)`);
  await db.sql(`select jobs.publish('late', '{}'::jsonb, timeout_seconds => 1, queue => 'short') from generate_series(1, 2)`);
  openGate!();
  await until(async () => releases.length === 2, 'the early drain to hold 2 connections in transactions, its third handler waiting');
  try {
    // No budget (a look at once), then a budget (pool-bound: it waits for a slot until its deadline, then the look).
    for (const ms of [200, 2000]) { // settle margin 500 ms
      // Unfixed: each rejects with database unavailable (no reply within 1000 ms after the drain's deadline).
      const report = await queue.drain(10, Date.now() + ms, { queue: 'short', overrunMs: 1000 });
      expect(report).toMatchObject({ claimed: 0, batches: 1, skipped: 2, stoppedBy: 'deadline' });
    }
    expect(await db.sql(`select count(*)::int as n from jobs.job_queue where queue = 'short' and attempt = 0`)).toEqual([{ n: 2 }]);
  } finally {
    // The waiting handler begins once one returns: released as it does.
    let done = false;
    void early.finally(() => (done = true));
    while (!done) {
      for (const release of releases.splice(0)) release();
      await new Promise((r) => setTimeout(r, 50));
    }
    await early;
  }
});
