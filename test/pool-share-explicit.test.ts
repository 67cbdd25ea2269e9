// A drain given `concurrency` is not bound by its pool's share (README: drains
// side by side keep the bound together "unless you set concurrency"), but its
// transactional handlers hold the pool's connections all the same: a default
// drain beside it did not count them, started its own handlers on a pool
// they filled, and they waited for a connection with their timeout running
// (nacked as timed out, hardly run).
import { afterAll, expect, it } from 'vitest';
import { defineTask } from '../src/index.js';
import { fullPool } from './support/full-pool.js';

const { db, driver, releases, queue } = await fullPool({
  short: defineTask('short', async (_body: unknown, ctx) => {
    await ctx.db.query('select pg_sleep(1.5)');
  }, { transactional: true }),
});
afterAll(() => driver.close());

it("a default drain counts the connections an explicit-concurrency drain's handlers hold", async () => {
  await db.sql(`select jobs.create_queue('explicit'), jobs.create_queue('plain')`);
  await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 100, queue => 'explicit') from generate_series(1, 2)`);
  // 1.5 s of work in a 2.5 s timeout (its timer: 2.25 s from the claim's sending): one that waits for another's
  // connection first cannot finish in it. 0.7 s in 1 s left 0.2 s, less than a slow claim's answer (0.4 s) took.
  await db.sql(`select jobs.publish('short', '{}'::jsonb, timeout_seconds => 2.5, queue => 'plain') from generate_series(1, 2)`);
  const explicit = queue.drain(10, Date.now() + 120_000, { queue: 'explicit', concurrency: 2 });
  while (releases.length < 2) await new Promise((r) => setTimeout(r, 20)); // its handlers hold two connections
  const plain = queue.drain(10, Date.now() + 8000, { queue: 'plain' });
  setTimeout(() => releases.forEach((release) => release()), 1500);
  const report = await plain;
  await explicit;
  // Unfixed, it ran both at once beside the held connections: one waited for the last one, and timed out.
  expect(report).toMatchObject({ claimed: 2, succeeded: 2, retried: 0 });
});
