// Batch tasks (defineTask(…, { batch: true }), src/batch-run.ts): the jobs of
// one task a claim brings run in one handler call, whose answer settles each
// job, over a real PostgreSQL (in-process drains, and the built CLI with a
// tasks module importing the built library). No kill -9 case here: a batch
// job is claimed and leased as any job, and that path is unchanged.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { createQueue, defineTask, FailJob, RetryJob, SnoozeJob, ValidationError, type BatchContext, type BatchItem,
  type JobEndEvent, type TaskMap } from '../src/index.js';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const deadline = () => Date.now() + 120_000;
const HOUR = 3_600_000;
const queueWith = (tasks: TaskMap = {}) => createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });

type N = { n: number };
interface Ended { job_id: string; status: string; result: unknown; error: string | null; attempts: number }
interface Queued { job_id: string; attempt: number; last_error: string | null; late: boolean }
const endedRows = () => sql<Ended>('select j.job_id::text, status, result, error, attempts from jobs.job j order by j.job_id');
const queuedRows = () => sql<Queued>(`select q.job_id::text, attempt, last_error, scheduled_at > now() + interval '30 minutes' as late
                                      from jobs.job_queue q order by q.job_id`);
const publishN = (q: ReturnType<typeof queueWith>, task: string, count: number, options: { timeoutSeconds?: number } = {}) =>
  q.publishBulk(Array.from({ length: count }, (_, n) => ({ task, body: { n }, ...options })));

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
});

