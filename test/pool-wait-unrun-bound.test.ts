// A transactional job that never finds a connection free (the pool held by a
// hung handler) was released unstarted again and again while the drain ran,
// its attempt never spent (34 times in 3.4 s at a 0.1 s timeout), and
// nothing ended it. Its settle now makes the 26th release in a row a nack
// (jobs.unstarted_bound): with maxRetries 0 it fails, and the drain's report
// lists it among its failures, saying why. (A drain that released a job
// unstarted no longer claims while no connection is free, slot-wait.ts
// starve: the 26th release here is a second drain's, as drains side by side
// or one after another each release it.) On a real PostgreSQL.
import { afterAll, expect, it } from 'vitest';
import { neverStartedError, unstartedWhy } from '../src/unstarted.js';
import { fullPool } from './support/full-pool.js';
import { until } from './support/drain-process.js';

const { db, driver, releases, queue } = await fullPool({}, { max: 2 });
afterAll(() => driver.close());

it('a job the pool never has room for, released 25 times in a row, then fails, listed in the report', async () => {
  // The hog runs first and holds the handlers' one connection; the other waits for it, 1 s at a time.
  const [hog] = await db.sql<{ id: string }>(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 20, max_retries => 0,
                                                priority => 1)::text as id`);
  const [unrun] = await db.sql<{ id: string }>(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 1, max_retries => 0)::text as id`);
  // Released unstarted 24 times in a row by earlier drains already (each release takes about half its timeout).
  await db.sql(`update jobs.job_queue set last_error = 'released unstarted (24 in a row): earlier', unstarted = 24 where job_id = $1`, [unrun!.id]);
  const stop = new AbortController();
  const options = { concurrency: 2, signal: stop.signal, graceMs: 0, overrunMs: 2000 };
  try {
    // The first drain runs the hog and releases the other (its 25th), then claims nothing while the hog holds on.
    const first = queue.drain(10, Date.now() + 30_000, options);
    await until(async () => (await db.sql<{ n: number }>('select unstarted as n from jobs.job_queue where job_id = $1',
                                                         [unrun!.id]))[0]?.n === 25, 'the first release', 20_000);
    // A second drain claims it, and no connection coming, releases it: the 26th in a row, made a nack (unfixed: released).
    const second = queue.drain(10, Date.now() + 30_000, options);
    const [ended] = await until(async () => {
      const rows = await db.sql<{ status: string; attempts: number; error: string }>(
        'select status, attempts, error from jobs.job where job_id = $1', [unrun!.id]);
      return rows.length > 0 && rows;
    }, 'the unrun job to end', 20_000);
    const why = unstartedWhy(1, 'timeout');
    expect(ended).toEqual({ status: 'failure', attempts: 1, error: neverStartedError(why) });
    stop.abort();
    const [one, two] = await Promise.all([first, second]);
    expect(one).toMatchObject({ claimed: 2, released: 1, releasedUnstarted: 1, failed: 1 });
    expect(one.failures).toEqual([
      { id: hog!.id, task: 'long', attempt: 1, error: "did not stop within graceMs=0 after the drain's signal", willRetry: false },
    ]);
    // Unfixed (with the bound in SQL only): the report counted it failed but did not list it.
    expect(two).toMatchObject({ claimed: 1, released: 0, releasedUnstarted: 0, failed: 1 });
    expect(two.failures).toEqual([{ id: unrun!.id, task: 'long', attempt: 1, error: neverStartedError(why), willRetry: false }]);
  } finally {
    stop.abort();
    for (const release of releases.splice(0)) release();
  }
});
