// A started job as drain() runs it (src/run-handler.ts, JobRun). ctx.signal
// is made only when a handler first reads it (LazySignal): a handler that
// reads it only after its job ended must still see it aborted, with the
// reason it would have had from the start. The jobs of a claim share one
// timer (src/timeouts.ts): one that ends early must not take it from the rest.
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, type JobContext, type TaskMap } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;

function queueWith(tasks: TaskMap) {
  return createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });
}

/** A promise, and what resolves it. */
function gate<T = void>(): { promise: Promise<T>; open: (value: T) => void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => (open = resolve));
  return { promise, open };
}

const deadline = () => Date.now() + 120_000;
const read = (ctx: JobContext) => ({ aborted: ctx.signal.aborted, reason: String((ctx.signal.reason as Error | undefined)?.message) });

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
});

describe('ctx.signal read only after the job ended', () => {
  // Timeouts of 2 s, not 0.3 s: a job whose timer (its timeout less a tenth, from the claim's sending) ended before
  // its claim answered is nacked unstarted (handler-end.ts), which a loaded machine's 0.27 s round trip reached.
  it('after its timeout: aborted, "timed out after …"', async () => {
    const ended = gate();
    const seen = gate<ReturnType<typeof read>>();
    // Deaf to its signal until the drain has nacked its job as timed out.
    const q = queueWith({ deaf: async (_b: unknown, ctx: JobContext) => {
      await ended.promise;
      seen.open(read(ctx));
    } });
    await q.publish('deaf', null, { timeoutSeconds: 2, maxRetries: 0 });
    expect(await q.drain(5, deadline())).toMatchObject({ claimed: 1, failed: 1 });
    ended.open();
    expect(await seen.promise).toEqual({ aborted: true, reason: 'timed out after 2 s' });
  });

  it('after a cancel: aborted, "job cancelled"', async () => {
    const started = gate<string>();
    const ended = gate();
    const seen = gate<ReturnType<typeof read>>();
    const q = queueWith({ deaf: async (_b: unknown, ctx: JobContext) => {
      started.open(ctx.job.id);
      await ended.promise;
      seen.open(read(ctx));
    } });
    await q.publish('deaf', null, { timeoutSeconds: 60 });
    const drained = q.drain(5, deadline(), { cancelCheckMs: 100 });
    expect(await q.cancel(await started.promise)).toBe('cancelling');
    expect(await drained).toMatchObject({ claimed: 1, cancelled: 1 });
    ended.open();
    expect(await seen.promise).toEqual({ aborted: true, reason: 'job cancelled' });
  });

  it('after it returned: aborted, "job settled"; the signal is the same one before and after', async () => {
    let kept: JobContext | undefined;
    const q = queueWith({ ok: async (_b: unknown, ctx: JobContext) => {
      kept = ctx;
    } });
    await q.publish('ok');
    expect(await q.drain(5, deadline())).toMatchObject({ claimed: 1, succeeded: 1 });
    expect(read(kept!)).toEqual({ aborted: true, reason: 'job settled' });
    expect(kept!.signal).toBe(kept!.signal);
  });

  it('read before and after its timeout: one signal, fired once with the timeout', async () => {
    const ended = gate();
    const seen = gate<{ before: boolean; fired: number; after: ReturnType<typeof read>; same: boolean }>();
    const q = queueWith({ deaf: async (_b: unknown, ctx: JobContext) => {
      const signal = ctx.signal;
      let fired = 0;
      signal.addEventListener('abort', () => fired++);
      const before = signal.aborted;
      await ended.promise;
      seen.open({ before, fired, after: read(ctx), same: ctx.signal === signal });
    } });
    await q.publish('deaf', null, { timeoutSeconds: 2, maxRetries: 0 });
    expect(await q.drain(5, deadline())).toMatchObject({ claimed: 1, failed: 1 });
    ended.open();
    expect(await seen.promise).toEqual({ before: false, fired: 1, after: { aborted: true, reason: 'timed out after 2 s' }, same: true });
  });
});

describe('jobs of one claim sharing a timeout', () => {
  it('those that end early leave the timer to the one that hangs: it still times out', { timeout: 20_000 }, async () => {
    const q = queueWith({ quick: async () => 'done', hang: () => new Promise(() => {}) });
    const ids: string[] = [];
    for (const task of ['quick', 'hang', 'quick']) ids.push(await q.publish(task, null, { timeoutSeconds: 2, maxRetries: 0 }));
    expect(await q.drain(5, Date.now() + 10_000)).toMatchObject({ claimed: 3, succeeded: 2, failed: 1, stoppedBy: 'empty' });
    expect(await sql('select job_id::text as id, status, error from jobs.job order by job_id')).toEqual([
      { id: ids[0], status: 'success', error: null },
      { id: ids[1], status: 'failure', error: 'timed out after 2 s' },
      { id: ids[2], status: 'success', error: null },
    ]);
  });
});
