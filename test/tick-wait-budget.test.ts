// A claim that waits for a bounded queue's tick (up to a tenth of its budget,
// jobs.tick_wait_bound) starts its jobs' leases after the wait (waitedMs), so
// the time left of the drain's budget is the budget less the wait: a job
// whose timeout fits the budget but not what the wait left was claimed, its
// lease ending past the drain's stop, and cut there ('stopped at the drain
// deadline', an attempt spent) though its timeout "fit". Now the claim
// compares timeouts with what is left after the wait. On a real PostgreSQL.
import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { createQueue, defineTask } from '../src/index.js';
import { pgDriver } from '../src/db/pg.js';
import { testDb } from './support/db.js';

const db = await testDb();
const driver = pgDriver(db.url, { max: 3 });
afterAll(() => driver.close());

it("a job whose timeout fits the budget but not what a tick's wait left of it is not claimed", async () => {
  // The wait's bound: 2 s once claims have failed to publish the tick for 20 s, and a tenth of the claim's
  // budget (about 1 s here). Claims have failed since it came due, 9 minutes ago.
  await db.sql(`alter database "${db.name}" set pgdrain.tick_wait_ms = '200ms'`);
  await db.sql(`select jobs.create_queue('capped', max_size => 100)`);
  await db.sql(`select jobs.schedule('sweep', '* * * * *', 'sweep.run', queue => 'capped', now => now() - interval '10 minutes')`);
  await db.sql(`insert into jobs.tick_miss select name, next_run_at, next_run_at from jobs.recurring`);
  const seen: { leaseUntil: number }[] = [];
  const work = defineTask('work', async (_body: object, ctx) => {
    const [row] = await db.sql<{ l: number }>(
      `select extract(epoch from lease_until)::float8 * 1000 as l from jobs.job_queue where job_id = $1`, [ctx.job.id]);
    seen.push({ leaseUntil: row!.l });
  });
  const queue = createQueue({ driver: { ...driver, close: async () => {} }, tasks: { work } });
  await queue.publish('work', {}, { timeoutSeconds: 10 });
  const app = new pg.Client({ connectionString: db.url });
  await app.connect();
  try {
    await app.query('begin');
    await app.query(`select jobs.publish('sweep.run', '{"by":"app"}', queue => 'capped')`);
    const settleMarginMs = 500;
    const deadline = Date.now() + 10_600 + settleMarginMs; // a budget of about 10.5 s: the wait leaves about 9.5 s
    const report = await queue.drain(10, deadline, { settleMarginMs });
    // Unfixed: claimed 1, its lease ending about 0.5 s past the drain's stop.
    for (const s of seen) expect(s.leaseUntil).toBeLessThanOrEqual(deadline - settleMarginMs);
    expect(report).toMatchObject({ claimed: 0, skipped: 1 });
    expect(report.skippedTimeouts).toMatchObject({ shortestSeconds: 10, longestSeconds: 10 });
    expect(report.skippedTimeouts!.budgetSeconds).toBeLessThan(10);
  } finally {
    await app.query('rollback');
    await app.end();
  }
  const [job] = await db.sql<{ attempt: number }>(`select attempt from jobs.job_queue where task = 'work'`);
  expect(job).toEqual({ attempt: 0 }); // no attempt spent: it runs in a drain with the time for it
});
