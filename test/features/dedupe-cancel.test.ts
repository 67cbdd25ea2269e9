// Issue 7, features 1 and 2: dedupe keys and cancellation, on a real PostgreSQL.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, PgDrainError, ValidationError, type TaskMap } from '../../src/index.js';
import { testDb } from '../support/db.js';

const db = await testDb();
const sql = db.sql;
const one = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await sql<R>(text, params))[0]!;
const queueWith = (tasks: TaskMap = {}) => createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

describe('dedupe key', () => {
  it('a duplicate while pending or running returns the active job id and writes nothing', async () => {
    const { a } = await one<{ a: string }>(`select jobs.publish('mail.send', '{"n":1}', dedupe_key => 'welcome:42') as a`);
    const { b } = await one<{ b: string }>(`select jobs.publish('mail.send', '{"n":2}', dedupe_key => 'welcome:42') as b`);
    expect(b).toBe(a);
    await sql(`select * from jobs.consume(1)`);
    const { c } = await one<{ c: string }>(`select jobs.publish('mail.send', '{"n":3}', dedupe_key => 'welcome:42') as c`);
    expect(c).toBe(a);
    expect(await sql(`select body from jobs.job_queue`)).toEqual([{ body: { n: 1 } }]);
  });

  it('once the job ended the key is free again; other keys and plain jobs are independent', async () => {
    const { a } = await one<{ a: string }>(`select jobs.publish('t', dedupe_key => 'k') as a`);
    await sql(`select jobs.ack(job_id) from jobs.consume(1)`);
    const { b } = await one<{ b: string }>(`select jobs.publish('t', dedupe_key => 'k') as b`);
    expect(b).not.toBe(a);
    await sql(`select jobs.publish('t', dedupe_key => 'other'), jobs.publish('t'), jobs.publish('t')`);
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 4 });
  });

  it('20 concurrent publishes of one key from separate sessions make one job', async () => {
    const ids = await Promise.all(Array.from({ length: 20 }, () =>
      db.driver.query<{ id: string }>(`select jobs.publish('t', dedupe_key => 'race')::text as id`).then((r) => r.rows[0]!.id)));
    expect(new Set(ids).size).toBe(1);
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 1 });
  });

  it('TypeScript: same id back; a bad key names the field before any round trip; SQL names it too', async () => {
    const q = queueWith();
    const a = await q.publish('t', { x: 1 }, { dedupeKey: 'order:7' });
    expect(await q.publish('t', { x: 2 }, { dedupeKey: 'order:7' })).toBe(a);
    await expect(q.publish('t', {}, { dedupeKey: '' })).rejects.toMatchObject({ field: 'options.dedupeKey' });
    await expect(q.publish('t', {}, { dedupeKey: 'x'.repeat(501) })).rejects.toBeInstanceOf(ValidationError);
    await expect(sql(`select jobs.publish('t', dedupe_key => '')`)).rejects.toMatchObject({ code: 'PD011', column: 'dedupe_key' });
  });
});

describe('cancel', () => {
  it('a pending job ends as cancelled and never runs; an ended or unknown job answers null', async () => {
    const { id } = await one<{ id: string }>(`select jobs.publish('never.runs') as id`);
    await sql(`select jobs.publish('plain')`);
    expect(await one(`select jobs.cancel($1, 'changed my mind') as r`, [id])).toEqual({ r: 'cancelled' });
    expect(await one(`select status, error from jobs.job where job_id = $1`, [id]))
      .toEqual({ status: 'cancelled', error: 'cancelled: changed my mind' });
    let ran = 0;
    const report = await queueWith({ never: { runs: () => void ran++ }, plain: () => null }).drain(10, Date.now() + 120_000);
    expect(ran).toBe(0);
    expect(report.succeeded).toBe(1);
    expect(await one(`select jobs.cancel($1) as r`, [id])).toEqual({ r: null });
    expect(await one(`select jobs.cancel(999999) as r`)).toEqual({ r: null });
  });

  it('a running job: its handler signal fires and it ends as cancelled, not retried', async () => {
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    let aborted = false;
    const q = queueWith({
      slow: (_: unknown, ctx: { signal: AbortSignal }) => new Promise((_, reject) => {
        started();
        ctx.signal.addEventListener('abort', () => {
          aborted = true;
          reject(new Error('stopped'));
        });
      }),
    });
    const id = await q.publish('slow', null, { timeoutSeconds: 60, maxRetries: 5 });
    const drained = q.drain(10, Date.now() + 120_000, { cancelCheckMs: 100 });
    await running;
    expect(await q.cancel(id, 'user left')).toBe('cancelling');
    const report = await drained;
    expect(aborted).toBe(true);
    expect(report).toMatchObject({ cancelled: 1, retried: 0, failed: 0, stoppedBy: 'empty' });
    const row = await one<{ status: string; error: string }>(`select status, error from jobs.job where job_id = $1`, [id]);
    expect(row.status).toBe('cancelled');
    expect(row.error).toMatch(/^cancelled: user left/);
  });

  it('SQL: a cancel requested while running turns a nack or an expiry into cancelled; an ack still succeeds', async () => {
    await sql(`select jobs.publish('a', max_retries => 3), jobs.publish('b', max_retries => 3), jobs.publish('c', timeout_seconds => 1)`);
    const claimed = await sql<{ job_id: string; task: string }>(`select job_id, task from jobs.consume(3) order by task`);
    for (const j of claimed) expect(await one(`select jobs.cancel($1) as r`, [j.job_id])).toEqual({ r: 'cancelling' });
    await sql(`select jobs.nack($1::bigint, 'boom')`, [claimed[0]!.job_id]);
    await sql(`select jobs.ack($1::bigint, '{"done":true}')`, [claimed[1]!.job_id]);
    await sql(`select jobs.expire(now => now() + interval '1 minute')`);
    expect(await sql(`select task, status, result from jobs.job order by task`)).toEqual([
      { task: 'a', status: 'cancelled', result: null },
      { task: 'b', status: 'success', result: { done: true } },
      { task: 'c', status: 'cancelled', result: null },
    ]);
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 0 });
  });

  it('TypeScript: a bad id names the field', async () => {
    await expect(queueWith().cancel('abc')).rejects.toMatchObject({ field: 'jobId', code: 'invalid_argument' });
    expect(PgDrainError).toBeDefined();
    expect(pg).toBeDefined();
  });
});
