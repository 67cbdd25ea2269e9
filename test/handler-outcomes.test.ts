// FailJob and RetryJob: a handler ends its job for good, or asks for a retry
// at a time of its choosing, over a real PostgreSQL (in-process drains, a
// transactional task, and the CLI with a tasks module importing the built library).
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createQueue, FailJob, RetryJob, ValidationError, type TaskMap } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const deadline = () => Date.now() + 120_000;
const HOUR = 3_600_000;

function queueWith(tasks: TaskMap = {}) {
  return createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });
}

interface QueueRow { job_id: string; attempt: number; scheduled_at: Date; lease_until: Date | null; last_error: string | null }
interface EndedRow { job_id: string; status: string; attempts: number; error: string | null }

const queued = (id: string) => sql<QueueRow>(
  'select job_id::text, attempt, scheduled_at, lease_until, last_error from jobs.job_queue where job_id = $1', [id]);
const ended = (id: string) => sql<EndedRow>(
  'select job_id::text, status, attempts, error from jobs.job where job_id = $1', [id]);

beforeAll(async () => {
  await sql('create table if not exists public.marks (job_id bigint)');
});
beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, public.marks');
});

describe('FailJob', () => {
  it('ends the job failed after one attempt, retries left or not, with its message and stack', async () => {
    const q = queueWith({ pay: async () => { throw new FailJob('card declined: no retry will help'); } });
    const id = await q.publish('pay', {}, { maxRetries: 3 });
    const report = await q.drain(10, deadline());
    expect(report).toMatchObject({ claimed: 1, failed: 1, retried: 0, succeeded: 0 });
    expect(report.failures).toMatchObject([{ id, willRetry: false }]);
    expect(await queued(id)).toEqual([]);
    const [row] = await ended(id);
    expect(row).toMatchObject({ status: 'failure', attempts: 1 });
    expect(row!.error).toMatch(/^FailJob: card declined: no retry will help\n\s+at /);

    // in the last attempt it ends failed, as a plain throw would
    const last = await q.publish('pay', {}, { maxRetries: 0 });
    expect(await q.drain(10, deadline())).toMatchObject({ failed: 1, retried: 0 });
    expect(await ended(last)).toMatchObject([{ status: 'failure', attempts: 1, error: expect.stringMatching(/^FailJob: card declined/) }]);
  });
});

