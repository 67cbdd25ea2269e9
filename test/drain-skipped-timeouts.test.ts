// A drain whose deadline is shorter than its due jobs' timeouts claims none
// of them (it never starts work it cannot finish): its report says so in
// `skipped`, and now why, in `skippedTimeouts`: the shortest and longest
// timeout of those jobs and the budget they exceeded, so a first
// drain(…, 5 s) of jobs with the default timeout can say what would run
// them. Read by the claim's count of them, which runs only on a short claim.
import { beforeEach, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const ran: string[] = [];
const q = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: { t: async () => { ran.push('t'); } } });

beforeEach(async () => {
  await db.sql('truncate jobs.job_queue, jobs.job');
  ran.length = 0;
});

it('carries the timeouts of the jobs it skipped, and the budget they exceeded', async () => {
  await q.publishBulk([{ task: 't', timeoutSeconds: 60 }, { task: 't', timeoutSeconds: 300 }, { task: 't', timeoutSeconds: 120.5 }]);
  await q.publish('t', null, { timeoutSeconds: 900, delaySeconds: 3600 }); // not due: not counted
  const report = await q.drain(10, Date.now() + 5000);
  expect(report).toMatchObject({ claimed: 0, skipped: 3, stoppedBy: 'deadline',
                                 skippedTimeouts: { shortestSeconds: 60, longestSeconds: 300, budgetSeconds: expect.any(Number) } });
  // What was left of the 5 s, its settle margin taken off.
  expect(report.skippedTimeouts!.budgetSeconds).toBeLessThan(5);
  expect(ran).toEqual([]);
});

it('is null when nothing was skipped, and counts only what did not fit beside what ran', async () => {
  expect((await q.drain(10, Date.now() + 5000)).skippedTimeouts).toBeNull();
  await q.publishBulk([{ task: 't', timeoutSeconds: 1 }, { task: 't', timeoutSeconds: 30 }]);
  expect(await q.drain(10, Date.now() + 5000)).toMatchObject({ claimed: 1, succeeded: 1, skipped: 1,
    skippedTimeouts: { shortestSeconds: 30, longestSeconds: 30 } });
  expect(ran).toEqual(['t']);
});

it('a last look with no budget: its budget is 0', async () => {
  await q.publish('t', null, { timeoutSeconds: 1 });
  expect(await q.drain(10, Date.now() - 1000)).toMatchObject({ claimed: 0, skipped: 1,
    skippedTimeouts: { shortestSeconds: 1, longestSeconds: 1, budgetSeconds: 0 } });
});
