// dedupe_mode 'replace' (debounce): a publish overwrites the job holding its
// dedupe key while it has not started, or takes the key from a running one.
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue, publish, publishBulk, ValidationError, type JobContext, type TaskMap } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const one = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await sql<R>(text, params))[0]!;
const shared = { ...db.driver, close: async () => {} };
const queueWith = (tasks: TaskMap) => createQueue({ driver: shared, tasks });
const replace = (body: string, extra = '') =>
  one<{ id: string }>(`select jobs.publish('sync.user', '${body}', dedupe_key => 'user:1', dedupe_mode => 'replace'${extra})::text as id`)
    .then((r) => r.id);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

describe('dedupe_mode replace', () => {
  it('a pending job takes the latest publish: same id and created_at, new task, body, options and queue', async () => {
    await sql(`select jobs.create_queue('mail')`);
    await sql(`select jobs.publish('sync.user', '{"n":1}', dedupe_key => 'user:1')`);
    const { id, created_at } = await one<{ id: string; created_at: Date }>(`select job_id::text as id, created_at from jobs.job_queue`);
    expect(await replace('{"n":2}')).toBe(id);
    const third = await one<{ id: string }>(`select jobs.publish('sync.account', '{"n":3}', timeout_seconds => 30, priority => 5,
      max_retries => 1, queue => 'mail', attributes => '{"region":"eu"}', dedupe_key => 'user:1', dedupe_mode => 'replace')::text as id`);
    expect(third.id).toBe(id);
    expect(await sql(`select job_id::text as id, task, body, timeout::int, priority, max_retries, queue, attributes, created_at,
                             dedupe_key, attempt from jobs.job_queue`)).toEqual([{
      id, task: 'sync.account', body: { n: 3 }, timeout: 30, priority: 5, max_retries: 1, queue: 'mail',
      attributes: { region: 'eu' }, created_at, dedupe_key: 'user:1', attempt: 0 }]);
    // 'keep' (and no mode) still returns the holder and writes nothing.
    const kept = await one<{ id: string }>(`select jobs.publish('sync.user', '{"n":4}', dedupe_key => 'user:1', dedupe_mode => 'keep')::text as id`);
    expect(kept.id).toBe(id);
    expect(await one(`select body from jobs.job_queue`)).toEqual({ body: { n: 3 } });
  });

  it('a scheduled job moves to the latest run time; one without a time runs now', async () => {
    const id = await replace('{"n":1}', `, scheduled_at => now() + interval '1 hour'`);
    expect(await replace('{"n":2}', `, scheduled_at => now() + interval '2 hours'`)).toBe(id);
    expect(await one(`select body, scheduled_at > now() + interval '90 minutes' as moved from jobs.job_queue`))
      .toEqual({ body: { n: 2 }, moved: true });
    expect(await sql(`select job_id from jobs.consume(1)`)).toEqual([]);
    expect(await replace('{"n":3}')).toBe(id);
    expect(await sql(`select job_id::text as id, body from jobs.consume(1)`)).toEqual([{ id, body: { n: 3 } }]);
  });

  it('a blocked job (behind its serial key) is replaced in place and stays blocked; another serial key is refused', async () => {
    const head = await one<{ id: string }>(`select jobs.publish('sync.user', serial_key => 's')::text as id`);
    const id = await replace('{"n":1}', `, serial_key => 's'`);
    expect(await replace('{"n":2}', `, serial_key => 's'`)).toBe(id);
    expect(await one(`select body, serial_wait from jobs.job_queue where job_id = $1`, [id])).toEqual({ body: { n: 2 }, serial_wait: true });
    const e = await sqlErrorOf(sql, `select jobs.publish('sync.user', '{"n":3}', dedupe_key => 'user:1', dedupe_mode => 'replace', serial_key => 't')`);
    expect(e).toMatchObject({ code: 'PD012', column: 'serial_key' });
    expect(e.message).toBe(`serial_key: must be the serial_key of job ${id}, which this publish replaces ('s'), got 't'`);
    expect(await one(`select body from jobs.job_queue where job_id = $1`, [id])).toEqual({ body: { n: 2 } });
    // Left out, the serial key is the job's own, as its dependencies are: a debounce need not repeat it.
    expect(await replace('{"n":4}')).toBe(id);
    expect(await one(`select body, serial_key, serial_wait from jobs.job_queue where job_id = $1`, [id]))
      .toEqual({ body: { n: 4 }, serial_key: 's', serial_wait: true });
    expect(await sql(`select job_id::text as id from jobs.consume(5)`)).toEqual([{ id: head.id }]);
  });

  it('a running job with a serial key: the new job takes that key when the publish leaves it out, and waits behind it', async () => {
    const old = await replace('{"n":1}', `, serial_key => 's'`);
    expect(await sql(`select job_id::text as id from jobs.consume(1)`)).toEqual([{ id: old }]);
    const fresh = await replace('{"n":2}');
    expect(fresh).not.toBe(old);
    expect(await one(`select serial_key, serial_wait from jobs.job_queue where job_id = $1`, [fresh]))
      .toEqual({ serial_key: 's', serial_wait: true });
    expect(await sql(`select job_id from jobs.consume(1)`)).toEqual([]); // not beside the running one
  });

  it('a running job finishes as it is, without the key; the new job holds it and both settle', async () => {
    const old = await replace('{"n":1}');
    expect(await sql(`select job_id::text as id, body from jobs.consume(1)`)).toEqual([{ id: old, body: { n: 1 } }]);
    const fresh = await replace('{"n":2}');
    expect(fresh).not.toBe(old);
    expect(await replace('{"n":3}')).toBe(fresh); // the new one is pending: replaced in place
    expect(await sql(`select job_id::text as id, body, dedupe_key, lease_until is not null as running
                      from jobs.job_queue order by job_id`)).toEqual([
      { id: old, body: { n: 1 }, dedupe_key: null, running: true },
      { id: fresh, body: { n: 3 }, dedupe_key: 'user:1', running: false }]);
    expect(await one(`select jobs.ack($1::bigint, '{"ok":1}') as acked`, [old])).toEqual({ acked: true });
    const ran: unknown[] = [];
    const report = await queueWith({ sync: { user: (body: unknown) => void ran.push(body) } }).drain(10, Date.now() + 120_000);
    expect(report).toMatchObject({ claimed: 1, succeeded: 1 });
    expect(ran).toEqual([{ n: 3 }]);
    expect(await sql(`select job_id::text as id, status, body, dedupe_key from jobs.job order by job_id`)).toEqual([
      { id: old, status: 'success', body: { n: 1 }, dedupe_key: null },
      { id: fresh, status: 'success', body: { n: 3 }, dedupe_key: 'user:1' }]);
  });

  it('a running job nacked after the replace is retried keyless; the key stays with the new job', async () => {
    const old = await replace('{"n":1}');
    await sql(`select jobs.consume(1)`);
    const fresh = await replace('{"n":2}');
    expect(await one(`select jobs.nack($1::bigint, 'boom', now()) as retried`, [old])).toEqual({ retried: true });
    expect(await replace('{"n":3}')).toBe(fresh);
    expect(await sql(`select job_id::text as id, body, dedupe_key, attempt from jobs.job_queue order by job_id`)).toEqual([
      { id: old, body: { n: 1 }, dedupe_key: null, attempt: 1 },
      { id: fresh, body: { n: 3 }, dedupe_key: 'user:1', attempt: 0 }]);
  });

  it('race: concurrent replace-publishes of one key against drains claiming it lose nothing and mix nothing', async () => {
    const CHAINS = 8;
    const EACH = 25;
    const ran: { id: string; n: number }[] = [];
    const tasks: TaskMap = {
      sync: {
        user: async (body: { n: number }, ctx: JobContext) => {
          ran.push({ id: ctx.job.id, n: body.n });
          await new Promise((r) => setTimeout(r, 2)); // stay running while publishes arrive
        },
      },
    };
    const q = queueWith(tasks);
    // Each chain publishes in order; priority carries n too, so a row mixing two publishes shows.
    const sent: { chain: number; k: number; n: number; id: string }[] = [];
    let publishing = true;
    const chains = Array.from({ length: CHAINS }, async (_, chain) => {
      for (let k = 0; k < EACH; k++) {
        const n = chain * 1000 + k;
        const id = await publish(db.driver, 'sync.user', { n }, { dedupeKey: 'user:1', dedupeMode: 'replace', priority: n });
        sent.push({ chain, k, n, id });
      }
    });
    const drains = Array.from({ length: 3 }, async () => {
      while (publishing) await q.drain(5, Date.now() + 120_000);
    });
    await Promise.all(chains).finally(() => (publishing = false));
    await Promise.all(drains);
    await q.drain(10, Date.now() + 120_000);

    expect(sent).toHaveLength(CHAINS * EACH);
    const ids = new Set(sent.map((s) => s.id));
    // Both paths ran: some publishes replaced a waiting job, some took the key from a running one.
    expect(ids.size).toBeLessThan(sent.length);
    expect((await one<{ n: number }>(`select count(*)::int as n from jobs.job where dedupe_key is null`)).n).toBeGreaterThan(0);
    // Nothing lost: every id ended once, as a success, and nothing else ran.
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 0 });
    const ended = await sql<{ id: string; status: string; n: number; priority: number }>(
      `select job_id::text as id, status, (body->>'n')::int as n, priority from jobs.job`);
    expect(ended.map((e) => e.id).sort()).toEqual([...ids].sort());
    expect(ran.map((r) => r.id).sort()).toEqual([...ids].sort());
    for (const e of ended) {
      expect(e.status).toBe('success');
      expect(e.priority).toBe(e.n); // one publish's whole row, not parts of two
      // It ran with the body of a publish that returned its id...
      const mine = sent.find((s) => s.n === e.n)!;
      expect(mine.id).toBe(e.id);
      // ...that no later publish of the same chain replaced (returned the same id after it).
      expect(sent.some((s) => s.chain === mine.chain && s.k > mine.k && s.id === e.id)).toBe(false);
      expect(ran.find((r) => r.id === e.id)!.n).toBe(e.n);
    }
  });

  it('bad input names the field and the rule, in SQL and at the TypeScript edge', async () => {
    const bad = (extra: string) => sqlErrorOf(sql, `select jobs.publish('t', '{}', ${extra})`);
    expect(await bad(`dedupe_key => 'k', dedupe_mode => 'debounce'`)).toMatchObject(
      { code: 'PD011', column: 'dedupe_mode', message: "dedupe_mode: must be keep, keep_waiting, replace or replace_keep_time, got 'debounce'" });
    expect(await bad(`dedupe_mode => 'replace'`)).toMatchObject(
      { code: 'PD011', column: 'dedupe_mode', message: 'dedupe_mode: needs a dedupe_key (the key whose job it keeps or replaces)' });
    const dep = await one<{ id: string }>(`select jobs.publish('t')::text as id`);
    expect(await bad(`dedupe_key => 'k', dedupe_mode => 'replace', depends_on => array[${dep.id}]::bigint[]`)).toMatchObject(
      { code: 'PD013', column: 'depends_on' });
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 1 });

    const q = queueWith({});
    await expect(q.publish('t', {}, { dedupeKey: 'k', dedupeMode: 'debounce' as 'replace' })).rejects.toMatchObject(
      { field: 'options.dedupeMode', message: "options.dedupeMode: must be 'keep', 'keep_waiting', 'replace' or 'replace_keep_time'" });
    await expect(q.publish('t', {}, { dedupeMode: 'replace' })).rejects.toMatchObject(
      { field: 'options.dedupeMode', message: 'options.dedupeMode: needs a dedupe key (the key whose job it keeps or replaces)' });
    await expect(q.publish('t', {}, { dedupeKey: 'k', dedupeMode: 'replace', dependsOn: [dep.id] })).rejects.toBeInstanceOf(ValidationError);
    // A bulk publish keeps (its jobs may carry keys) but never replaces.
    await expect(publishBulk(db.driver, [{ task: 't' }, { task: 't', dedupeKey: 'k', dedupeMode: 'replace' } as never])).rejects.toMatchObject(
      { field: 'jobs[1].dedupeMode', message: expect.stringMatching(/^jobs\[1\]\.dedupeMode: must be 'keep' or 'keep_waiting' in a bulk publish/) });
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 1 });
  });

  it('TypeScript publish with dedupeMode replace', async () => {
    const q = queueWith({});
    const id = await q.publish('sync.user', { n: 1 }, { dedupeKey: 'user:1', dedupeMode: 'replace', delaySeconds: 60 });
    expect(await q.publish('sync.user', { n: 2 }, { dedupeKey: 'user:1', dedupeMode: 'replace', delaySeconds: 120 })).toBe(id);
    expect(await sql(`select job_id::text as id, body, scheduled_at > now() + interval '100 seconds' as later from jobs.job_queue`))
      .toEqual([{ id, body: { n: 2 }, later: true }]);
  });

  it('CLI: publish --dedupe-mode replace; a bad mode is a usage error', async () => {
    const cli = (...args: string[]) => new Promise<{ code: number; stdout: string; stderr: string }>((done) => {
      execFile(process.execPath, [resolve('dist/cli.mjs'), ...args], { env: { ...process.env, DATABASE_URL: db.url }, timeout: 30_000 },
        (error, stdout, stderr) => done({ code: error ? Number(error.code) : 0, stdout, stderr }));
    });
    const a = await cli('publish', 'sync.user', '{"n":1}', '--dedupe-key', 'user:1', '--dedupe-mode', 'replace');
    const b = await cli('publish', 'sync.user', '{"n":2}', '--dedupe-key', 'user:1', '--dedupe-mode', 'replace');
    expect(a).toMatchObject({ code: 0 });
    expect(b.stdout).toBe(a.stdout);
    expect(await sql(`select job_id::text || E'\\n' as id, body from jobs.job_queue`)).toEqual([{ id: a.stdout, body: { n: 2 } }]);
    const wrong = await cli('publish', 'sync.user', '--dedupe-key', 'user:1', '--dedupe-mode', 'debounce');
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/--dedupe-mode: must be one of keep, keep_waiting, replace/);
    const keyless = await cli('publish', 'sync.user', '--dedupe-mode', 'replace');
    expect(keyless.code).not.toBe(0);
    expect(keyless.stderr).toMatch(/--dedupe-mode: needs a dedupe key/);
  });

  it('HTTP: POST /jobs with dedupeMode; a bulk job with one is refused naming it', async () => {
    const token = 'dedupe-replace-token-0123456789';
    const app = createApp({ queue: queueWith({}), token });
    const post = async (body: unknown) => {
      const res = await app.request('/jobs', { method: 'POST', body: JSON.stringify(body),
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } });
      return { status: res.status, body: await res.json() as Record<string, any> };
    };
    const a = await post({ task: 'sync.user', body: { n: 1 }, dedupeKey: 'user:1', dedupeMode: 'replace' });
    const b = await post({ task: 'sync.user', body: { n: 2 }, dedupeKey: 'user:1', dedupeMode: 'replace' });
    expect(a.status).toBe(201);
    expect(b).toEqual({ status: 201, body: { id: a.body.id } });
    expect(await sql(`select body from jobs.job_queue`)).toEqual([{ body: { n: 2 } }]);
    const keyless = await post({ task: 'sync.user', dedupeMode: 'replace' });
    expect(keyless.status).toBe(400);
    expect(JSON.stringify(keyless.body)).toMatch(/dedupeMode: needs a dedupe key/);
    const bulk = await post({ jobs: [{ task: 'sync.user', dedupeMode: 'replace' }] });
    expect(bulk.status).toBe(400);
    expect(JSON.stringify(bulk.body)).toMatch(/jobs\[0\]\.dedupeMode: must be 'keep' or 'keep_waiting' in a bulk publish/);
  });
});
