// Drains on one pg.Pool through different driver objects share its
// connections: the share was keyed by the driver object, so a copy of a
// driver ({ ...driver }, as a wrapper would write) or a second pgDriver over
// the same pool counted its handlers apart, and the drains together ran more
// transactional handlers than the pool holds less one (those past it wait for
// a connection with their timeout running).
import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { countedHold } from './support/full-pool.js';

const db = await testDb();
const POOL_MAX = 3; // two connections for handlers, over every drain on it
const pool = new pg.Pool({ connectionString: db.url, max: POOL_MAX });
pool.on('error', () => {});
afterAll(() => pool.end());

const { tasks, most } = countedHold();

it('drains on one pool through a driver, its copy and a second driver over it run no more handlers than it holds less one', async () => {
  await db.sql(`select jobs.publish('hold', '{}'::jsonb, timeout_seconds => 30, max_retries => 0) from generate_series(1, 12)`);
  const driver = pgDriver(pool);
  const drivers = [driver, { ...driver }, pgDriver(pool)];
  const reports = await Promise.all(drivers.map((d) => createQueue({ driver: d, tasks }).drain(10, Date.now() + 60_000)));
  expect(reports.reduce((n, r) => n + r.succeeded, 0)).toBe(12);
  expect(most()).toBeLessThanOrEqual(POOL_MAX - 1);
});
