// Rate limits across drains: jobs.take_token's token bucket in the database,
// and ctx.rateLimit, which snoozes a job over its limit. Real PostgreSQL,
// real concurrent connections; time moved by setting updated_at back.
import pg from 'pg';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { createQueue, defineTask, migrate, takeToken, ValidationError, type BatchContext, type JobContext, type TaskMap } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';
import { until } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const deadline = () => Date.now() + 120_000;
const clients: pg.Client[] = [];

afterAll(async () => {
  await Promise.all(clients.map((c) => c.end()));
});

function queueWith(tasks: TaskMap = {}) {
  return createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });
}

const bucket = async (key: string) => (await sql<{ tokens: number; updated_at: Date; full_at: Date }>(
  'select tokens, updated_at, full_at from jobs.rate_limit where key = $1', [key]))[0];
/** Moves the bucket's last update `seconds` into the past: as if that much time went by. */
const age = (key: string, seconds: number) =>
  sql(`update jobs.rate_limit set updated_at = updated_at - make_interval(secs => $2),
                                  full_at = full_at - make_interval(secs => $2) where key = $1`, [key, seconds]);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.rate_limit');
});

describe('jobs.take_token', () => {
  it('N tokens go to exactly N of many concurrent takers on separate connections; the rest get the wait', async () => {
    while (clients.length < 12) {
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      clients.push(c);
    }
    // 5 per 10 s: a token every 2 s. Each client takes twice, all at once.
    const waits = (await Promise.all(clients.flatMap((c) => [0, 1].map(() =>
      c.query<{ w: number }>(`select jobs.take_token('api', 5, 10) as w`).then((r) => r.rows[0]!.w)))));
    expect(waits.filter((w) => w === 0)).toHaveLength(5);
    const refused = waits.filter((w) => w !== 0);
    expect(refused).toHaveLength(19);
    for (const w of refused) {
      expect(w).toBeGreaterThan(0);
      expect(w).toBeLessThanOrEqual(2);
    }
    const row = (await bucket('api'))!;
    expect(row.tokens).toBeGreaterThanOrEqual(0);
    expect(row.tokens).toBeLessThan(1);
  });

  it('refills with the time that passed, never above its capacity', async () => {
    const take = async () => (await sql<{ w: number }>(`select jobs.take_token('mail', 3, 60) as w`))[0]!.w;
    expect([await take(), await take(), await take()]).toEqual([0, 0, 0]);
    const wait = await take();
    expect(wait).toBeGreaterThan(19);
    expect(wait).toBeLessThanOrEqual(20); // one token per 20 s
    await age('mail', 45); // two tokens and a quarter
    expect([await take(), await take()]).toEqual([0, 0]);
    const next = await take();
    expect(next).toBeGreaterThan(14);
    expect(next).toBeLessThanOrEqual(15);
    // A day idle fills the bucket to 3, not more.
    await age('mail', 86_400);
    expect([await take(), await take(), await take()]).toEqual([0, 0, 0]);
    expect(await take()).toBeGreaterThan(19);
  });

  it('keeps one row per key, with when it is full again (rows past it can be deleted)', async () => {
    await sql(`select jobs.take_token('a', 2, 10), jobs.take_token('a', 2, 10), jobs.take_token('b', 1, 1)`);
    const a = (await bucket('a'))!;
    // Both taken: what is left is only what refilled between the two takes (however long a loaded machine took).
    expect(a.tokens).toBeGreaterThanOrEqual(0);
    expect(a.tokens).toBeLessThan(1);
    // Full again once the missing tokens refill, at 5 s each (timestamps read to the millisecond).
    expect(a.full_at.getTime() - a.updated_at.getTime()).toBeCloseTo((2 - a.tokens) * 5000, -1);
    expect(await sql(`select key from jobs.rate_limit order by key`)).toEqual([{ key: 'a' }, { key: 'b' }]);
    await age('a', 11);
    await sql(`delete from jobs.rate_limit where full_at < now()`);
    // Gone is full: both tokens there again.
    expect(await sql(`select jobs.take_token('a', 2, 10) as x, jobs.take_token('a', 2, 10) as y`)).toEqual([{ x: 0, y: 0 }]);
  });

  it('refuses bad arguments, naming the field (PDC03)', async () => {
    for (const [args, column] of [
      [`null, 1, 1`, 'key'], [`'', 1, 1`, 'key'], [`repeat('k', 201), 1, 1`, 'key'],
      [`'k', 0, 1`, 'capacity'], [`'k', null, 1`, 'capacity'], [`'k', 1000001, 1`, 'capacity'],
      [`'k', 1, 0`, 'per_seconds'], [`'k', 1, 'NaN'`, 'per_seconds'], [`'k', 1, 'Infinity'`, 'per_seconds'], [`'k', 1, null`, 'per_seconds'],
    ] as const) {
      expect(await sqlErrorOf(sql, `select jobs.take_token(${args})`)).toMatchObject({ code: 'PDC03', column });
    }
    expect(await sql(`select count(*)::int as n from jobs.rate_limit`)).toEqual([{ n: 0 }]);
  });

  it('is granted to <prefix>_worker (and admin), not to a publisher', async () => {
    const prefix = `rl${Date.now().toString(36)}`;
    await migrate(db.driver, { roles: prefix });
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    clients.push(c);
    const as = async (role: string) => {
      await c.query('begin');
      try {
        await c.query(`set local role ${prefix}_${role}`);
        return (await c.query(`select jobs.take_token('roles', 10, 1) as w`)).rows;
      } finally {
        await c.query('rollback');
      }
    };
    expect(await as('worker')).toEqual([{ w: 0 }]);
    expect(await as('admin')).toEqual([{ w: 0 }]);
    await expect(as('publisher')).rejects.toMatchObject({ code: '42501' });
    // The worker reaches the table only through the function.
    await c.query('begin');
    try {
      await c.query(`set local role ${prefix}_worker`);
      await expect(c.query(`select * from jobs.rate_limit`)).rejects.toMatchObject({ code: '42501' });
    } finally {
      await c.query('rollback');
    }
  });
});

