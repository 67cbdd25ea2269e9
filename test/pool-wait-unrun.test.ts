// A transactional handler past the pool's size less one (pool-share.ts enter)
// waits for a connection, its timeout running. One still waiting at its
// timeout is nacked unrun (README, Typed tasks): its error, the job's
// last_error, said 'timed out after 1 s' as for a handler that ran all that
// time; it now says it never started and why, as a job whose timeout passed
// while its claim was out does (drain.ts endOf). On a real PostgreSQL.
import { afterAll, expect, it } from 'vitest';
import { fullPool } from './support/full-pool.js';

const { db, driver, releases, queue } = await fullPool({}, { max: 2 });
afterAll(() => driver.close());

it('one still waiting at its own timeout is nacked saying it never started', async () => {
  await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 1, max_retries => 3) from generate_series(1, 2)`);
  try {
    const report = await queue.drain(10, Date.now() + 3000, { concurrency: 2, overrunMs: 2000 });
    expect(releases).toHaveLength(1);
    expect(report).toMatchObject({ claimed: 2, retried: 2 });
    const errors = await db.sql<{ e: string }>(`select last_error as e from jobs.job_queue order by last_error`);
    expect(errors.map((r) => r.e)).toEqual(report.failures.map((f) => f.error).sort());
    // Unfixed: both 'timed out after 1 s', the unrun one's as if its handler had run.
    expect(report.failures.map((f) => f.error).sort()).toEqual([
      'timed out after 1 s',
      'timed out after 1 s, before it could start: no connection of the pool came free for it (transactional handlers take its size less one)',
    ]);
  } finally {
    for (const release of releases.splice(0)) release();
  }
});
