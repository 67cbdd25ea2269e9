// A drain finds its transactional tasks before it claims (define-task.ts
// hasTransactionalTask), wherever a lookup finds them: one a class instance
// holds, one beside an export whose getter throws. Missed, the drain skipped
// its pool bound and did not refuse neonHttpDriver, which holds no transaction.
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { neonHttpDriver } from '../src/db/neon-http.js';
import { pgDriver } from '../src/db/pg.js';
import { createQueue, defineTask, drain, publish, type Driver, type JobContext, type TaskMap } from '../src/index.js';
import { testDb } from './support/db.js';
import { startNeonHttpServer } from './support/neon-http-server.js';

const db = await testDb();
const endpoint = await startNeonHttpServer(); // stands in for Neon's HTTP SQL endpoint
afterAll(() => endpoint.close());

// drain() itself: createQueue copies tasks with a spread, which would read (and throw in) a getter.
const drainOf = (driver: Driver, tasks: TaskMap, batch = 10) =>
  drain({ db: driver, tasks, publish: (t, b, o) => publish(driver, t, b, o) }, batch, Date.now() + 120_000);

/** How many jobs were claimed (leased) as each handler ran, read in its own transaction. */
const leased: number[] = [];
const billed = () => defineTask('billing.charge', async (_body: unknown, ctx) => {
  const { rows } = await ctx.db.query<{ n: number }>('select count(*)::int as n from jobs.job_queue where lease_until is not null');
  leased.push(rows[0]!.n);
  return 'charged';
}, { transactional: true });
class BillingTasks {
  charge = billed();
}
const shapes: [string, () => TaskMap][] = [
  ['held by a class instance', () => ({ billing: new BillingTasks() }) as unknown as TaskMap],
  ['held by an instance the tasks instance holds', () => new (class Tasks { billing = new BillingTasks(); })() as unknown as TaskMap],
  ['beside an export whose getter throws', () => ({
    get broken(): unknown {
      throw new Error('config missing');
    },
    billing: { charge: billed() },
  }) as TaskMap],
];

beforeEach(async () => {
  await db.sql('truncate jobs.job_queue, jobs.job');
  leased.length = 0;
});

describe('a transactional task', () => {
  it.each(shapes)('%s: refused over neonHttpDriver before any claim', async (_, tasks) => {
    await createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} }).publish('billing.charge');
    const http = neonHttpDriver(db.url, { fetchEndpoint: endpoint.endpoint });
    await expect(drainOf(http, tasks())).rejects.toThrow(/^tasks: a task is transactional, and this driver holds no transaction/);
    expect(await db.sql('select attempt from jobs.job_queue')).toEqual([{ attempt: 0 }]); // never claimed
  });

  it.each(shapes)('%s: runs no more at once than the pool holds less one', async (_, tasks) => {
    // A pool of 2: one connection for the handlers' transactions, one kept for the drain's own statements.
    const driver = pgDriver(db.url, { max: 2 });
    try {
      const q = createQueue({ driver: { ...driver, close: async () => {} }, tasks: {} });
      for (let i = 0; i < 3; i++) await q.publish('billing.charge');
      expect(await drainOf(driver, tasks())).toMatchObject({ claimed: 3, succeeded: 3 });
      // One at a time, each claim takes one job; unbound, the first claim took all three.
      expect(leased).toEqual([1, 1, 1]);
    } finally {
      await driver.close();
    }
  });

  it('a plain instance export is not taken for a transactional one', async () => {
    class Mail {
      send = defineTask('mail.send', async (_body: unknown, _ctx: JobContext) => 'sent');
    }
    await createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} }).publish('mail.send');
    const http = neonHttpDriver(db.url, { fetchEndpoint: endpoint.endpoint });
    expect(await drainOf(http, { mail: new Mail() } as unknown as TaskMap)).toMatchObject({ claimed: 1, succeeded: 1 });
  });
});

describe('an export whose getter throws', () => {
  it('fails its own jobs only: a task served under its defined name beside it still runs', async () => {
    const tasks = {
      get broken(): unknown {
        throw new Error('config missing');
      },
      send: defineTask('email.send', async () => 'sent'),
    } as TaskMap;
    const q = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });
    await q.publish('email.send');
    await q.publish('broken');
    expect(await drainOf(db.driver, tasks)).toMatchObject({ claimed: 2, succeeded: 1, retried: 1 });
    expect(await db.sql(`select task, split_part(last_error, E'\\n', 1) as error from jobs.job_queue`))
      .toEqual([{ task: 'broken', error: 'Error: config missing' }]);
  });
});