describe('ctx.rateLimit', () => {
  it('10 jobs, 3 per 60 s, two drains at once: exactly 3 run, 7 snooze until the next token with no attempt spent', async () => {
    const ran: string[] = [];
    const tasks = {
      stripe: async (_: unknown, ctx: JobContext) => {
        await ctx.rateLimit('stripe', { limit: 3, perSeconds: 60 });
        ran.push(ctx.job.id);
      },
    };
    const ids = await Promise.all(Array.from({ length: 10 }, () => queueWith().publish('stripe', {}, { maxRetries: 0 })));
    const before = Date.now();
    const reports = await Promise.all([queueWith(tasks).drain(5, deadline()), queueWith(tasks).drain(5, deadline())]);
    const after = Date.now();
    const sum = (k: 'claimed' | 'succeeded' | 'released' | 'retried' | 'failed') => reports[0]![k] + reports[1]![k];
    expect({ claimed: sum('claimed'), succeeded: sum('succeeded'), released: sum('released'), retried: sum('retried'), failed: sum('failed') })
      .toEqual({ claimed: 10, succeeded: 3, released: 7, retried: 0, failed: 0 });
    expect(ran).toHaveLength(3);
    const waiting = await sql<{ job_id: string; attempt: number; scheduled_at: Date; last_error: string }>(
      'select job_id::text, attempt, scheduled_at, last_error from jobs.job_queue order by job_id');
    expect(waiting.map((r) => r.job_id).sort()).toEqual(ids.filter((id) => !ran.includes(id)).sort());
    for (const row of waiting) {
      expect(row.attempt).toBe(0);
      expect(row.last_error).toMatch(/^snoozed until \S+ \(1 in a row\)$/);
      // The next token comes 20 s after the third was taken (between before and after).
      expect(row.scheduled_at.getTime()).toBeGreaterThanOrEqual(before + 20_000 - 5);
      expect(row.scheduled_at.getTime()).toBeLessThanOrEqual(after + 20_000 + 5);
    }
    // Once a token is back (20 s later, moved back here), one more runs; the others snooze again.
    await age('stripe', 20);
    await sql('update jobs.job_queue set scheduled_at = now()');
    expect(await queueWith(tasks).drain(10, deadline())).toMatchObject({ claimed: 7, succeeded: 1, released: 6 });
    expect(await sql(`select count(*)::int as n from jobs.job_queue where last_error like 'snoozed until % (2 in a row)'`))
      .toEqual([{ n: 6 }]);
  });

  it('in a transactional task takes its token outside the transaction: work rolled back, token still taken', async () => {
    const q = queueWith();
    await sql('create table if not exists public.calls (job_id bigint)');
    await sql('truncate public.calls');
    q.defineTask('tx.limited', async (_: unknown, ctx) => {
      await ctx.db.query('insert into public.calls values ($1)', [ctx.job.id]);
      await ctx.rateLimit('tx', { limit: 1, perSeconds: 3600 });
      return 'ran';
    }, { transactional: true });
    await q.publish('tx.limited', {}, { maxRetries: 0 });
    await q.publish('tx.limited', {}, { maxRetries: 0 });
    expect(await q.drain(1, deadline())).toMatchObject({ succeeded: 1, released: 1 });
    expect(await sql('select count(*)::int as n from public.calls')).toEqual([{ n: 1 }]); // the snoozed one's insert rolled back
    expect(await sql('select attempt from jobs.job_queue')).toEqual([{ attempt: 0 }]);
    expect((await bucket('tx'))!.tokens).toBeLessThan(1);
  });

  it('bad arguments throw a ValidationError naming the field; in a handler, its job fails that attempt with it', async () => {
    const bad = async (key: unknown, options: unknown) => {
      const error = await takeToken(db.driver, key as string, options as never).then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(ValidationError);
      return (error as ValidationError).field;
    };
    expect(await bad('', { limit: 1, perSeconds: 1 })).toBe('key');
    expect(await bad(42, { limit: 1, perSeconds: 1 })).toBe('key');
    expect(await bad('k'.repeat(201), { limit: 1, perSeconds: 1 })).toBe('key');
    expect(await bad('a\u0000b', { limit: 1, perSeconds: 1 })).toBe('key'); // PostgreSQL text holds no NUL
    expect(await bad('k', undefined)).toBe('options');
    expect(await bad('k', { limit: 1, perSeconds: 1, burst: 2 })).toBe('options');
    for (const limit of [0, 1.5, -1, '3', Number.NaN, 1_000_001]) expect(await bad('k', { limit, perSeconds: 1 })).toBe('options.limit');
    for (const perSeconds of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, '60', 1e10]) {
      expect(await bad('k', { limit: 1, perSeconds })).toBe('options.perSeconds');
    }
    expect(await bad('k', { perSeconds: 1 })).toBe('options.limit');

    const q = queueWith({ wrong: async (_: unknown, ctx: JobContext) => ctx.rateLimit('k', { limit: 0, perSeconds: 60 }) });
    const id = await q.publish('wrong', {}, { maxRetries: 0 });
    expect(await q.drain(10, deadline())).toMatchObject({ failed: 1 });
    expect(await sql('select error from jobs.job where job_id = $1', [id]))
      .toEqual([{ error: expect.stringMatching(/^ValidationError: options\.limit: must be an integer from 1 to 1000000/) }]);
    expect(await sql(`select count(*)::int as n from jobs.rate_limit`)).toEqual([{ n: 0 }]);
  });

  // The take waits on its key's row, locked by a long transaction elsewhere, past the job's 1 s timeout.
  it.each(['job', 'batch'])("a take waiting on its key's row past the %s's timeout is given up: no connection kept, no token taken late", async (kind) => {
    const key = `held-${kind}`;
    const take = async (_: unknown, ctx: JobContext | BatchContext) => ctx.rateLimit(key, { limit: 2, perSeconds: 3600 });
    const q = queueWith({ slow: kind === 'job' ? take : defineTask('slow', take, { batch: true }) });
    expect(await takeToken(db.driver, key, { limit: 2, perSeconds: 3600 })).toBe(0); // one of its 2 left
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    clients.push(holder);
    await holder.query('begin');
    await holder.query('select * from jobs.rate_limit where key = $1 for update', [key]);
    try {
      const [id] = await q.publishBulk([{ task: 'slow', timeoutSeconds: 1, maxRetries: 0 }]);
      expect(await q.drain(1, deadline())).toMatchObject({ claimed: 1, failed: 1 });
      expect(await sql('select error from jobs.job where job_id = $1', [id])).toEqual([{ error: expect.stringMatching(/timed out after 1 s/) }]);
      // Given up on the server too: no statement is left waiting for the row (pg_stat_activity shows
      // the statement's text, not this query's parameter), so none can take a token once it is free.
      const waiting = async () => (await sql<{ n: number }>(`select count(*)::int as n from pg_stat_activity
        where query = $1 and state = 'active'`, ['select jobs.take_token($1, $2, $3) as wait']))[0]!.n;
      await until(async () => (await waiting()) === 0, 'the given-up take to end on the server', 10_000);
    } finally {
      await holder.query('commit'); // the row free: a take still waiting (the failure) goes on
    }
    expect((await bucket(key))!.tokens).toBeGreaterThanOrEqual(1);
  });

  it('takeToken answers 0 or the wait, for code outside a handler', async () => {
    expect(await takeToken(db.driver, 'direct', { limit: 1, perSeconds: 10 })).toBe(0);
    const wait = await takeToken(db.driver, 'direct', { limit: 1, perSeconds: 10 });
    expect(wait).toBeGreaterThan(9);
    expect(wait).toBeLessThanOrEqual(10);
  });
});
