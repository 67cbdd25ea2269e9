// The pool-share tests' setup: a pool of `max` connections (3: two for
// handlers, over every drain on it), a transactional task `long` whose
// handler holds its connection until the test calls one of `releases`, and
// the file's own tasks beside it.
import type { Driver } from '../../src/db/driver.js';
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

/**
 * A transactional task `hold` whose handler holds its connection for 0.3 s,
 * and the most of its handlers that ran at once (`most()`), for tests that
 * count a pool's handlers over several drains.
 */
export function countedHold() {
  let running = 0;
  let most = 0;
  const hold = defineTask('hold', async (_body: unknown, ctx) => {
    most = Math.max(most, ++running);
    try {
      await ctx.db.query('select pg_sleep(0.3)');
    } finally {
      running--;
    }
  }, { transactional: true });
  return { tasks: { hold }, most: () => most };
}

/**
 * A copy of `driver` (the same pool, so the same share) that tells when a drain on it lingers: it opens its LISTEN
 * (Driver.onQueued) at its first wait, once a claim found its queue empty. For a test to wait for that, not a
 * fixed time a loaded machine can outlast.
 */
export function lingerWatched(driver: Driver): { driver: Driver; lingers: () => boolean } {
  let lingers = false;
  return { driver: { ...driver, onQueued: (fn) => { lingers = true; return driver.onQueued!(fn); } }, lingers: () => lingers };
}
