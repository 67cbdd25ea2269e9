// DESIGN.md's "Public contract", each name exactly as DESIGN writes it (named
// notation where it gives names), against a real PostgreSQL and the built CLI
// (run `npm run build` first): a rename of any of them fails here. DESIGN is
// the source: change it first, and this file with it.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { createQueue, type JobContext } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';
import { reportOf, runCli, runCliWith, spawnCli } from './support/drain-process.js';
import { yearLike } from './support/future-year.js';
import { startServe } from './support/serve-process.js';

const db = await testDb();
const sql = db.sql;
const one = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await sql<R>(text, params))[0]!;
const T0 = `${yearLike(2030)}-01-01T00:00:00Z`; // ahead of now(): a nack to T0 retries later

const dir = mkdtempSync(join(tmpdir(), 'pgdrain-contract-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
// Both resolutions of a dotted name: a nested export and a flat key.
const TASKS = join(dir, 'tasks.mjs');
writeFileSync(TASKS, `
export const math = { sum: async (b) => ({ sum: b.a + b.b }) };
const upper = async (b) => b.s.toUpperCase();
export { upper as 'text.upper' };
`);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
});

describe('SQL, schema jobs', () => {
  it('jobs.publish(task, body, scheduled_at, timeout_seconds, priority, max_retries) by name and by position → a bigint job_id', async () => {
    const named = await one<{ id: string; type: string }>(`select id::text, pg_typeof(id)::text as type from jobs.publish(
      task => 'contract.named', body => '{"a":1}'::jsonb, scheduled_at => $1::timestamptz, timeout_seconds => 5,
      priority => 2, max_retries => 1) id`, [T0]);
    const positional = await one<{ id: string }>(
      `select jobs.publish('contract.positional', '{"a":1}'::jsonb, $1::timestamptz, 5, 2, 1)::text as id`, [T0]);
    expect(named.type).toBe('bigint');
    expect(await sql(`select task, body, scheduled_at, timeout::float8 as timeout, priority, max_retries
                      from jobs.job_queue where job_id = any($1::bigint[]) order by job_id`, [[named.id, positional.id]]))
      .toEqual(['contract.named', 'contract.positional'].map((task) => ({
        task, body: { a: 1 }, scheduled_at: new Date(T0), timeout: 5, priority: 2, max_retries: 1 })));
    // A bad one is named as it was given.
    expect(await sqlErrorOf(sql, `select jobs.publish('contract.bad', timeout_seconds => 0)`))
      .toMatchObject({ code: 'PD002', column: 'timeout_seconds' });
  });

  it('defaults: timeout 60 s, 3 retries, priority 0; the greater priority runs first', async () => {
    await sql(`select jobs.publish('contract.low', priority => -1), jobs.publish('contract.plain'),
                      jobs.publish('contract.high', priority => 7)`);
    expect(await one(`select timeout::float8 as timeout, max_retries, priority from jobs.job_queue where task = 'contract.plain'`))
      .toEqual({ timeout: 60, max_retries: 3, priority: 0 });
    expect((await sql<{ task: string }>(`select task from jobs.consume(3)`)).map((r) => r.task))
      .toEqual(['contract.high', 'contract.plain', 'contract.low']);
  });

  it('3 retries with exponential backoff, then a failure in jobs.job with its error', async () => {
    const { id } = await one<{ id: string }>(`select jobs.publish('contract.flaky', now => $1)::text as id`, [T0]);
    let at = T0;
    const delays: number[] = [];
    for (let attempt = 1; attempt <= 4; attempt++) {
      expect(await sql(`select job_id::text as id, attempt from jobs.consume(1, now => $1)`, [at])).toEqual([{ id, attempt }]);
      await sql(`select jobs.nack($1::bigint, $2, now => $3)`, [id, `boom ${attempt}`, at]);
      if (attempt === 4) break;
      const { next, delay } = await one<{ next: string; delay: number }>(`select scheduled_at::text as next,
        extract(epoch from scheduled_at - $2::timestamptz)::float8 as delay from jobs.job_queue where job_id = $1`, [id, at]);
      delays.push(delay);
      at = next;
    }
    // Equal jitter over 5 s doubling: between d/2 and d.
    expect(delays.map((d, k) => d >= 2.5 * 2 ** k && d <= 5 * 2 ** k)).toEqual([true, true, true]);
    expect(await sql(`select status, error, attempts from jobs.job where job_id = $1`, [id]))
      .toEqual([{ status: 'failure', error: 'boom 4', attempts: 4 }]);
  });

  it('jobs.publish_bulk(jobs.bulk_job[]) → setof job_id; jobs.bulk_job(task, body, scheduled_at, timeout, priority, max_retries)', async () => {
    const ids = await sql<{ id: string; type: string }>(`select id::text, pg_typeof(id)::text as type from jobs.publish_bulk(array[
      ('contract.bulk', '{"n":1}', null, 7, 3, 0)::jobs.bulk_job, ('contract.bulk', '{"n":2}', $1, null, null, null)::jobs.bulk_job]) id`, [T0]);
    expect(ids.map((r) => r.type)).toEqual(['bigint', 'bigint']);
    expect(await sql(`select (b).task, (b).body, (b).scheduled_at, (b).timeout::float8 as timeout, (b).priority, (b).max_retries
                      from (select row(q.task, q.body, q.scheduled_at, q.timeout, q.priority, q.max_retries)::jobs.bulk_job as b
                            from jobs.job_queue q where q.job_id = any($1::bigint[]) order by q.job_id) s`, [ids.map((r) => r.id)]))
      .toEqual([expect.objectContaining({ task: 'contract.bulk', body: { n: 1 }, timeout: 7, priority: 3, max_retries: 0 }),
                { task: 'contract.bulk', body: { n: 2 }, scheduled_at: new Date(T0), timeout: 60, priority: 0, max_retries: 3 }]);
  });

  it('jobs.consume(n) → job_id, task, body, attempt; jobs.consume_topic(pattern, n): % over dotted task names', async () => {
    await sql(`select jobs.publish('email.send', '{"to":"a@b"}'), jobs.publish('email.bounce.check'), jobs.publish('sms.send')`);
    const topic = await sql(`select job_id, task, body, attempt from jobs.consume_topic(pattern => 'email.%', n => 5) order by task`);
    expect(topic.map((r) => [r.task, r.body, r.attempt]))
      .toEqual([['email.bounce.check', null, 1], ['email.send', { to: 'a@b' }, 1]]);
    expect(await sql(`select task, attempt from jobs.consume(n => 5)`)).toEqual([{ task: 'sms.send', attempt: 1 }]);
  });

  it('jobs.ack(job_id [, result]) ends it a success in jobs.job; jobs.nack(job_id, error [, schedule_at]) retries it', async () => {
    await sql(`select jobs.publish('contract.a'), jobs.publish('contract.b'), jobs.publish('contract.c'), jobs.publish('contract.d')`);
    const id = Object.fromEntries((await sql<{ task: string; id: string }>(`select task, job_id::text as id from jobs.consume(4)`))
      .map((r) => [r.task.slice(-1), r.id]));
    await sql(`select jobs.ack(job_id => $1, result => '{"ok":true}'::jsonb), jobs.ack(job_id => $2)`, [id.a, id.b]);
    await sql(`select jobs.nack(job_id => $1, error => 'later', schedule_at => $2::timestamptz),
                      jobs.nack(job_id => $3, error => 'soon')`, [id.c, T0, id.d]);
    expect(await sql(`select task, status, result from jobs.job order by task`)).toEqual([
      { task: 'contract.a', status: 'success', result: { ok: true } }, { task: 'contract.b', status: 'success', result: null }]);
    expect(await sql(`select task, scheduled_at = $1::timestamptz as at_t0, scheduled_at > now() as later, attempt
                      from jobs.job_queue order by task`, [T0]))
      .toEqual([{ task: 'contract.c', at_t0: true, later: true, attempt: 1 }, { task: 'contract.d', at_t0: false, later: true, attempt: 1 }]);
  });

  it('tables job_queue and job, views jobs.all, jobs.running, jobs.expired; an expired lease is handed out again, then ends a failure', async () => {
    // Started an hour ago with a 5 s timeout: its lease has passed without an ack.
    const { id } = await one<{ id: string }>(`select jobs.publish('contract.stuck', timeout_seconds => 5, max_retries => 1,
                                              now => now() - interval '1 hour')::text as id`);
    await sql(`select jobs.publish('contract.waiting', scheduled_at => now() + interval '1 day')`);
    await sql(`select * from jobs.consume(1, now => now() - interval '1 hour')`);
    expect(await sql(`select job_id::text as id, attempt from jobs.expired`)).toEqual([{ id, attempt: 1 }]);
    expect(await sql(`select count(*)::int as n from jobs.running`)).toEqual([{ n: 0 }]);
    expect(await sql(`select job_id::text as id, attempt from jobs.consume(1)`)).toEqual([{ id, attempt: 2 }]);
    expect(await sql(`select job_id::text as id from jobs.running`)).toEqual([{ id }]);
    expect(await sql(`select count(*)::int as n from jobs.expired`)).toEqual([{ n: 0 }]);
    // Its retries spent, the next consume ends it as a failure.
    expect(await sql(`select * from jobs.consume(1, now => now() + interval '1 minute')`)).toEqual([]);
    expect(await sql(`select status, attempts from jobs.job where job_id = $1`, [id])).toEqual([{ status: 'failure', attempts: 2 }]);
    expect(await sql(`select task, state from jobs.all order by task`))
      .toEqual([{ task: 'contract.stuck', state: 'failure' }, { task: 'contract.waiting', state: 'scheduled' }]);
  });
});

