// A lingering drain idle on an empty queue claims on a NOTIFY or a poll
// (README: an idle drain costs at most one claim per pollMs, plus NOTIFYs),
// not each time another drain's handler on its pool returns: every drain on
// the pool was woken by each connection given back, and an idle one woken
// claims again, so beside a busy drain it sent a claim per job the busy one
// ran. A drain is woken by its pool only while it waits for a free connection.
import { afterAll, expect, it } from 'vitest';
import { createQueue, defineTask } from '../src/index.js';
import { until } from './support/drain-process.js';
import { fullPool, lingerWatched } from './support/full-pool.js';

const { db, driver, tasks, queue } = await fullPool({
  short: defineTask('short', async (_body: unknown, ctx) => {
    await ctx.db.query('select pg_sleep(0.02)');
  }, { transactional: true }),
});
afterAll(() => driver.close());

it("an idle lingering drain does not claim at each of its pool's other drains' jobs", async () => {
  await db.sql(`select jobs.create_queue('idle'), jobs.create_queue('busy')`);
  await db.sql(`select jobs.publish('short', '{}'::jsonb, timeout_seconds => 10, queue => 'busy') from generate_series(1, 80)`);
  const stopIdle = new AbortController();
  const watched = lingerWatched(driver);
  const idle = createQueue({ driver: watched.driver, tasks })
    .drain(10, Date.now() + 60_000, { queue: 'idle', lingerMs: 60_000, pollMs: 60_000, signal: stopIdle.signal });
  await until(async () => watched.lingers(), 'the idle drain to find its queue empty and linger');
  const busy = await queue.drain(10, Date.now() + 60_000, { queue: 'busy' });
  expect(busy).toMatchObject({ claimed: 80, succeeded: 80 });
  stopIdle.abort();
  const report = await idle;
  // Its first claim and one once it listens (none at the 60 s poll): unfixed, about one per job of the busy drain.
  expect(report.claimed).toBe(0);
  expect(report.batches).toBeLessThan(10);
});
