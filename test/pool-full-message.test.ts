// Plain handlers that use the drain's pool themselves (pgDriver(yourPool))
// and hold its every connection past their timeout: the drain's final settle
// of their nacks waits for a connection until its overrun passes. drain()
// rejected with "database unavailable: no reply within 1000 ms after the
// drain's deadline", as for a silent database; it now says the pool was
// full, of what, with its numbers, and what to change. Nothing is lost: the
// jobs run again once their leases end.
import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { createQueue, defineTask } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const pool = new pg.Pool({ connectionString: db.url, max: 2 });
afterAll(() => pool.end());
const releases: (() => void)[] = [];
let hog = true;
const tasks = {
  hog: defineTask('hog', async () => {
    const client = await pool.connect(); // its own connection of the drain's pool, held past its timeout
    try {
      if (hog) await new Promise<void>((resolve) => releases.push(resolve));
    } finally {
      client.release();
    }
    return 'done';
  }),
};
const queue = createQueue({ driver: pgDriver(pool), tasks });
const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

it("a drain whose handlers fill its pool says so when its settle is given up", async () => {
  await db.sql(`select jobs.publish('hog', '{}'::jsonb, timeout_seconds => 1) from generate_series(1, 2)`);
  let error: unknown;
  try {
    await queue.drain(10, Date.now() + 3000, { overrunMs: 1000 });
  } catch (e) {
    error = e;
  } finally {
    hog = false;
    for (const release of releases.splice(0)) release();
  }
  // Unfixed: database unavailable: no reply within 1000 ms after the drain's deadline.
  expect(error).toMatchObject({ code: 'database_unavailable' });
  expect((error as Error).message).toMatch(new RegExp('^' + escape(
    "database unavailable: the pool (max 2) was full for settling 2 jobs' outcomes until 1000 ms after "
    + "the drain's deadline: its connections held by 2 other statements (a handler's own on the pool, other code sharing it), ")
    + String.raw`\d+ statements? waiting for one; ` + escape(
    "raise the pool's size or lower the drain's concurrency (10); 2 jobs' outcomes were not recorded (2 failed): "
    + "the drain's last settle failed. Once their leases end, each runs again, an attempt spent, or fails if that was its "
    + 'last; the error recorded will say its lease passed with no outcome from worker ') + String.raw`\S+$`));
  // Their nacks never landed: the leases ended, and the next drain runs them again (an attempt spent by the expiry).
  expect(await db.sql(`select attempt, lease_until < now() as passed, last_error from jobs.job_queue`))
    .toEqual(Array(2).fill({ attempt: 1, passed: true, last_error: null }));
  expect(await queue.drain(10, Date.now() + 5000)).toMatchObject({ claimed: 2, succeeded: 2 });
  expect(await db.sql(`select attempts, status from jobs.job`)).toEqual(Array(2).fill({ attempts: 2, status: 'success' }));
});