describe('TypeScript: drain(batchSize, deadline)', () => {
  const queueWith = (tasks: Parameters<typeof createQueue>[0]['tasks']) =>
    createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });

  it('a report of claimed, succeeded, failed, retried, released, stoppedBy and durationMs; handlers get (body, ctx)', async () => {
    const seen: { id: string; attempt: number; signal: boolean }[] = [];
    const q = queueWith({
      math: { sum: async (b: { a: number; b: number }, ctx: JobContext) => {
        seen.push({ id: ctx.job.id, attempt: ctx.job.attempt, signal: ctx.signal instanceof AbortSignal });
        return { sum: b.a + b.b, next: await ctx.publish('text.upper', { s: 'next' }) };
      } },
      'text.upper': async (b: { s: string }) => b.s.toUpperCase(),
      fails: async () => { throw new Error('deliberate'); },
    });
    const id = await q.publish('math.sum', { a: 2, b: 3 });
    await q.publish('fails', null, { maxRetries: 0 });
    await q.publish('fails', null, { maxRetries: 1 });
    const report = await q.drain(10, Date.now() + 300_000);
    expect(report).toMatchObject({ claimed: 4, succeeded: 2, failed: 1, retried: 1, released: 0, stoppedBy: 'empty',
                                   durationMs: expect.any(Number) });
    expect(seen).toEqual([{ id, attempt: 1, signal: true }]);
    expect(await sql(`select task, result from jobs.job where status = 'success' order by job_id`)).toEqual([
      { task: 'math.sum', result: { sum: 5, next: expect.any(String) } }, { task: 'text.upper', result: 'NEXT' }]);
  });

  it("stoppedBy 'deadline' when a due job cannot fit, 'signal' when stopped", async () => {
    const q = queueWith({ noop: async () => null });
    await q.publish('noop', null, { timeoutSeconds: 600 });
    expect(await q.drain(10, new Date(Date.now() + 30_000))).toMatchObject({ claimed: 0, stoppedBy: 'deadline' });
    await q.publish('noop', null, { timeoutSeconds: 1 });
    expect(await q.drain(10, Date.now() + 30_000, { signal: AbortSignal.abort() })).toMatchObject({ claimed: 0, stoppedBy: 'signal' });
  });
});

