// The pool-share tests' setup: a pool of `max` connections (3: two for
// handlers, over every drain on it), a transactional task `long` whose
// handler holds its connection until the test calls one of `releases`, and
// the file's own tasks beside it.
import { pgDriver } from '../../src/db/pg.js';
import { createQueue, defineTask, type Task } from '../../src/index.js';
import { testDb } from './db.js';

export async function fullPool(more: Record<string, Task<never, unknown>> = {}, { max = 3 } = {}) {
  const db = await testDb();
  const driver = pgDriver(db.url, { max });
  const releases: (() => void)[] = [];
  const tasks = {
    long: defineTask('long', async (_body: unknown, ctx) => {
      await ctx.db.query('select 1');
      await new Promise<void>((resolve) => releases.push(resolve));
    }, { transactional: true }),
    ...more,
  };
  return { db, driver, releases, tasks, queue: createQueue({ driver, tasks }) };
}
