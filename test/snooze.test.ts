// SnoozeJob: a handler puts its job back to run later without spending an
// attempt (a 'release' with a time), over a real PostgreSQL: plain and
// transactional tasks, a cancel meanwhile, SQL callers, and bad options.
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createQueue, SnoozeJob, ValidationError, type TaskMap } from '../src/index.js';
import { testDb } from './support/db.js';
import { yearLike } from './support/future-year.js';

const db = await testDb();
const sql = db.sql;
const deadline = () => Date.now() + 120_000;
const HOUR = 3_600_000;

function queueWith(tasks: TaskMap = {}) {
  return createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });
}

interface QueueRow { attempt: number; scheduled_at: Date; lease_until: Date | null; started_at: Date | null; last_error: string | null }
const queued = async (id: string) => (await sql<QueueRow>(
  'select attempt, scheduled_at, lease_until, started_at, last_error from jobs.job_queue where job_id = $1', [id]))[0];
const ended = (id: string) => sql<{ status: string; attempts: number; error: string | null }>(
  'select status, attempts, error from jobs.job where job_id = $1', [id]);
const makeDue = (id: string) => sql('update jobs.job_queue set scheduled_at = now() where job_id = $1', [id]);

beforeAll(async () => {
  await sql('create table if not exists public.marks (job_id bigint)');
});
beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, public.marks');
});

describe('SnoozeJob', () => {
  it('{ delayMs } gives the job back until then without spending an attempt, counted as released', async () => {
    let runs = 0;
    const q = queueWith({ wait: async () => { if (++runs < 3) throw new SnoozeJob({ delayMs: HOUR }); return 'done'; } });
    // No retry at all: a snooze that spent an attempt would fail it.
    const id = await q.publish('wait', {}, { maxRetries: 0 });
    const before = Date.now();
    const first = await q.drain(10, deadline());
    const after = Date.now();
    expect(first).toMatchObject({ claimed: 1, released: 1, retried: 0, failed: 0, succeeded: 0, failures: [] });
    const row = (await queued(id))!;
    expect(row).toMatchObject({ attempt: 0, lease_until: null, started_at: null });
    expect(row.scheduled_at.getTime()).toBeGreaterThanOrEqual(before + HOUR);
    expect(row.scheduled_at.getTime()).toBeLessThanOrEqual(after + HOUR);
    expect(row.last_error).toBe(`snoozed until ${row.scheduled_at.toISOString()} (1 in a row)`);

    // Not due: a drain now leaves it alone.
    expect(await q.drain(10, deadline())).toMatchObject({ claimed: 0 });
    await makeDue(id);
    expect(await q.drain(10, deadline())).toMatchObject({ claimed: 1, released: 1 });
    expect(await queued(id)).toMatchObject({ attempt: 0, last_error: expect.stringMatching(/^snoozed until \S+ \(2 in a row\)$/) });
    await makeDue(id);
    expect(await q.drain(10, deadline())).toMatchObject({ claimed: 1, succeeded: 1 });
    // Its first and only attempt; the snoozes before it stay as its last note.
    expect(await ended(id)).toEqual([{ status: 'success', attempts: 1, error: expect.stringMatching(/^snoozed until \S+ \(2 in a row\)$/) }]);
  });

  it('keeps the error of the attempt before, below the count; a real error starts the count again', async () => {
    let runs = 0;
    const q = queueWith({
      flaky: async () => {
        runs++;
        if (runs === 1 || runs === 4) throw new Error(`boom ${runs}`);
        throw new SnoozeJob({ delayMs: HOUR });
      },
    });
    const id = await q.publish('flaky', {}, { maxRetries: 5 });
    expect(await q.drain(10, deadline())).toMatchObject({ retried: 1 });
    for (const n of [1, 2]) {
      await makeDue(id);
      expect(await q.drain(10, deadline())).toMatchObject({ released: 1 });
      const row = (await queued(id))!;
      expect(row.attempt).toBe(1); // the failed attempt stays spent; the snoozes spend none
      expect(row.last_error).toMatch(new RegExp(`^snoozed until \\S+ \\(${n} in a row\\)\\nError: boom 1\\n\\s+at `));
    }
    await makeDue(id);
    expect(await q.drain(10, deadline())).toMatchObject({ retried: 1 });
    await makeDue(id);
    expect(await q.drain(10, deadline())).toMatchObject({ released: 1 });
    const row = (await queued(id))!;
    expect(row.attempt).toBe(2);
    expect(row.last_error).toMatch(/^snoozed until \S+ \(1 in a row\)\nError: boom 4\n/);
    expect(row.last_error).not.toMatch(/boom 1/);
  });

  it('{ at } in the future is the time; a time already past runs it again at once', async () => {
    const at = new Date(Date.now() + 2 * HOUR);
    let runs = 0;
    const q = queueWith({
      future: async () => { throw new SnoozeJob({ at }); },
      past: async () => { if (++runs === 1) throw new SnoozeJob({ at: new Date('2001-01-01T00:00:00Z') }); return 'second run'; },
    });
    const future = await q.publish('future', {}, { maxRetries: 0 });
    const past = await q.publish('past', {}, { maxRetries: 0 });
    const report = await q.drain(1, deadline()); // one per claim: 'past' is due again before the drain ends
    expect(report).toMatchObject({ released: 2, succeeded: 1, retried: 0, failed: 0 });
    expect(await queued(future)).toMatchObject({ attempt: 0, scheduled_at: at });
    expect(await ended(past)).toMatchObject([{ status: 'success', attempts: 1 }]);
  });

  it('in a transactional task rolls the work back, then gives the job back until its time', async () => {
    const q = queueWith();
    q.defineTask('tx.snooze', async (_: unknown, ctx) => {
      await ctx.db.query('insert into public.marks values ($1)', [ctx.job.id]);
      throw new SnoozeJob({ delayMs: HOUR });
    }, { transactional: true });
    const id = await q.publish('tx.snooze', {}, { maxRetries: 0 });
    const before = Date.now();
    expect(await q.drain(10, deadline())).toMatchObject({ claimed: 1, released: 1, succeeded: 0, retried: 0, failed: 0 });
    const after = Date.now();
    expect(await sql('select * from public.marks')).toEqual([]);
    const row = (await queued(id))!;
    expect(row).toMatchObject({ attempt: 0, lease_until: null, last_error: expect.stringMatching(/^snoozed until /) });
    expect(row.scheduled_at.getTime()).toBeGreaterThanOrEqual(before + HOUR);
    expect(row.scheduled_at.getTime()).toBeLessThanOrEqual(after + HOUR);
  });

  it('of a job whose cancel was requested while it ran: it ends cancelled, as a release does', async () => {
    const q = queueWith({
      snooze: async (_: unknown, ctx: { job: { id: string } }) => {
        await sql('select jobs.cancel($1, $2)', [ctx.job.id, 'user deleted']);
        throw new SnoozeJob({ delayMs: HOUR });
      },
    });
    const id = await q.publish('snooze', {}, { maxRetries: 3 });
    expect(await q.drain(10, deadline())).toMatchObject({ cancelled: 1, released: 0 });
    expect(await queued(id)).toBeUndefined();
    expect(await ended(id)).toEqual([{ status: 'cancelled', attempts: 1, error: 'cancelled: user deleted' }]);
  });

  it('is recognised by its brand: a copy of the class from another bundle (the CLI\'s) snoozes too', async () => {
    const q = queueWith({
      copy: async () => {
        const e = Object.assign(new Error('snoozed'), { delayMs: HOUR });
        Object.defineProperty(e, Symbol.for('pgdrain.snooze_job'), { value: true });
        throw e;
      },
    });
    const id = await q.publish('copy', {}, { maxRetries: 0 });
    expect(await q.drain(10, deadline())).toMatchObject({ released: 1 });
    expect(await queued(id)).toMatchObject({ attempt: 0 });
  });
});

