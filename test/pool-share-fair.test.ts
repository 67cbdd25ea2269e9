// A drain with none of its own running, on a pool another drain keeps busy,
// takes a connection as soon as one is free: waiting for refillAt of them
// (half its batch), it lost every race to the busy drain, which the same
// release wakes first and which claims as soon as its own refillAt is free,
// so it ran nothing until its deadline while the other drained its backlog.
import { afterAll, expect, it } from 'vitest';
import { defineTask } from '../src/index.js';
import { until } from './support/drain-process.js';
import { fullPool } from './support/full-pool.js';

// Four connections for handlers, over every drain on it.
let holding = 0; // the busy drain's handlers that have begun
const { db, driver, queue } = await fullPool({
  hold: defineTask('hold', async (_body: unknown, ctx) => {
    holding++;
    await ctx.db.query('select pg_sleep(0.2)');
  }, { transactional: true }),
}, { max: 5 });
afterAll(() => driver.close());

it('a drain on a pool another drain keeps busy still gets connections before its deadline', async () => {
  await db.sql(`select jobs.create_queue('busy'), jobs.create_queue('small')`);
  await db.sql(`select jobs.publish('hold', '{}'::jsonb, timeout_seconds => 30, queue => 'busy') from generate_series(1, 120)`);
  await db.sql(`select jobs.publish('hold', '{}'::jsonb, timeout_seconds => 1, queue => 'small') from generate_series(1, 2)`);
  const busy = queue.drain(4, Date.now() + 60_000, { queue: 'busy' });
  // Its handlers hold the pool: waited for, not 300 ms (a loaded machine's first claim could take longer,
  // and the small drain then ran on a free pool, the case unchecked).
  await until(async () => holding >= 4, 'the busy drain to fill its four connections');
  const small = await queue.drain(4, Date.now() + 3000, { queue: 'small', settleMarginMs: 500 });
  const busyLeft = await db.sql<{ n: number }>(`select count(*)::int as n from jobs.job_queue where queue = 'busy'`);
  await busy;
  expect(busyLeft[0]!.n).toBeGreaterThan(0); // the busy drain still had work when the small one ended
  expect(small).toMatchObject({ claimed: 2, succeeded: 2 });
});