describe('RetryJob', () => {
  it('{ delayMs } schedules the retry delayMs from when it was thrown, beside a plain throw and an ack', async () => {
    const q = queueWith({
      later: async () => { throw new RetryJob('rate limited', { delayMs: HOUR }); },
      plain: async () => { throw new Error('plain'); },
      ok: async () => 'fine',
    });
    const id = await q.publish('later', {}, { maxRetries: 3 });
    const plain = await q.publish('plain', {}, { maxRetries: 3 });
    await q.publish('ok');
    const before = Date.now();
    const report = await q.drain(10, deadline());
    const after = Date.now();
    expect(report).toMatchObject({ claimed: 3, succeeded: 1, retried: 2, failed: 0 });
    const [row] = await queued(id);
    expect(row).toMatchObject({ attempt: 1, lease_until: null, last_error: expect.stringMatching(/^RetryJob: rate limited\n\s+at /) });
    // thrown between before and after, so its time is between these (no clock race: the drain's clock is this process's)
    expect(row!.scheduled_at.getTime()).toBeGreaterThanOrEqual(before + HOUR);
    expect(row!.scheduled_at.getTime()).toBeLessThanOrEqual(after + HOUR);
    // the plain throw in the same batch still takes the backoff (seconds, not the hour)
    const [p] = await queued(plain);
    expect(p!.scheduled_at.getTime()).toBeLessThan(before + HOUR / 2);
    expect(report.failures.find((f) => f.id === id)).toMatchObject({ willRetry: true });
  });

  it('counts an attempt: retried while retries are left, then failed with its error', async () => {
    const q = queueWith({ later: async () => { throw new RetryJob('still busy', { delayMs: HOUR }); } });
    const id = await q.publish('later', {}, { maxRetries: 1 });
    const spent = await q.publish('later', {}, { maxRetries: 0 }); // no retry left: fails at once
    const before = Date.now();
    expect(await q.drain(10, deadline())).toMatchObject({ retried: 1, failed: 1 });
    expect(await ended(spent)).toMatchObject([{ status: 'failure', attempts: 1, error: expect.stringMatching(/^RetryJob: still busy\n/) }]);
    const [row] = await queued(id);
    expect(row).toMatchObject({ attempt: 1 });
    expect(row!.scheduled_at.getTime()).toBeGreaterThanOrEqual(before + HOUR);
    await sql('update jobs.job_queue set scheduled_at = now() where job_id = $1', [id]);
    expect(await q.drain(10, deadline())).toMatchObject({ claimed: 1, retried: 0, failed: 1 });
    expect(await ended(id)).toMatchObject([{ status: 'failure', attempts: 2, error: expect.stringMatching(/^RetryJob: still busy\n/) }]);
  });

  it('{ at } in the future is the retry time; a time already past retries now (not at the past time, not after the backoff)', async () => {
    const at = new Date(Date.now() + 2 * HOUR);
    let runs = 0;
    const q = queueWith({
      future: async () => { throw new RetryJob('tomorrow', { at }); },
      past: async () => { if (++runs === 1) throw new RetryJob('now', { at: new Date('2001-01-01T00:00:00Z') }); return 'second run'; },
    });
    const future = await q.publish('future', {}, { maxRetries: 3 });
    const past = await q.publish('past', {}, { maxRetries: 3 });
    const before = Date.now();
    const first = await q.drain(1, deadline()); // one job per claim: 'past' is due again before the drain ends
    const after = Date.now();
    expect((await queued(future))[0]!.scheduled_at.getTime()).toBe(at.getTime());
    // the same drain ran it again: retried once, then succeeded on attempt 2
    expect(first).toMatchObject({ retried: 2, succeeded: 1 });
    const [row] = await sql<{ status: string; attempts: number; scheduled_at: Date }>(
      'select status, attempts, scheduled_at from jobs.job where job_id = $1', [past]);
    expect(row).toMatchObject({ status: 'success', attempts: 2 });
    expect(row!.scheduled_at.getTime()).toBeGreaterThanOrEqual(before);
    expect(row!.scheduled_at.getTime()).toBeLessThanOrEqual(after);
  });
});

describe('a cancel requested while the handler ran', () => {
  it('still ends the job cancelled, whether it threw FailJob or RetryJob', async () => {
    const cancelThen = (thrown: () => Error) => async (_: unknown, ctx: { job: { id: string } }) => {
      await sql('select jobs.cancel($1, $2)', [ctx.job.id, 'user deleted']);
      throw thrown();
    };
    const q = queueWith({
      fail: cancelThen(() => new FailJob('gave up')),
      retry: cancelThen(() => new RetryJob('later', { delayMs: HOUR })),
    });
    const fail = await q.publish('fail', {}, { maxRetries: 3 });
    const retry = await q.publish('retry', {}, { maxRetries: 3 });
    const report = await q.drain(10, deadline());
    expect(report).toMatchObject({ cancelled: 2, retried: 0, failed: 0 });
    expect(report.failures.find((f) => f.id === fail)).toMatchObject({ willRetry: false });
    expect(await ended(fail)).toMatchObject([{ status: 'cancelled', error: expect.stringMatching(/^cancelled: user deleted\nFailJob: gave up/) }]);
    expect(await ended(retry)).toMatchObject([{ status: 'cancelled', error: expect.stringMatching(/^cancelled: user deleted\nRetryJob: later/) }]);
  });
});

describe('in a transactional task', () => {
  it('FailJob and RetryJob roll the work back and decide the outcome', async () => {
    const q = queueWith();
    const mark = (ctx: { job: { id: string }; db: { query(t: string, p?: unknown[]): Promise<unknown> } }) =>
      ctx.db.query('insert into public.marks values ($1)', [ctx.job.id]);
    q.defineTask('tx.fail', async (_: unknown, ctx) => { await mark(ctx); throw new FailJob('refused'); }, { transactional: true });
    q.defineTask('tx.retry', async (_: unknown, ctx) => { await mark(ctx); throw new RetryJob('locked', { delayMs: HOUR }); },
                 { transactional: true });
    const fail = await q.publish('tx.fail', {}, { maxRetries: 3 });
    const retry = await q.publish('tx.retry', {}, { maxRetries: 3 });
    const before = Date.now();
    expect(await q.drain(10, deadline())).toMatchObject({ failed: 1, retried: 1, succeeded: 0 });
    const after = Date.now();
    expect(await sql('select * from public.marks')).toEqual([]);
    expect(await ended(fail)).toMatchObject([{ status: 'failure', attempts: 1, error: expect.stringMatching(/^FailJob: refused\n/) }]);
    const [row] = await queued(retry);
    expect(row).toMatchObject({ attempt: 1, last_error: expect.stringMatching(/^RetryJob: locked\n/) });
    expect(row!.scheduled_at.getTime()).toBeGreaterThanOrEqual(before + HOUR);
    expect(row!.scheduled_at.getTime()).toBeLessThanOrEqual(after + HOUR);
  });
});