describe('batch tasks', () => {
  it('run the 50 jobs of a claim in one call, in claim order, each result stored; hooks fire per job', async () => {
    const calls: number[][] = [];
    const sum = defineTask('math.double', async (jobs: BatchItem<N>[]) => {
      calls.push(jobs.map((j) => j.body.n));
      return jobs.map((j) => ({ doubled: j.body.n * 2, id: j.job.id }));
    }, { batch: true });
    const q = queueWith({ sum });
    const ids = await publishN(q, 'math.double', 50);
    const events: JobEndEvent[] = [];
    const started: string[] = [];
    const report = await q.drain(50, deadline(), { onJobStart: ({ job }) => started.push(job.id), onJobEnd: (e) => events.push(e) });
    expect(report).toMatchObject({ claimed: 50, succeeded: 50, failed: 0, retried: 0, batches: 2 });
    expect(calls).toEqual([Array.from({ length: 50 }, (_, n) => n)]);
    const rows = await endedRows();
    expect(rows.map((r) => r.job_id)).toEqual(ids);
    rows.forEach((r, n) => expect(r).toMatchObject({ status: 'success', result: { doubled: n * 2, id: ids[n] }, attempts: 1 }));
    expect(started.sort()).toEqual([...ids].sort());
    expect(events.map((e) => e.outcome)).toEqual(Array(50).fill('ack'));
  });

  it('split a claim\'s group into calls of maxSize; returning nothing acks every job', async () => {
    const sizes: number[] = [];
    const q = queueWith();
    q.defineTask('rows.insert', async (jobs: BatchItem<N>[]) => {
      sizes.push(jobs.length);
    }, { batch: { maxSize: 20 } });
    await publishN(q, 'rows.insert', 50);
    expect(await q.drain(50, deadline())).toMatchObject({ claimed: 50, succeeded: 50 });
    expect(sizes).toEqual([20, 20, 10]);
    expect(new Set((await endedRows()).map((r) => `${r.status}:${String(r.result)}`))).toEqual(new Set(['success:null']));
  });

  it('settle each job by its item: a result, an Error retried, FailJob failed, RetryJob and SnoozeJob at their time, a non-JSON result failed', async () => {
    const q = queueWith({
      // @ts-expect-error the result type is refused too (JsonResult): plain JavaScript can return it
      mixed: defineTask('mixed', async (jobs: BatchItem<N>[]) => [
        { ok: jobs[0]!.body.n },
        new Error('this one broke'),
        new FailJob('no retry will help'),
        new RetryJob('come back later', { delayMs: HOUR }),
        new SnoozeJob({ delayMs: HOUR }),
        undefined,
        () => 'not JSON',
      ], { batch: true }),
    });
    const ids = await publishN(q, 'mixed', 7);
    const report = await q.drain(10, deadline());
    expect(report).toMatchObject({ claimed: 7, succeeded: 2, failed: 2, retried: 2, released: 1 });
    const ended = Object.fromEntries((await endedRows()).map((r) => [r.job_id, r]));
    expect(ended[ids[0]!]).toMatchObject({ status: 'success', result: { ok: 0 } });
    expect(ended[ids[2]!]).toMatchObject({ status: 'failure', attempts: 1, error: expect.stringMatching(/^FailJob: no retry will help\n/) });
    expect(ended[ids[5]!]).toMatchObject({ status: 'success', result: null });
    // a result JSON cannot hold: the same on a retry, so failed at once
    expect(ended[ids[6]!]).toMatchObject({ status: 'failure', attempts: 1, error: expect.stringMatching(/^FailJob: result not stored: result is a function/) });
    const queued = Object.fromEntries((await queuedRows()).map((r) => [r.job_id, r]));
    expect(queued[ids[1]!]).toMatchObject({ attempt: 1, late: false, last_error: expect.stringMatching(/^Error: this one broke\n/) });
    expect(queued[ids[3]!]).toMatchObject({ attempt: 1, late: true, last_error: expect.stringMatching(/^RetryJob: come back later/) });
    // a snooze gives the attempt back
    expect(queued[ids[4]!]).toMatchObject({ attempt: 0, late: true, last_error: expect.stringMatching(/^snoozed until /) });
  });

  it('a throw is each job\'s throw: every one retried with the error recorded (a FailJob fails them all)', async () => {
    const sizes: number[] = [];
    const q = queueWith({
      down: defineTask('api.down', async (jobs: BatchItem[]) => {
        sizes.push(jobs.length);
        throw new Error('the bulk API is down');
      }, { batch: true }),
      gone: defineTask('api.gone', async (jobs: BatchItem[]) => {
        sizes.push(jobs.length);
        throw new FailJob('account closed');
      }, { batch: true }),
    });
    await publishN(q, 'api.down', 5);
    await publishN(q, 'api.gone', 3);
    const report = await q.drain(10, deadline());
    expect(report).toMatchObject({ claimed: 8, retried: 5, failed: 3, succeeded: 0 });
    expect(sizes.sort()).toEqual([3, 5]);
    expect(report.failures.filter((f) => f.task === 'api.down').map((f) => f.willRetry)).toEqual(Array(5).fill(true));
    const queued = await queuedRows();
    expect(queued).toHaveLength(5);
    for (const r of queued) expect(r).toMatchObject({ attempt: 1, last_error: expect.stringMatching(/^Error: the bulk API is down\n/) });
    expect((await endedRows()).map((r) => [r.status, r.error?.split('\n')[0]]))
      .toEqual(Array(3).fill(['failure', 'FailJob: account closed']));
  });

  it('an answer of the wrong shape retries every job with an error naming the rule', async () => {
    const q = queueWith({
      short: defineTask('short', async (jobs: BatchItem[]) => jobs.slice(1).map(() => 'ok'), { batch: true }),
      odd: defineTask('odd', async () => 'done' as never, { batch: true }),
    });
    await publishN(q, 'short', 4);
    await publishN(q, 'odd', 2);
    expect(await q.drain(10, deadline())).toMatchObject({ claimed: 6, retried: 6, succeeded: 0 });
    const errors = (await queuedRows()).map((r) => r.last_error!.split('\n')[0]);
    expect(errors).toEqual([
      ...Array(4).fill('TypeError: batch handler of short returned an array of 3 for 4 jobs: it must return nothing '
        + '(every job succeeds) or an array of 4, one item per job in order (a result, or an Error)'),
      ...Array(2).fill('TypeError: batch handler of odd returned string for 2 jobs: it must return nothing '
        + '(every job succeeds) or an array of 2, one item per job in order (a result, or an Error)'),
    ]);
  });

  it('at the shortest timeout of its jobs, the call\'s signal fires and every job is retried as timed out', async () => {
    let reason: unknown;
    const q = queueWith({
      hang: defineTask('hang', (_jobs: BatchItem[], ctx: BatchContext) => new Promise<void>((done) => {
        ctx.signal.addEventListener('abort', () => {
          reason = ctx.signal.reason;
          done();
        }, { once: true });
      }), { batch: true }),
    });
    const [short] = await publishN(q, 'hang', 1, { timeoutSeconds: 2 }); // not 0.3 s: a claim answered after its timer (0.27 s) nacks it unstarted
    await publishN(q, 'hang', 2, { timeoutSeconds: 30 });
    const report = await q.drain(10, deadline());
    expect(report).toMatchObject({ claimed: 3, retried: 3, succeeded: 0 });
    expect((reason as Error).message).toBe('timed out after 2 s');
    expect((await queuedRows()).map((r) => [r.job_id === short, r.attempt, r.last_error])).toEqual([
      [true, 1, 'timed out after 2 s'],
      [false, 1, 'timed out after 2 s (the shortest timeout of its batch call)'],
      [false, 1, 'timed out after 2 s (the shortest timeout of its batch call)'],
    ]);
  });

  it('a job cancelled while its call runs ends cancelled, its item dropped; the others go on', async () => {
    let cancelled = '';
    let signalFired = false;
    const q = queueWith({
      slow: defineTask('slow', async (jobs: BatchItem[], ctx: BatchContext) => {
        cancelled = jobs[1]!.job.id;
        await q.cancel(cancelled);
        // until the drain has settled it as cancelled (its cancel check runs every 100 ms)
        while ((await sql(`select 1 from jobs.job where job_id = $1 and status = 'cancelled'`, [cancelled])).length === 0) {
          await new Promise((r) => setTimeout(r, 20));
        }
        signalFired = ctx.signal.aborted;
        return jobs.map((j) => `done ${j.body as string}`);
      }, { batch: true }),
    });
    await q.publishBulk(['a', 'b', 'c'].map((body) => ({ task: 'slow', body })));
    expect(await q.drain(10, deadline(), { cancelCheckMs: 100 })).toMatchObject({ claimed: 3, succeeded: 2, cancelled: 1 });
    expect(signalFired).toBe(false);
    expect((await endedRows()).map((r) => [r.job_id === cancelled, r.status, r.result])).toEqual([
      [false, 'success', 'done a'], [true, 'cancelled', null], [false, 'success', 'done c']]);
  });

  it('run beside plain tasks of the same claim; concurrency counts jobs, a batch call\'s too', async () => {
    const calls: string[][] = [];
    const q = queueWith({
      'one.plain': async (body: N) => body.n + 1,
      many: defineTask('many', async (jobs: BatchItem<N>[]) => {
        calls.push(jobs.map((j) => j.job.task));
        return jobs.map((j) => j.body.n * 10);
      }, { batch: true }),
    });
    await q.publishBulk(Array.from({ length: 10 }, (_, n) => ({ task: n % 2 ? 'many' : 'one.plain', body: { n } })));
    expect(await q.drain(10, deadline())).toMatchObject({ claimed: 10, succeeded: 10 });
    expect(calls).toEqual([Array(5).fill('many')]);
    expect((await endedRows()).map((r) => r.result)).toEqual([1, 10, 3, 30, 5, 50, 7, 70, 9, 90]);

    await sql('truncate jobs.job_queue, jobs.job');
    calls.length = 0;
    await publishN(q, 'many', 30);
    expect(await q.drain(30, deadline(), { concurrency: 10 })).toMatchObject({ claimed: 30, succeeded: 30 });
    expect(calls.map((c) => c.length)).toEqual([10, 10, 10]);
  });

  it('ctx.rateLimit takes one token for the call: over the limit, every job of it is snoozed', async () => {
    const key = `bulk-${db.name}`;
    const sizes: number[] = [];
    const q = queueWith({
      mail: defineTask('mail.bulk', async (jobs: BatchItem[], ctx: BatchContext) => {
        sizes.push(jobs.length);
        await ctx.rateLimit(key, { limit: 1, perSeconds: 3600 }); // the bucket's one token
        await ctx.rateLimit(key, { limit: 1, perSeconds: 3600 }); // none left: a SnoozeJob
      }, { batch: true }),
    });
    await publishN(q, 'mail.bulk', 4);
    expect(await q.drain(10, deadline())).toMatchObject({ claimed: 4, released: 4, succeeded: 0 });
    expect(sizes).toEqual([4]);
    expect((await queuedRows()).map((r) => [r.attempt, r.late])).toEqual(Array(4).fill([0, true]));
  });
});

