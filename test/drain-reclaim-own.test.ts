// A drain whose claim hands out again a job it still runs: the job's lease
// passed before its timer fired (here set to have passed; an event loop
// blocked past it), another expiry gave it back (jobs.maintain's, here
// jobs.expire: the drain's own claims leave its leases to its timers), and
// the drain's next claim took it. Over a real PostgreSQL.
import { expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import type { JobContext } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();

it("a job its own drain claims again fires the earlier delivery's signal (lease lost), whose nack counts stale", async () => {
  const reasons: string[] = [];
  let secondRan!: () => void;
  const ranAgain = new Promise<void>((resolve) => (secondRan = resolve));
  let drainReturned!: () => void;
  const returned = new Promise<void>((resolve) => (drainReturned = resolve));
  const q = createQueue({ driver: { ...db.driver, close: async () => {} } });
  q.defineTask('twice', async (_body: unknown, ctx: JobContext) => {
    if (ctx.job.attempt > 1) return secondRan();
    // Its lease passes in the database while it runs here, its timer far off, and an expiry not this drain's gives it back.
    await db.sql(`update jobs.job_queue set lease_until = now() where job_id = $1`, [ctx.job.id]);
    expect(await db.sql(`select jobs.expire() as n`)).toEqual([{ n: 1 }]);
    await Promise.race([new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true })), returned]);
    reasons.push(ctx.signal.aborted ? (ctx.signal.reason as Error).message : 'not aborted');
  });
  const id = await q.publish('twice', null, { timeoutSeconds: 60 });
  const stop = new AbortController();
  // Lingering, it claims again every 100 ms while the first delivery runs: one such claim takes the job again.
  const drained = q.drain(5, Date.now() + 120_000, { lingerMs: 120_000, pollMs: 100, signal: stop.signal });
  await ranAgain;
  stop.abort();
  const report = await drained;
  drainReturned();
  await new Promise((resolve) => setImmediate(resolve));
  // Before, the second delivery took the first one's entry: its signal never fired, its timer found another entry.
  expect(reasons).toEqual([expect.stringMatching(/^lease lost: the database no longer has this delivery running/)]);
  expect(report).toMatchObject({ claimed: 2, succeeded: 1, stale: 1, retried: 0 });
  expect(await db.sql('select status, attempts from jobs.job where job_id = $1', [id])).toEqual([{ status: 'success', attempts: 2 }]);
});
