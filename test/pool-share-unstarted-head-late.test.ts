// A drain that released a job unstarted claims once more when its claims came
// back full (slot-wait.ts starve), so plain jobs behind transactional ones run
// while a hung transactional handler holds the pool's one connection for
// handlers (pool-share-unstarted-head). It counted every claim since its
// start as asked for: a lingering drain's claims of the empty queue, before
// the jobs came, made its full claim prove nothing; and a drain begun with
// no transactional task (made so by queue.defineTask since) counted none, so
// neither ever claimed once more. Now its last claim decides. On a real PostgreSQL.
import { afterAll, expect, it } from 'vitest';
import { createQueue, defineTask } from '../src/index.js';
import { until } from './support/drain-process.js';
import { fullPool } from './support/full-pool.js';

let plainRan = 0;
const plain = defineTask('plain', async () => { plainRan++; });
const quick = defineTask('quick', async (_body: unknown, ctx) => { await ctx.db.query('select 1'); }, { transactional: true });
// Pool of 2: one connection for transactional handlers, one kept for claims and settles.
const { db, driver, releases, queue } = await fullPool({ plain, quick }, { max: 2 });
afterAll(() => driver.close());

/** hog (priority 3) and quick (2) first, 6 plain jobs behind them: one statement, one NOTIFY. */
const publishHeadFirst = (q: string) => db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 1, max_retries => 0,
    priority => 3, queue => '${q}'), jobs.publish('quick', '{}'::jsonb, timeout_seconds => 1, max_retries => 0, priority => 2,
    queue => '${q}'), (select count(jobs.publish('plain', '{}'::jsonb, timeout_seconds => 2, queue => '${q}')) from generate_series(1, 6))`);

it('a lingering drain whose empty claims came before the jobs runs the plain jobs behind the released one', async () => {
  plainRan = 0;
  await db.sql(`select jobs.create_queue('idle')`);
  const stop = new AbortController();
  let ended = 0;
  const drained = queue.drain(10, Date.now() + 30_000, { queue: 'idle', concurrency: 2, overrunMs: 2000, lingerMs: 30_000,
                                                         signal: stop.signal, graceMs: 0, onJobEnd: () => { ended++; } });
  try {
    // A transactional job before them, run: the claim that brings it comes back short (1 of 2), and so do those that
    // find the queue empty.
    await db.sql(`select jobs.publish('quick', '{}'::jsonb, timeout_seconds => 2, queue => 'idle')`);
    await until(async () => ended === 1, 'the first job to run', 20_000);
    await publishHeadFirst('idle');
    // Unfixed: its empty claims counted as asked for, so the full claim of hog and quick proved nothing and it starved
    // after quick's release: ran 0 of 6 until its deadline.
    await until(async () => plainRan === 6, 'the plain jobs to run', 20_000);
    stop.abort();
    expect(await drained).toMatchObject({ succeeded: 7, failed: 1 });
  } finally {
    stop.abort();
    for (const release of releases.splice(0)) release();
    await drained.catch(() => undefined);
  }
});

it('a drain begun with no transactional task, its transactional tasks defined since, runs the plain jobs behind', async () => {
  plainRan = 0;
  await db.sql(`select jobs.create_queue('late')`);
  const late = createQueue({ driver, tasks: { plain } }); // no transactional task yet: the drain starts without a pool share
  await db.sql(`select jobs.publish('lateHog', '{}'::jsonb, timeout_seconds => 1, max_retries => 0, priority => 3, queue => 'late'),
    jobs.publish('lateQuick', '{}'::jsonb, timeout_seconds => 1, max_retries => 0, priority => 2, queue => 'late'),
    (select count(jobs.publish('plain', '{}'::jsonb, timeout_seconds => 2, queue => 'late')) from generate_series(1, 6))`);
  const stop = new AbortController(); // unfixed: it waits to its deadline
  const drained = late.drain(10, Date.now() + 30_000, { queue: 'late', concurrency: 2, overrunMs: 2000, signal: stop.signal, graceMs: 0 });
  // Defined before its first claim's answer: its jobs' lookups find them.
  late.defineTask('lateHog', async (_body: unknown, ctx) => {
    await ctx.db.query('select 1');
    await new Promise<void>((resolve) => releases.push(resolve));
  }, { transactional: true });
  late.defineTask('lateQuick', async (_body: unknown, ctx) => { await ctx.db.query('select 1'); }, { transactional: true });
  try {
    // Unfixed: the claims of a drain begun with no transactional task were never counted as full, so it starved after
    // lateQuick's release: ran 0 of 6 until its deadline.
    await until(async () => plainRan === 6, 'the plain jobs to run', 20_000);
  } catch (error) {
    stop.abort();
    throw error;
  } finally {
    for (const release of releases.splice(0)) release(); // then lateQuick runs, and the drain finds the queue empty
    await drained.catch(() => undefined);
  }
  expect(await drained).toMatchObject({ succeeded: 7, failed: 1, stoppedBy: 'empty' });
});