describe('thrown from a tasks module the CLI loads', () => {
  // The CLI (dist/cli.mjs) bundles its own pgdrain; the module imports dist/src: two copies of each class.
  it('is recognised by its brand, not its class', async () => {
    const q = queueWith();
    const fail = await q.publish('outcome.fail', {}, { maxRetries: 3 });
    const retry = await q.publish('outcome.retry', { delayMs: HOUR }, { maxRetries: 3 });
    const before = Date.now();
    const run = await new Promise<{ code: number | null; stderr: string }>((done) => {
      execFile(process.execPath, [resolve('dist/cli.mjs'), 'drain', '--tasks', resolve('test/fixtures/handler-outcome-tasks.mjs'),
                                  '--deadline', '120', '--json'],
               { env: { ...process.env, DATABASE_URL: db.url }, timeout: 60_000 },
               (error, _stdout, stderr) => done({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stderr }));
    });
    const after = Date.now();
    expect(run).toMatchObject({ code: 0 });
    expect(await ended(fail)).toMatchObject([{ status: 'failure', attempts: 1,
                                               error: expect.stringMatching(/^FailJob: card declined: no retry will help\n/) }]);
    const [row] = await queued(retry);
    expect(row).toMatchObject({ attempt: 1, last_error: expect.stringMatching(/^RetryJob: rate limited\n/) });
    expect(row!.scheduled_at.getTime()).toBeGreaterThanOrEqual(before + HOUR);
    expect(row!.scheduled_at.getTime()).toBeLessThanOrEqual(after + HOUR);
  });
});

describe('RetryJob options', () => {
  const bad = (options: unknown) => {
    try {
      new RetryJob('x', options as never);
    } catch (error) {
      expect(error).toBeInstanceOf(ValidationError);
      const { field, message } = error as ValidationError;
      return { field, message };
    }
    throw new Error(`expected ${JSON.stringify(options)} to be refused`);
  };

  it('refuses anything but exactly one valid time, naming the field and the rule', () => {
    expect(bad(undefined)).toEqual({ field: 'options', message: 'options: must be { at: Date } or { delayMs: number }' });
    expect(bad({})).toEqual({ field: 'options', message: 'options: must give at (a Date) or delayMs (milliseconds from now)' });
    expect(bad({ delay: 5 })).toEqual({ field: 'options', message: 'options: unknown option "delay"' });
    expect(bad({ at: new Date(), delayMs: 5 })).toEqual({ field: 'options.delayMs', message: 'options.delayMs: give at or delayMs, not both' });
    for (const at of [new Date(Number.NaN), '2030-01-01T00:00:00Z', Date.now(), new Date('+020000-01-01T00:00:00Z')]) {
      expect(bad({ at })).toEqual({ field: 'options.at', message: 'options.at: must be a valid Date from 1970 to 9999' });
    }
    for (const delayMs of [-1, Number.NaN, Number.POSITIVE_INFINITY, '5000', 11 * 365 * 86_400_000]) {
      expect(bad({ delayMs })).toMatchObject({ field: 'options.delayMs', message: expect.stringMatching(/^options\.delayMs: must be a finite number of milliseconds from 0 to \d+ \(ten years\)$/) });
    }
  });

  it('keeps what it was given: message, cause and time', () => {
    const at = new Date('2030-01-01T00:00:00Z');
    const cause = new Error('429');
    const e = new RetryJob('rate limited', { at, cause });
    expect(e).toMatchObject({ name: 'RetryJob', message: 'rate limited', at, delayMs: undefined, cause });
    expect(new RetryJob('soon', { delayMs: 0 })).toMatchObject({ delayMs: 0, at: undefined });
    expect(new FailJob('no', { cause })).toMatchObject({ name: 'FailJob', message: 'no', cause });
  });
});
