// A graceMs past setTimeout's 24.8 days (2^31 - 1 ms) is a grace, not none:
// Node fires such a timer after 1 ms, so a drain given graceMs: 2 ** 31 (or
// Number.MAX_SAFE_INTEGER, 'as long as they take') aborted and released its
// running handlers the moment its signal came (wind-down.ts; timerAt as the
// drain's other long timers).
import { expect, it } from 'vitest';
import { createQueue, type JobContext } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();

it('a graceMs longer than 24.8 days lets running handlers finish after the signal', async () => {
  const stop = new AbortController();
  let started: () => void;
  const running = new Promise<void>((r) => (started = r));
  const q = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {
    slow: async (_b: unknown, ctx: JobContext) => {
      started();
      await new Promise((r) => setTimeout(r, 300));
      return ctx.signal.aborted ? 'aborted' : 'finished';
    },
  } });
  await q.publish('slow');
  const report = q.drain(1, Date.now() + 120_000, { signal: stop.signal, graceMs: 2 ** 31 });
  await running;
  stop.abort();
  expect(await report).toMatchObject({ claimed: 1, succeeded: 1, released: 0, stoppedBy: 'signal' });
  expect(await db.sql(`select result from jobs.job`)).toEqual([{ result: 'finished' }]);
});
