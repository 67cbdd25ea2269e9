// A drain claims only jobs whose timeout fits before its deadline (less
// settleMarginMs): "every job it starts can finish in time". A claim that
// publishes due ticks starts its jobs' leases after them (jobs.claim_json),
// so their time must fit from there: a job that fitted only counting from the
// claim's start was claimed, then stopped at the drain's deadline before its
// handler could finish, an attempt spent. Here a trigger makes each of 5
// ticks' publish take 0.3 s. On a real PostgreSQL.
import { afterAll, beforeEach, expect, it } from 'vitest';
import { createQueue, defineTask } from '../src/index.js';
import { pgDriver } from '../src/db/pg.js';
import { testDb } from './support/db.js';

const db = await testDb();
const driver = pgDriver(db.url, { max: 3 });
afterAll(() => driver.close());

beforeEach(async () => {
  await db.sql('truncate jobs.job_queue, jobs.recurring');
  await db.sql(`create or replace function public.slow_tick() returns trigger language plpgsql as $$
    begin perform pg_sleep(0.3); return new; end $$`);
  await db.sql(`create or replace trigger slow_tick after insert on jobs.job_queue for each row
                when (new.task like 'tick.%') execute function public.slow_tick()`);
  for (let i = 1; i <= 5; i++) {
    await db.sql(`select jobs.schedule('s${i}', '* * * * *', 'tick.run', runner => 'drains', now => now() - interval '10 minutes')`);
  }
});

it("a claim whose ticks took 1.5 s takes no job that no longer fits the deadline from where its lease starts", async () => {
  const ran: string[] = [];
  const work = defineTask('work', async (_body: object, ctx) => {
    ran.push(String(ctx.job.id));
    await new Promise((resolve) => setTimeout(resolve, 1800));
  });
  const queue = createQueue({ driver: { ...driver, close: async () => {} }, tasks: { work } });
  await queue.publish('work', {}, { timeoutSeconds: 2 });
  // Its budget: 2.5 s at the claim (3 s, less the 0.5 s settle margin), the job's timeout 2 s;
  // its lease would start 1.5 s later, so it could run to 0.5 s past the deadline.
  const report = await queue.drain(10, Date.now() + 3000);
  // Unfixed: claimed 1, stopped at the drain deadline after 1.2 s or so, its attempt spent.
  expect(report).toMatchObject({ claimed: 0, failures: [] });
  expect(ran).toEqual([]);
  expect(await db.sql(`select attempt, lease_until from jobs.job_queue where task = 'work'`)).toEqual([{ attempt: 0, lease_until: null }]);
});
