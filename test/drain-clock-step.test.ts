// The host's clock stepped back while a handler ran (NTP correcting a fast
// clock, a VM resumed): an ack's duration, Date.now() at its end minus at its
// start, comes out below 0. jobs.settle_arrays refuses such an ms (PD008), so
// the drain sends it as 0: its acks, and every other outcome of their settle
// statement, still land (refused, the whole batch would stay leased and run
// again, and the drain would fail). Date.now() is stepped here as the host's
// clock would be: a test cannot step the machine's own.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createQueue, defineTask, type TaskMap } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const queueWith = (tasks: TaskMap) => createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });

/** Steps Date.now() back by ms from now on, as a host's clock correction would. */
function stepClockBack(ms: number): void {
  const now = Date.now.bind(Date);
  vi.spyOn(Date, 'now').mockImplementation(() => now() - ms);
}

beforeEach(() => sql('truncate jobs.job_queue, jobs.job'));
afterEach(() => void vi.restoreAllMocks());

describe('a clock stepped back while handlers ran', () => {
  it.each([
    ['a plain handler', (step: () => void): TaskMap => ({ t: async () => { step(); return 'ok'; } })],
    ['a batch handler', (step: () => void): TaskMap => ({ t: defineTask('t', async () => { step(); }, { batch: true }) })],
    ['a transactional handler', (step: () => void): TaskMap =>
      ({ t: defineTask('t', async () => { step(); return 'ok'; }, { transactional: true }) })],
  ])('%s: its jobs and the rest of their batch succeed, their duration 0', async (_name, tasks) => {
    let stepped = false;
    const q = queueWith({ ...tasks(() => {
      if (!stepped) stepClockBack(5_000);
      stepped = true;
    }), other: async () => 'fine' });
    for (let i = 0; i < 3; i++) await q.publish('t', { i }, { timeoutSeconds: 30 });
    for (let i = 0; i < 3; i++) await q.publish('other', { i }, { timeoutSeconds: 30 });
    const report = await q.drain(10, Date.now() + 60_000);
    expect(report).toMatchObject({ claimed: 6, succeeded: 6, failed: 0, retried: 0 });
    expect(await sql(`select task, status, count(*)::int as n, min(duration_ms) >= 0 as timed from jobs.job
                      group by 1, 2 order by 1`))
      .toEqual([{ task: 'other', status: 'success', n: 3, timed: true }, { task: 't', status: 'success', n: 3, timed: true }]);
    expect(await sql('select job_id from jobs.job_queue')).toEqual([]);
  });
});
