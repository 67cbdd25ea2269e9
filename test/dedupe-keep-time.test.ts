// dedupe_mode 'replace_keep_time' (graphile-worker's preserve_run_at): a debounce
// that does not postpone. A waiting job takes the latest publish but keeps its
// run time; with no holder, or a running one, it acts as 'replace'.
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue, publishBulk, type TaskMap } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const one = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await sql<R>(text, params))[0]!;
const shared = { ...db.driver, close: async () => {} };
const queueWith = (tasks: TaskMap) => createQueue({ driver: shared, tasks });
const keepTime = (body: string, extra = '') =>
  one<{ id: string }>(`select jobs.publish('sync.user', '${body}', dedupe_key => 'user:1',
                         dedupe_mode => 'replace_keep_time'${extra})::text as id`).then((r) => r.id);
/** The job's scheduled_at and expires_at, at full precision. */
const times = (id: string) => one<{ at: string; exp: string | null }>(
  `select scheduled_at::text as at, expires_at::text as exp from jobs.job_queue where job_id = $1`, [id]);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

describe('dedupe_mode replace_keep_time', () => {
  it('a scheduled job takes the latest task, body and options but keeps its run time, earlier or later', async () => {
    await sql(`select jobs.create_queue('mail')`);
    const id = await keepTime('{"n":1}', `, scheduled_at => now() + interval '1 hour'`);
    const before = await times(id);
    // Neither a later time, nor an earlier one, nor none (now) moves it.
    expect(await keepTime('{"n":2}', `, scheduled_at => now() + interval '2 hours'`)).toBe(id);
    expect(await keepTime('{"n":3}', `, scheduled_at => now() + interval '1 minute'`)).toBe(id);
    const last = await one<{ id: string }>(`select jobs.publish('sync.account', '{"n":4}', timeout_seconds => 30, priority => 5,
      max_retries => 1, queue => 'mail', attributes => '{"region":"eu"}', dedupe_key => 'user:1',
      dedupe_mode => 'replace_keep_time')::text as id`);
    expect(last.id).toBe(id);
    expect(await times(id)).toEqual(before);
    expect(await sql(`select job_id::text as id, task, body, timeout::int, priority, max_retries, queue, attributes, dedupe_key
                      from jobs.job_queue`)).toEqual([{
      id, task: 'sync.account', body: { n: 4 }, timeout: 30, priority: 5, max_retries: 1, queue: 'mail',
      attributes: { region: 'eu' }, dedupe_key: 'user:1' }]);
    expect(await sql(`select job_id from jobs.consume(1, queue => 'mail')`)).toEqual([]); // still an hour away
  });

  it('a due job stays due when the latest publish asks for later', async () => {
    const id = await keepTime('{"n":1}');
    expect(await keepTime('{"n":2}', `, scheduled_at => now() + interval '1 hour'`)).toBe(id);
    expect(await sql(`select job_id::text as id, body from jobs.consume(1)`)).toEqual([{ id, body: { n: 2 } }]);
  });

  it('no holder: the job is published at its own time', async () => {
    const id = await keepTime('{"n":1}', `, scheduled_at => '2100-01-01T00:00:00Z'`);
    expect(await one(`select body, scheduled_at = '2100-01-01T00:00:00Z' as own from jobs.job_queue where job_id = $1`, [id]))
      .toEqual({ body: { n: 1 }, own: true });
  });

  it('a running holder finishes without the key; the new job takes it at its own time', async () => {
    const old = await keepTime('{"n":1}');
    expect(await sql(`select job_id::text as id from jobs.consume(1)`)).toEqual([{ id: old }]);
    const fresh = await keepTime('{"n":2}', `, scheduled_at => '2100-01-01T00:00:00Z'`);
    expect(fresh).not.toBe(old);
    expect(await sql(`select job_id::text as id, body, dedupe_key, lease_until is not null as running,
                             scheduled_at = '2100-01-01T00:00:00Z' as own from jobs.job_queue order by job_id`)).toEqual([
      { id: old, body: { n: 1 }, dedupe_key: null, running: true, own: false },
      { id: fresh, body: { n: 2 }, dedupe_key: 'user:1', running: false, own: true }]);
    // The new one waits: replaced in place, its own time kept.
    expect(await keepTime('{"n":3}')).toBe(fresh);
    expect(await one(`select body, scheduled_at = '2100-01-01T00:00:00Z' as own from jobs.job_queue where job_id = $1`, [fresh]))
      .toEqual({ body: { n: 3 }, own: true });
  });

  it('expiry: a given expires_at is taken if after the kept time (else PD007); a queue\'s expire_in counts from the kept time', async () => {
    await sql(`select jobs.create_queue('exp', expire_in => 600)`);
    const id = await keepTime('{"n":1}', `, queue => 'exp', scheduled_at => now() + interval '1 hour'`);
    const kept = await times(id);
    // Left out: the queue's 600 s after the kept time, not after this publish's (now).
    expect(await keepTime('{"n":2}', `, queue => 'exp'`)).toBe(id);
    expect(await one(`select expires_at = scheduled_at + interval '600 seconds' as counted from jobs.job_queue`))
      .toEqual({ counted: true });
    expect(await keepTime('{"n":3}', `, queue => 'exp', expires_at => '2100-01-01T00:00:00Z'`)).toBe(id);
    expect(await one(`select body, expires_at = '2100-01-01T00:00:00Z' as taken from jobs.job_queue`))
      .toEqual({ body: { n: 3 }, taken: true });
    // After this publish's own time, but not after the kept one: it could never run.
    const e = await sqlErrorOf(sql, `select jobs.publish('sync.user', '{"n":4}', queue => 'exp', dedupe_key => 'user:1',
      dedupe_mode => 'replace_keep_time', expires_at => now() + interval '30 minutes')`);
    expect(e).toMatchObject({ code: 'PD007', column: 'expires_at' });
    expect(e.message).toMatch(/^expires_at: must be after the job's scheduled time \(.*\), got .*: it would expire before it could run$/);
    expect(await one(`select body, scheduled_at::text as at from jobs.job_queue`)).toEqual({ body: { n: 3 }, at: kept.at });
  });

  it('a waiting holder past its expiry never runs: it lets go of the key and the new job runs at its own time', async () => {
    const old = await keepTime('{"n":1}', `, now => now() - interval '2 hours', expires_at => now() - interval '1 hour'`);
    const fresh = await keepTime('{"n":2}');
    expect(fresh).not.toBe(old);
    expect(await sql(`select job_id::text as id, body, dedupe_key from jobs.job_queue order by job_id`)).toEqual([
      { id: old, body: { n: 1 }, dedupe_key: null }, { id: fresh, body: { n: 2 }, dedupe_key: 'user:1' }]);
    expect(await sql(`select job_id::text as id, body from jobs.consume(5)`)).toEqual([{ id: fresh, body: { n: 2 } }]);
    expect(await one(`select status, error from jobs.job where job_id = $1`, [old]))
      .toMatchObject({ status: 'failure', error: expect.stringMatching(/^expired: not started before/) });
  });

  it('bad input names the field and the rule: the modes, throttle, depends_on, bulk', async () => {
    const bad = (extra: string) => sqlErrorOf(sql, `select jobs.publish('t', '{}', dedupe_key => 'k', ${extra})`);
    expect(await bad(`dedupe_mode => 'debounce'`)).toMatchObject({ code: 'PD011', column: 'dedupe_mode',
      message: "dedupe_mode: must be keep, keep_waiting, replace or replace_keep_time, got 'debounce'" });
    expect(await bad(`dedupe_mode => 'replace_keep_time', throttle_seconds => 60`)).toMatchObject({ code: 'PD011', column: 'throttle_seconds',
      message: 'throttle_seconds: cannot be given with dedupe_mode replace_keep_time (a throttle keeps the first job of its window, a replace the latest)' });
    const dep = await one<{ id: string }>(`select jobs.publish('t')::text as id`);
    expect(await bad(`dedupe_mode => 'replace_keep_time', depends_on => array[${dep.id}]::bigint[]`)).toMatchObject({ code: 'PD013',
      column: 'depends_on', message: 'depends_on: cannot be given with dedupe_mode replace_keep_time (a replaced job keeps its dependencies)' });

    const q = queueWith({});
    await expect(q.publish('t', {}, { dedupeKey: 'k', dedupeMode: 'debounce' as 'keep' })).rejects.toMatchObject(
      { field: 'options.dedupeMode', message: "options.dedupeMode: must be 'keep', 'keep_waiting', 'replace' or 'replace_keep_time'" });
    await expect(q.publish('t', {}, { dedupeMode: 'replace_keep_time' })).rejects.toMatchObject(
      { field: 'options.dedupeMode', message: 'options.dedupeMode: needs a dedupe key (the key whose job it keeps or replaces)' });
    await expect(q.publish('t', {}, { dedupeKey: 'k', dedupeMode: 'replace_keep_time', throttleSeconds: 60 })).rejects.toMatchObject(
      { field: 'options.throttleSeconds', message: expect.stringMatching(/^options\.throttleSeconds: cannot be given with dedupeMode 'replace_keep_time'/) });
    await expect(q.publish('t', {}, { dedupeKey: 'k', dedupeMode: 'replace_keep_time', dependsOn: [dep.id] })).rejects.toMatchObject(
      { field: 'options.dependsOn', message: "options.dependsOn: cannot be given with dedupeMode 'replace_keep_time' (a replaced job keeps its dependencies)" });
    await expect(publishBulk(db.driver, [{ task: 't', dedupeKey: 'k', dedupeMode: 'replace_keep_time' } as never])).rejects.toMatchObject(
      { field: 'jobs[0].dedupeMode', message: expect.stringMatching(/^jobs\[0\]\.dedupeMode: must be 'keep' or 'keep_waiting' in a bulk publish \(not 'replace' nor 'replace_keep_time'\)/) });
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 1 });
  });

  it('TypeScript publish: the second publish replaces the body and keeps the first run time', async () => {
    const q = queueWith({});
    const id = await q.publish('sync.user', { n: 1 }, { dedupeKey: 'user:1', dedupeMode: 'replace_keep_time', delaySeconds: 3600 });
    const before = await times(id);
    expect(await q.publish('sync.user', { n: 2 }, { dedupeKey: 'user:1', dedupeMode: 'replace_keep_time', delaySeconds: 7200 })).toBe(id);
    expect(await one(`select body from jobs.job_queue`)).toEqual({ body: { n: 2 } });
    expect(await times(id)).toEqual(before);
  });

  it('CLI: publish --dedupe-mode replace_keep_time; a bad mode lists the three', async () => {
    const cli = (...args: string[]) => new Promise<{ code: number; stdout: string; stderr: string }>((done) => {
      execFile(process.execPath, [resolve('dist/cli.mjs'), ...args], { env: { ...process.env, DATABASE_URL: db.url }, timeout: 30_000 },
        (error, stdout, stderr) => done({ code: error ? Number(error.code) : 0, stdout, stderr }));
    });
    const a = await cli('publish', 'sync.user', '{"n":1}', '--dedupe-key', 'user:1', '--dedupe-mode', 'replace_keep_time', '--delay', '3600');
    expect(a).toMatchObject({ code: 0 });
    const before = await times(a.stdout.trim());
    const b = await cli('publish', 'sync.user', '{"n":2}', '--dedupe-key', 'user:1', '--dedupe-mode', 'replace_keep_time');
    expect(b).toMatchObject({ code: 0, stdout: a.stdout });
    expect(await one(`select body from jobs.job_queue`)).toEqual({ body: { n: 2 } });
    expect(await times(a.stdout.trim())).toEqual(before);
    const wrong = await cli('publish', 'sync.user', '--dedupe-key', 'user:1', '--dedupe-mode', 'debounce');
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/--dedupe-mode: must be one of keep, keep_waiting, replace, replace_keep_time/);
  });

  it('HTTP: POST /jobs with dedupeMode replace_keep_time; a bulk job with it is refused naming it', async () => {
    const token = 'dedupe-keep-time-token-0123456789';
    const app = createApp({ queue: queueWith({}), token });
    const post = async (body: unknown) => {
      const res = await app.request('/jobs', { method: 'POST', body: JSON.stringify(body),
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } });
      return { status: res.status, body: await res.json() as Record<string, any> };
    };
    const a = await post({ task: 'sync.user', body: { n: 1 }, dedupeKey: 'user:1', dedupeMode: 'replace_keep_time', delaySeconds: 3600 });
    expect(a.status).toBe(201);
    const before = await times(a.body.id);
    const b = await post({ task: 'sync.user', body: { n: 2 }, dedupeKey: 'user:1', dedupeMode: 'replace_keep_time' });
    expect(b).toEqual({ status: 201, body: { id: a.body.id } });
    expect(await one(`select body from jobs.job_queue`)).toEqual({ body: { n: 2 } });
    expect(await times(a.body.id)).toEqual(before);
    const bulk = await post({ jobs: [{ task: 'sync.user', dedupeKey: 'user:1', dedupeMode: 'replace_keep_time' }] });
    expect(bulk.status).toBe(400);
    expect(JSON.stringify(bulk.body)).toMatch(/jobs\[0\]\.dedupeMode: must be 'keep' or 'keep_waiting' in a bulk publish/);
  });
});
