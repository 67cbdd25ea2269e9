// Drains on one pool started in the same tick (Promise.all of queue.drain, or
// woken together by one handler's return) must not count the same free
// connections: each read the pool's free slots before its claim's
// settler.take() and took them after it, so two drains took cap each.
import { afterAll, expect, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { countedHold } from './support/full-pool.js';

const db = await testDb();
const POOL_MAX = 3; // two connections for handlers, over every drain on it
const driver = pgDriver(db.url, { max: POOL_MAX });
afterAll(() => driver.close());

const { tasks, most } = countedHold();
const queue = createQueue({ driver, tasks });

it('drains started together on one pool run no more transactional handlers at once than it holds less one', async () => {
  await db.sql(`select jobs.publish('hold', '{}'::jsonb, timeout_seconds => 30, max_retries => 0) from generate_series(1, 12)`);
  const reports = await Promise.all(Array.from({ length: 3 }, () => queue.drain(10, Date.now() + 60_000)));
  expect(reports.reduce((n, r) => n + r.succeeded, 0)).toBe(12);
  expect(most()).toBeLessThanOrEqual(POOL_MAX - 1);
});
