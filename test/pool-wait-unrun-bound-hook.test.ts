// The release its settle makes a nack (released unstarted 25 times in a row:
// jobs.unstarted_bound) went to onJobEnd as a 'release', willRetry true,
// though the job's attempt was spent (with maxRetries 0: failed for good).
// The hook now hears it once its settle has answered: a 'nack' with the
// error recorded, willRetry as the settle did. On a real PostgreSQL.
import { afterAll, expect, it } from 'vitest';
import type { JobEndEvent } from '../src/index.js';
import { neverStartedError, unstartedWhy } from '../src/unstarted.js';
import { fullPool } from './support/full-pool.js';
import { until } from './support/drain-process.js';

const { db, driver, releases, queue } = await fullPool({}, { max: 2 });
afterAll(() => driver.close());

it("onJobEnd tells the 26th release in a row as the nack its settle made of it", async () => {
  await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 20, max_retries => 0,
                                                priority => 1)::text as id`);
  const [unrun] = await db.sql<{ id: string }>(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 1, max_retries => 0)::text as id`);
  // Released unstarted 24 times in a row by earlier drains already: this drain's release of it is the 25th, and (no
  // connection free since, it claims no more: slot-wait.ts starve) a second drain's the 26th.
  await db.sql(`update jobs.job_queue set last_error = 'released unstarted (24 in a row): earlier', unstarted = 24 where job_id = $1`,
               [unrun!.id]);
  const events: JobEndEvent[] = [];
  const stop = new AbortController();
  try {
    const options = { concurrency: 2, signal: stop.signal, graceMs: 0, overrunMs: 2000,
                      onJobEnd: (e: JobEndEvent) => { if (e.job.id === unrun!.id) events.push(e); } };
    const first = queue.drain(10, Date.now() + 30_000, options);
    await until(async () => events.length === 1, 'the first release to be told', 20_000);
    const second = queue.drain(10, Date.now() + 30_000, options);
    await until(async () => (await db.sql('select 1 from jobs.job where job_id = $1', [unrun!.id])).length > 0, 'the unrun job to end', 20_000);
    stop.abort();
    await Promise.all([first, second]);
    const why = unstartedWhy(1, 'timeout');
    // Unfixed: the second was { outcome: 'release', error: why, willRetry: true }.
    expect(events.map(({ outcome, error, willRetry, durationMs }) => ({ outcome, error, willRetry, durationMs }))).toEqual([
      { outcome: 'release', error: why, willRetry: true, durationMs: 0 },
      { outcome: 'nack', error: neverStartedError(why), willRetry: false, durationMs: 0 },
    ]);
  } finally {
    stop.abort();
    for (const release of releases.splice(0)) release();
  }
});
