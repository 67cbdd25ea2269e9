// One settle carrying two outcomes of the same job: the stale nack of its
// earlier delivery (its lease passed and an expiry gave it back; this drain
// claimed it again: 'lease lost') and the next delivery's own nack. The
// report lists only the failure that happened (the second), as it does when
// the two go in different settles. Over a real PostgreSQL.
import { expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import type { JobContext } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();

it("a stale nack and the next delivery's nack of one job in one settle: only the second is listed", async () => {
  let secondRan!: () => void;
  const ranAgain = new Promise<void>((resolve) => (secondRan = resolve));
  const q = createQueue({ driver: { ...db.driver, close: async () => {} } });
  q.defineTask('twice', async (_body: unknown, ctx: JobContext) => {
    if (ctx.job.attempt > 1) {
      secondRan();
      throw new Error('second boom');
    }
    await db.sql(`update jobs.job_queue set lease_until = now() where job_id = $1`, [ctx.job.id]);
    expect(await db.sql(`select jobs.expire() as n`)).toEqual([{ n: 1 }]);
    await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
  });
  const id = await q.publish('twice', null, { timeoutSeconds: 60, maxRetries: 5 });
  const stop = new AbortController();
  // flushIntervalMs long: both outcomes wait for the drain's last settle.
  const drained = q.drain(5, Date.now() + 120_000, { lingerMs: 120_000, pollMs: 100, signal: stop.signal, flushIntervalMs: 60_000 });
  await ranAgain;
  stop.abort();
  const report = await drained;
  expect(report).toMatchObject({ claimed: 2, retried: 1, stale: 1, succeeded: 0, failed: 0 });
  expect(report.failures.map((f) => [f.attempt, f.error.split('\n')[0]])).toEqual([[2, 'Error: second boom']]);
  expect(await db.sql('select attempt, lease_until from jobs.job_queue where job_id = $1', [id])).toEqual([{ attempt: 2, lease_until: null }]);
});
