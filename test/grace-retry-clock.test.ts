// A job still running when a signalled drain stops is retried at once
// (wind-down.ts interrupted): due by the database's clock, not the drain's.
// A host whose clock runs ahead of the database's (a VM resumed, NTP not yet
// synced, a container on a drifting node) would otherwise send a retry time
// that far ahead, and the job would wait that long, where a release had left
// it due. The host's clock is set ahead here as such a host's would be (a
// test cannot set the machine's own): Date, new Date() included.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createQueue, defineTask, type TaskMap } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const queueWith = (tasks: TaskMap) => createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });
const AHEAD_MS = 600_000;

beforeEach(() => sql('truncate jobs.job_queue, jobs.job'));
afterEach(() => void vi.useRealTimers());

describe("a drain whose clock is 10 minutes ahead of the database's, stopped by its signal", () => {
  it.each([
    ['a plain handler, at the grace\'s end', (hang: () => Promise<void>): TaskMap => ({ t: async () => hang() }), 'grace'],
    ['a batch handler, at the grace\'s end', (hang: () => Promise<void>): TaskMap =>
      ({ t: defineTask('t', async () => hang(), { batch: true }) }), 'grace'],
    ['a plain handler, at its hardSignal', (hang: () => Promise<void>): TaskMap => ({ t: async () => hang() }), 'hard'],
  ])('%s: the job it retries is due at once', async (_name, tasks, how) => {
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + AHEAD_MS, shouldAdvanceTime: true });
    const stop = new AbortController();
    let release = () => {};
    const q = queueWith(tasks(() => {
      queueMicrotask(() => stop.abort()); // once both have started; a handler that does not honour its signal
      return new Promise<void>((resolve) => (release = resolve));
    }));
    await q.publish('t', null, { timeoutSeconds: 30 });
    await q.publish('t', null, { timeoutSeconds: 30 });
    const options = how === 'grace' ? { signal: stop.signal, graceMs: 50 } : { signal: stop.signal, hardSignal: stop.signal };
    const report = await q.drain(5, Date.now() + 60_000, options);
    release();
    expect(report).toMatchObject({ stoppedBy: 'signal', claimed: 2, retried: 2 });
    expect(await sql(`select attempt, lease_until, scheduled_at <= now() as due from jobs.job_queue order by job_id`))
      .toEqual([{ attempt: 1, lease_until: null, due: true }, { attempt: 1, lease_until: null, due: true }]);
  });
});
