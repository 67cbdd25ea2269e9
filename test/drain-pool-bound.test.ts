// A drain with a transactional task runs no more jobs at once than its pool
// can hold while keeping one connection for its own claims and settles:
// handlers that hang past their timeout holding every connection left the
// drain unable to nack them, and it failed as "database unavailable" on a
// healthy database (reviewer P).
import { afterAll, expect, it } from 'vitest';
import { createQueue, defineTask } from '../src/index.js';
import { pgDriver } from '../src/db/pg.js';
import { testDb } from './support/db.js';

const db = await testDb();
const driver = pgDriver(db.url, { max: 3 });
afterAll(() => driver.close());

it('keeps a connection for its own statements: hung transactional handlers are nacked as timed out', async () => {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const hang = defineTask('tx.hang', async (_body: unknown, ctx) => {
    await ctx.db.query('select 1');
    await gate; // ignores ctx.signal, holding its pooled connection in its transaction
  }, { transactional: true });
  const queue = createQueue({ driver: { ...driver, close: async () => {} }, tasks: { 'tx.hang': hang } });
  for (let i = 0; i < 3; i++) await queue.publish('tx.hang', {}, { timeoutSeconds: 1, maxRetries: 1 });

  const report = await queue.drain(10, Date.now() + 3000, { overrunMs: 1000 });
  release();
  // Two at once (a pool of 3, one kept): both nacked; the third left unclaimed.
  expect(report).toMatchObject({ claimed: 2, retried: 2, succeeded: 0 });
  expect(report.failures.map((f) => f.error)).toEqual(['timed out after 1 s', 'timed out after 1 s']);
  const rows = await db.sql<{ attempt: number; last_error: string | null }>(
    'select attempt, last_error from jobs.job_queue order by attempt desc, job_id');
  expect(rows).toEqual([
    { attempt: 1, last_error: 'timed out after 1 s' },
    { attempt: 1, last_error: 'timed out after 1 s' },
    { attempt: 0, last_error: null },
  ]);
});
