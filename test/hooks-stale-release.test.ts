// A job claimed and never started (waiting for a connection) whose release
// its settle found stale (its lease had already been taken back by another
// expiry): the report counts it in `stale`, not `released`, but onJobEnd
// told it as a plain `release`, willRetry true, as if given back unspent.
// The event now says `stale: true`, as the report does. On a real PostgreSQL.
import { afterAll, expect, it } from 'vitest';
import { createQueue, type JobEndEvent } from '../src/index.js';
import { fullPool } from './support/full-pool.js';
import { until } from './support/drain-process.js';

const { db, driver, releases, tasks } = await fullPool({}, { max: 2 });
afterAll(() => driver.close());

it("onJobEnd tells a stale release of a job that never started as stale, as the report counts it", async () => {
  const ended: JobEndEvent[] = [];
  const queue = createQueue({ driver, tasks, drain: { onJobEnd: (e) => void ended.push(e) } });
  await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 30, priority => 1)`);
  const [unrun] = await db.sql<{ id: string }>(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 4)::text as id`);
  try {
    const drained = queue.drain(10, Date.now() + 60_000, { concurrency: 2 });
    await until(async () => releases.length === 1, 'the hog to hold its connection');
    // Another expiry takes the waiting job's lease back before the drain releases it (seconds later, as its 4 s timeout nears).
    await db.sql(`select jobs.expire(now => now() + interval '1 hour')`);
    await until(async () => ended.some((e) => e.job.id === unrun!.id), "the waiting job's event");
    for (const release of releases.splice(0)) release();
    const report = await drained;
    expect(report).toMatchObject({ released: 0, releasedUnstarted: 0 });
    expect(report.stale).toBeGreaterThanOrEqual(1);
    // Unfixed: { outcome: 'release', willRetry: true } and no stale.
    expect(ended.find((e) => e.job.id === unrun!.id)).toMatchObject({ outcome: 'release', stale: true, willRetry: false });
  } finally {
    for (const release of releases.splice(0)) release();
  }
});
