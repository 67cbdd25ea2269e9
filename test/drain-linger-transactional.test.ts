// Lingering meets transactional tasks and one-session databases (reviewer X),
// over a real PostgreSQL and PGlite.
import { afterAll, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { pgDriver } from '../src/db/pg.js';
import { pgliteDriver } from '../src/db/pglite.js';
import { testDb } from './support/db.js';

const db = await testDb();

it('a lingering drain whose transactional handlers hang past their timeout still stops at its deadline', async () => {
  // Pool-bound (3 of 4 connections): the hung handlers keep it from claiming,
  // and at stopAt its wait answered at once, round after round, in microtasks.
  const driver = pgDriver(db.url, { max: 4 });
  afterAll(() => driver.close());
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  // It claims again only after the jobs' timers fired: polls 1.5 s apart (the
  // first 1.5 s after the timeouts' wake), and no LISTEN (whose session, once
  // open, sets off a claim at once). A claim sent just before those timers
  // fired and run just after the leases passed (a loaded machine) expired
  // the jobs itself: given back at once, one was claimed again, and the
  // drain's nacks came too late (claimed 3, retried 1, stale 2).
  const q = createQueue({ driver: { ...driver, onQueued: undefined, close: async () => {} } });
  q.defineTask('hang', async () => { await gate; }, { transactional: true });
  await q.publishBulk([{ task: 'hang', timeoutSeconds: 1 }, { task: 'hang', timeoutSeconds: 1 }]);
  const report = await q.drain(10, Date.now() + 4000, { lingerMs: 60_000, pollMs: 1500 });
  release();
  expect(report).toMatchObject({ claimed: 2, retried: 2 });
  expect(['deadline', 'empty']).toContain(report.stoppedBy);
});

// A fresh PGlite costs about 6 CPU-seconds (its wasm and initdb): on a loaded
// 2-core machine it took 59 s and 99 s to start, past the default 60 s; its
// claim took 0.7 s there (so a timeout of 20 s, not 5).
it('on one session (PGlite), a transactional task may take a rate-limit token and report progress', async () => {
  const driver = await pgliteDriver('memory://');
  const q = createQueue({ driver });
  await q.migrate();
  let stored: boolean | undefined;
  q.defineTask('tx.limited', async (_body, ctx) => {
    await ctx.rateLimit('k', { limit: 5, perSeconds: 60 });
    stored = await ctx.progress({ done: 1 });
    return 'ok';
  }, { transactional: true });
  await q.publish('tx.limited', {}, { timeoutSeconds: 20 });
  // Its transaction holds the one session: the token is taken in it (before, its statement waited for the session for good).
  expect(await q.drain(1, Date.now() + 30_000, { overrunMs: 2000 })).toMatchObject({ claimed: 1, succeeded: 1 });
  expect(stored).toBe(false); // progress cannot show beside the transaction that holds the session
  expect((await driver.query<{ tokens: number }>('select tokens from jobs.rate_limit'))).toMatchObject({ rows: [{ tokens: 4 }] });
  await q.close();
}, 180_000);