describe('defineTask options.batch', () => {
  const handler = async () => undefined;
  it.each([
    [{ batch: 'yes' }, 'options.batch: must be true, false or { maxSize }'],
    [{ batch: null }, 'options.batch: must be true, false or { maxSize }'],
    [{ batch: { size: 3 } }, 'options.batch: unknown option "size"'],
    [{ batch: { maxSize: 0 } }, 'options.batch.maxSize: must be an integer from 1 to 10000 (jobs per call)'],
    [{ batch: { maxSize: 2.5 } }, 'options.batch.maxSize: must be an integer from 1 to 10000 (jobs per call)'],
    [{ batch: { maxSize: '10' } }, 'options.batch.maxSize: must be an integer from 1 to 10000 (jobs per call)'],
    [{ batch: { maxSize: 10_001 } }, 'options.batch.maxSize: must be an integer from 1 to 10000 (jobs per call)'],
    [{ batch: true, transactional: true }, 'options.batch: cannot be combined with transactional: true (docs/tasks.md "Batch handlers")'],
  ])('refuses %j naming the field', (options, message) => {
    for (const define of [defineTask, queueWith().defineTask]) {
      let error: unknown;
      try {
        define('t', handler, options as never);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ValidationError);
      expect(error).toMatchObject({ message, field: message.split(':')[0] });
    }
  });

  it('takes false as a plain task, and { } as a batch task without a maxSize', async () => {
    const calls: unknown[] = [];
    const q = queueWith({
      plain: defineTask('plain', async (body: N) => { calls.push(body.n); }, { batch: false }),
      bulk: defineTask('bulk', async (jobs: BatchItem<N>[]) => { calls.push(jobs.map((j) => j.body.n)); }, { batch: {} }),
    });
    await publishN(q, 'plain', 3);
    await publishN(q, 'bulk', 3);
    expect(await q.drain(10, deadline())).toMatchObject({ claimed: 6, succeeded: 6 });
    expect(calls).toEqual([0, 1, 2, [0, 1, 2]]);
  });
});

describe('pgdrain drain (CLI)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgdrain-batch-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('runs a batch task a tasks module defines with the built library', async () => {
    const tasks = join(dir, 'tasks.mjs');
    writeFileSync(tasks, `import { defineTask } from ${JSON.stringify(resolve('dist/src/index.js'))};
export const insert = defineTask('rows.insert', async (jobs) => jobs.map((j) => ({ row: j.body.n, of: jobs.length })),
  { batch: { maxSize: 4 } });`);
    await sql(`select jobs.publish('rows.insert', jsonb_build_object('n', n)) from generate_series(1, 10) n`);
    const r = await runCli(db.url, 'drain', '--tasks', tasks, '--batch', '10', '--json');
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toMatchObject({ claimed: 10, succeeded: 10, failed: 0, retried: 0 });
    expect((await endedRows()).map((row) => row.result)).toEqual([
      ...[1, 2, 3, 4].map((n) => ({ row: n, of: 4 })), ...[5, 6, 7, 8].map((n) => ({ row: n, of: 4 })),
      { row: 9, of: 2 }, { row: 10, of: 2 }]);
  });
});
