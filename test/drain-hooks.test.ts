// DrainOptions.onJobStart / onJobEnd (drain-hooks.ts): called once per claimed
// job with the outcome the drain saw, a throwing hook never breaks the drain,
// over a real PostgreSQL.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createQueue, defineTask, FailJob, SnoozeJob, ValidationError, type DrainOptions, type JobContext, type JobEndEvent,
  type TaskMap } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const deadline = () => Date.now() + 120_000;
const driver = () => ({ ...db.driver, close: async () => {} });
const queueWith = (tasks: TaskMap, drain?: DrainOptions) => createQueue({ driver: driver(), tasks, drain });

/** Resolves once check() answers true. */
async function until(check: () => boolean | Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const waitForAbort = (ctx: JobContext) =>
  new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
});
afterEach(() => {
  vi.restoreAllMocks();
});

describe('onJobEnd', () => {
  it('gives a snoozed job as release, with the SnoozeJob it threw', async () => {
    const events: JobEndEvent[] = [];
    const snooze = new SnoozeJob({ delayMs: 3_600_000 });
    const q = queueWith({ later: async () => { throw snooze; } });
    await q.publish('later');
    expect(await q.drain(10, deadline(), { onJobEnd: (e) => events.push(e) })).toMatchObject({ claimed: 1, released: 1 });
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ outcome: 'release', willRetry: true });
    expect(events[0]!.thrown).toBe(snooze);
    // No error (docs/hooks-and-progress.md: a release with one never started), though last_error counts the snooze.
    expect(events[0]).not.toHaveProperty('error');
    expect((await sql<{ e: string }>('select last_error as e from jobs.job_queue'))[0]!.e).toMatch(/^snoozed until \S+ \(1 in a row\)$/);
  });

  it('is called once per job with ack, nack (willRetry), fail (FailJob), a timeout, and a transactional ack', async () => {
    const events: JobEndEvent[] = [];
    const started: string[] = [];
    const fail = new FailJob('no such user');
    const tx = defineTask('tx.ok', async () => 'committed', { transactional: true });
    const q = queueWith({
      ok: async () => ({ fine: true }),
      flaky: async () => { throw new Error('boom'); },
      last: async () => { throw new Error('boom again'); },
      gone: async () => { throw fail; },
      hang: (_b: unknown, ctx: JobContext) => waitForAbort(ctx),
      tx,
    });
    const ids = {
      ok: await q.publish('ok'),
      // Its retry well after the drain (the default backoff's first, 2.5-5 s, could come within a slow one's 2 s).
      flaky: await q.publish('flaky', null, { maxRetries: 2, retryDelaySeconds: 600 }),
      last: await q.publish('last', null, { maxRetries: 0 }),
      gone: await q.publish('gone', null, { maxRetries: 5 }),
      // Its timer ends 1.8 s after the claim's sending: a claim answered after that (a loaded machine's) nacks it
      // unstarted (handler-end.ts); with 0.3 s that took a round trip of 0.27 s, and 'started' lacked it.
      hang: await q.publish('hang', null, { timeoutSeconds: 2, maxRetries: 0 }),
      tx: await q.publish('tx.ok'),
    };
    const report = await q.drain(10, deadline(), {
      onJobStart: ({ job }) => started.push(job.id),
      onJobEnd: (e) => events.push(e),
    });
    expect(report).toMatchObject({ claimed: 6, succeeded: 2, retried: 1, failed: 3 });
    expect(started.sort()).toEqual(Object.values(ids).sort());
    expect(events).toHaveLength(6);
    const of = (id: string) => events.filter((e) => e.job.id === id);
    for (const id of Object.values(ids)) expect(of(id)).toHaveLength(1);

    expect(of(ids.ok)[0]).toMatchObject({ outcome: 'ack', willRetry: false, durationMs: expect.any(Number),
                                          job: { id: ids.ok, task: 'ok', attempt: 1, queue: 'default' } });
    expect(of(ids.ok)[0]!.error).toBeUndefined();
    expect(of(ids.flaky)[0]).toMatchObject({ outcome: 'nack', willRetry: true, error: expect.stringMatching(/^Error: boom\n/),
                                             thrown: expect.any(Error) });
    expect(of(ids.last)[0]).toMatchObject({ outcome: 'nack', willRetry: false });
    expect(of(ids.gone)[0]).toMatchObject({ outcome: 'fail', willRetry: false, error: expect.stringMatching(/^FailJob: no such user/) });
    expect(of(ids.gone)[0]!.thrown).toBe(fail);
    expect(of(ids.hang)[0]).toMatchObject({ outcome: 'nack', willRetry: false, error: 'timed out after 2 s' });
    expect(of(ids.hang)[0]!.durationMs).toBeGreaterThan(0); // measured from its start
    expect(of(ids.tx)[0]).toMatchObject({ outcome: 'ack', job: { task: 'tx.ok' } });
  });

  it('says cancelled for a job cancelled while it ran, and nack (willRetry) for one interrupted at a hard stop', async () => {
    const events: JobEndEvent[] = [];
    const running = new Set<string>();
    const q = queueWith({
      stuck: (_b: unknown, ctx: JobContext) => {
        running.add(ctx.job.id);
        return waitForAbort(ctx);
      },
    }, { onJobEnd: (e) => events.push(e), cancelCheckMs: 100 }); // as a queue default
    const cancelMe = await q.publish('stuck', null, { timeoutSeconds: 60 });
    const keep = await q.publish('stuck', null, { timeoutSeconds: 60 });
    const hard = new AbortController();
    const drained = q.drain(10, deadline(), { hardSignal: hard.signal });
    await until(() => running.size === 2, 'both handlers');
    expect(await q.cancel(cancelMe)).toBe('cancelling');
    await until(() => events.length === 1, 'the cancel to reach the drain');
    hard.abort();
    expect(await drained).toMatchObject({ cancelled: 1, retried: 1, released: 0, stoppedBy: 'signal' });
    expect(events).toHaveLength(2);
    expect(events[0]).toMatchObject({ outcome: 'cancelled', willRetry: false, job: { id: cancelMe } });
    expect(events[1]).toMatchObject({ outcome: 'nack', willRetry: true, error: "did not stop before the drain's hardSignal", job: { id: keep } });
  });

  it('a hook that throws (or rejects) breaks nothing: every job is settled, and it is reported once', async () => {
    const errors = vi.spyOn(console, 'error').mockImplementation(() => {});
    let calls = 0;
    const q = queueWith({ ok: async () => 'ok', bad: async () => { throw new Error('handler failed'); } });
    for (let i = 0; i < 5; i++) await q.publish('ok');
    await q.publish('bad', null, { maxRetries: 0 });
    const report = await q.drain(10, deadline(), {
      onJobStart: () => { throw new Error('start hook broke'); },
      onJobEnd: () => {
        calls++;
        throw new Error('end hook broke');
      },
    });
    expect(report).toMatchObject({ claimed: 6, succeeded: 5, failed: 1 });
    expect(calls).toBe(6);
    expect(await sql(`select status, count(*)::int as n from jobs.job group by status order by status`))
      .toEqual([{ status: 'failure', n: 1 }, { status: 'success', n: 5 }]);
    expect(errors).toHaveBeenCalledTimes(1);
    expect(String(errors.mock.calls[0]![0])).toMatch(/onJobStart hook threw/);

    // An async hook whose promise rejects: caught too (unhandled, it would end the process).
    errors.mockClear();
    await q.publish('ok');
    expect(await q.drain(10, deadline(), { onJobEnd: async () => { throw new Error('async hook broke'); } }))
      .toMatchObject({ succeeded: 1 });
    await until(() => errors.mock.calls.length === 1, 'the rejection to be reported');
    expect(errors.mock.calls[0]![1]).toMatchObject({ message: 'async hook broke' });
  });

  it('refuses a hook that is not a function, naming the option', async () => {
    const q = queueWith({});
    await expect(q.drain(1, deadline(), { onJobEnd: 'log' as never })).rejects.toThrow(ValidationError);
    await expect(q.drain(1, deadline(), { onJobEnd: 'log' as never }))
      .rejects.toMatchObject({ field: 'options.onJobEnd', message: expect.stringMatching(/must be a function/) });
    await expect(q.drain(1, deadline(), { onJobStart: {} as never })).rejects.toMatchObject({ field: 'options.onJobStart' });
  });
});
