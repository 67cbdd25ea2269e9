// A drain's claim that publishes a due tick into a bounded queue waits for
// the queue's publishers' lock (jobs.tick_queues, sql/0040), so an app
// transaction that published to that queue and stays open holds the claim
// up. That wait must not outlast what the drain was given: its claim is sent
// with the budget its jobs' timeouts must fit in (max_timeout), and a drain
// of another queue altogether waited until it gave up on the database
// (database_unavailable, overrunMs past its deadline), its own due job left.
// On a real PostgreSQL.
import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { createQueue, defineTask } from '../src/index.js';
import { pgDriver } from '../src/db/pg.js';
import { testDb } from './support/db.js';

const db = await testDb();
const driver = pgDriver(db.url, { max: 3 });
afterAll(() => driver.close());

it("a drain of another queue answers by its deadline, running its job, while an app transaction holds the tick's queue", async () => {
  await db.sql(`select jobs.create_queue('capped', max_size => 100)`);
  await db.sql(`select jobs.schedule('sweep', '* * * * *', 'sweep.run', queue => 'capped', now => now() - interval '10 minutes')`);
  const ran: string[] = [];
  const work = defineTask('work', async () => { ran.push('work'); });
  const queue = createQueue({ driver: { ...driver, close: async () => {} }, tasks: { work } });
  await queue.publish('work', {}, { timeoutSeconds: 1 });  // fits the 2 s drain
  const app = new pg.Client({ connectionString: db.url });
  await app.connect();
  try {
    await app.query('begin');
    await app.query(`select jobs.publish('sweep.run', '{"by":"app"}', queue => 'capped')`);
    const report = await queue.drain(10, Date.now() + 2000, { overrunMs: 1000 })
      .catch((e: { code?: string; message?: string }) => `rejected: ${e.code ?? ''} ${e.message ?? ''}`);
    expect(report).toMatchObject({ claimed: 1, succeeded: 1 });
    expect(ran).toEqual(['work']);
  } finally {
    await app.query('rollback');
    await app.end();
  }
  // The tick, left due, is the next claim's once the app's transaction has ended.
  await queue.drain(10, Date.now() + 2000);
  expect(await db.sql(`select count(*)::int as n from jobs.job_queue where queue = 'capped'`)).toEqual([{ n: 1 }]);
});
