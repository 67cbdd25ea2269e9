// A drain's claim may wait for a bounded queue's publishers' lock before it
// publishes that queue's due tick (jobs.tick_queues; bounded, up to 5 s at
// the default pgdrain.tick_wait_ms once the tick is 50 s overdue). The jobs
// it then claims, in any queue, had that wait taken from their timeouts: a
// 2 s job was nacked "timed out after 2 s, before it could start", an
// attempt spent on a job that never ran. Their leases now start after the
// wait, and the drain counts their time from there (the answer's waitedMs).
// On a real PostgreSQL.
import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { pgDriver } from '../src/db/pg.js';
import { testDb } from './support/db.js';
import { leaseLeftTask } from './support/lease-left.js';

const db = await testDb();
const driver = pgDriver(db.url, { max: 3 });
afterAll(() => driver.close());

it("a job claimed after a tick's wait gets its whole timeout: its lease starts after the wait", async () => {
  // A bound of 2 s once claims have failed to publish the tick for 20 s (10x the setting): past the job's
  // 1 s timeout. Claims have failed since it came due, 9 minutes ago.
  await db.sql(`alter database "${db.name}" set pgdrain.tick_wait_ms = '200ms'`);
  await db.sql(`select jobs.create_queue('capped', max_size => 100)`);
  await db.sql(`select jobs.schedule('sweep', '* * * * *', 'sweep.run', queue => 'capped', now => now() - interval '10 minutes')`);
  await db.sql(`insert into jobs.tick_miss select name, next_run_at, next_run_at from jobs.recurring`);
  const { work, leases } = leaseLeftTask(db.sql);
  const queue = createQueue({ driver: { ...driver, close: async () => {} }, tasks: { work } });
  await queue.publish('work', {}, { timeoutSeconds: 1 });
  const app = new pg.Client({ connectionString: db.url });
  await app.connect();
  try {
    await app.query('begin');
    await app.query(`select jobs.publish('sweep.run', '{"by":"app"}', queue => 'capped')`);
    const report = await queue.drain(10, Date.now() + 60_000);
    // Unfixed: claimed 1, none succeeded: the wait (2 s) had used up its 1 s, an attempt spent.
    expect(report).toMatchObject({ claimed: 1, succeeded: 1 });
    expect(leases).toHaveLength(1);
    expect(leases[0]).toBeGreaterThan(0); // its lease had not passed when its handler ran
  } finally {
    await app.query('rollback');
    await app.end();
  }
  const [job] = await db.sql<{ attempts: number; status: string }>(`select attempts, status from jobs.job where task = 'work'`);
  expect(job).toEqual({ attempts: 1, status: 'success' });
});
