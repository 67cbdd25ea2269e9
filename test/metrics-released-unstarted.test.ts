// /metrics counted a job released unstarted (a transactional handler that
// waited in vain for a connection) only among all releases (snoozes, jobs
// given back at a stop): nothing told an operator the pool was too small.
// The report counts them (releasedUnstarted) and /metrics adds them up in
// pgdrain_drain_released_unstarted_total. On a real PostgreSQL.
import { afterAll, expect, it } from 'vitest';
import { DrainMetrics } from '../src/http/metrics.js';
import { fullPool } from './support/full-pool.js';

const { db, driver, releases, queue } = await fullPool({}, { max: 2 });
afterAll(() => driver.close());

it('a drain that released a job unstarted says so in its report, and /metrics counts it', async () => {
  await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 1, max_retries => 0) from generate_series(1, 2)`);
  const metrics = new DrainMetrics();
  try {
    // 6 s, not 2: the 1 s jobs fit the budget left even after a slow first claim (a loaded machine).
    const report = await queue.drain(10, Date.now() + 6000, { concurrency: 2, overrunMs: 2000 });
    // Unfixed: no such field; released told nothing of why. The job released is not claimed again while the
    // other's handler holds the one connection (slot-wait.ts starve): once claimed, once released.
    expect(report).toMatchObject({ claimed: 2, failed: 1, released: 1, releasedUnstarted: 1 });
    metrics.start()(report, 10);
    metrics.start()(report, 10);
    const lines = metrics.render([], 0).split('\n');
    expect(lines).toEqual(expect.arrayContaining(['# TYPE pgdrain_drain_released_unstarted_total counter',
      'pgdrain_drain_released_unstarted_total 2', 'pgdrain_drain_jobs_total{outcome="released"} 2']));
  } finally {
    for (const release of releases.splice(0)) release();
  }
});