describe('CLI pgdrain', () => {
  it('migrate [DSN]: the argument wins over DATABASE_URL', async () => {
    const run = await runCliWith({}, 'postgres://nobody@127.0.0.1:1/none', 'migrate', db.url);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain('pgdrain: schema is up to date');
  });

  it('publish TASK [JSON], drain --tasks MODULE --batch N --deadline SECONDS --topic PATTERN --json, stats, on DATABASE_URL', async () => {
    const published = await Promise.all([runCli(db.url, 'publish', 'math.sum', '{"a":1,"b":2}'),
                                         runCli(db.url, 'publish', 'text.upper', '{"s":"hi"}'), runCli(db.url, 'publish', 'other.task')]);
    for (const p of published) expect(p.stdout, p.stderr).toMatch(/^\d+\n$/);
    const stats = await runCli(db.url, 'stats', '--json');
    expect(stats.code, stats.stderr).toBe(0);
    expect(JSON.parse(stats.stdout)).toEqual(expect.arrayContaining([expect.objectContaining({ task: 'math.sum', state: 'pending', jobs: 1 })]));
    for (const topic of ['math.%', 'text.%']) {
      const drained = await runCli(db.url, 'drain', '--tasks', TASKS, '--batch', '5', '--deadline', '300', '--topic', topic, '--json');
      expect(drained.code, drained.stderr).toBe(0);
      expect(reportOf({ ...drained, signal: null })).toMatchObject({ claimed: 1, succeeded: 1, stoppedBy: 'empty' });
    }
    expect(await sql(`select task, result from jobs.job order by task`))
      .toEqual([{ task: 'math.sum', result: { sum: 3 } }, { task: 'text.upper', result: 'HI' }]);
    expect(await sql(`select task from jobs.job_queue`)).toEqual([{ task: 'other.task' }]);
  });

  it('serve answers over HTTP on DATABASE_URL', async () => {
    const server = startServe(db.url, [], { PGDRAIN_TOKEN: 't'.repeat(32) });
    try {
      const res = await fetch(`${await server.url}/healthz`);
      expect(res.status).toBe(200);
    } finally {
      server.child.kill('SIGTERM');
      await server.exited;
    }
  });

  it('with no DSN and no DATABASE_URL, the embedded database', async () => {
    const data = mkdtempSync(join(dir, 'embedded-'));
    const p = spawnCli(['publish', 'math.sum', '{"a":1,"b":1}'], { PGDRAIN_DATA_DIR: data });
    const exit = await p.exited;
    expect(exit.code, exit.stderr).toBe(0);
    expect(exit.stdout).toMatch(/^\d+\n$/);
    expect(exit.stderr).toContain(`using the embedded PostgreSQL (PGlite) in ${data}`);
  }, 120_000);
});