describe('jobs.settle, for SQL callers', () => {
  it('takes a release with a retry_at: a snooze', async () => {
    const at = new Date(`${yearLike(2030)}-01-01T09:00:00Z`); // ahead of now(), the time a release without one keeps
    const { id } = (await sql<{ id: string }>(`select jobs.publish('sql.snooze', max_retries => 0)::text as id`))[0]!;
    await sql(`select * from jobs.consume(1)`);
    const { r } = (await sql<{ r: unknown }>(
      `select jobs.settle(jsonb_build_array(jsonb_build_object('id', $1::bigint, 'attempt', 1, 'outcome', 'release',
                                                               'retry_at', $2::timestamptz))) as r`, [id, at]))[0]!;
    expect(r).toMatchObject({ released: 1, stale: 0 });
    expect(await queued(id)).toMatchObject({ attempt: 0, scheduled_at: at,
                                             last_error: `snoozed until ${at.toISOString()} (1 in a row)` });
    // A release without a time keeps the job's time and its error, as before.
    await sql(`update jobs.job_queue set scheduled_at = now(), last_error = 'earlier' where job_id = $1`, [id]);
    await sql(`select * from jobs.consume(1)`);
    const { n } = (await sql<{ n: number }>(`select jobs.release(array[$1::bigint]) as n`, [id]))[0]!;
    expect(n).toBe(1);
    const row = (await queued(id))!;
    expect(row).toMatchObject({ attempt: 0, last_error: 'earlier' });
    expect(row.scheduled_at.getTime()).toBeLessThan(at.getTime());
  });
});

describe('SnoozeJob options', () => {
  const bad = (options: unknown) => {
    try {
      new SnoozeJob(options as never);
    } catch (error) {
      expect(error).toBeInstanceOf(ValidationError);
      const { field, message } = error as ValidationError;
      return { field, message };
    }
    throw new Error(`expected ${JSON.stringify(options)} to be refused`);
  };

  it('refuses anything but exactly one valid time, naming the field and the rule (as RetryJob)', () => {
    expect(bad(undefined)).toEqual({ field: 'options', message: 'options: must be { at: Date } or { delayMs: number }' });
    expect(bad({})).toEqual({ field: 'options', message: 'options: must give at (a Date) or delayMs (milliseconds from now)' });
    expect(bad({ delay: 5 })).toEqual({ field: 'options', message: 'options: unknown option "delay"' });
    expect(bad({ at: new Date(), delayMs: 5 })).toEqual({ field: 'options.delayMs', message: 'options.delayMs: give at or delayMs, not both' });
    for (const at of [new Date(Number.NaN), '2030-01-01T00:00:00Z', new Date('+020000-01-01T00:00:00Z')]) {
      expect(bad({ at })).toEqual({ field: 'options.at', message: 'options.at: must be a valid Date from 1970 to 9999' });
    }
    for (const delayMs of [-1, Number.NaN, Number.POSITIVE_INFINITY, '5000', 11 * 365 * 86_400_000]) {
      expect(bad({ delayMs })).toMatchObject({ field: 'options.delayMs' });
    }
  });

  it('keeps its time and says it in its message', () => {
    const at = new Date('2030-01-01T00:00:00Z');
    expect(new SnoozeJob({ at })).toMatchObject({ name: 'SnoozeJob', message: 'snoozed until 2030-01-01T00:00:00.000Z', at, delayMs: undefined });
    expect(new SnoozeJob({ delayMs: 0 })).toMatchObject({ message: 'snoozed for 0 ms', delayMs: 0, at: undefined });
  });
});
