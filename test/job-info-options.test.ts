// Reading a job shows its expiry and its own retry policy, from one place
// (the view jobs.all): getJob, listJobs, GET /jobs/:id, GET /jobs and
// `pgdrain show` (dist/cli.mjs: `npm run build` first) answer expiresAt (a
// waiting job's own, or its queue's expire_in after its run time; null once
// it ended, the history keeps none) beside retryDelaySeconds /
// retryBackoff / retryDelayMaxSeconds (kept once ended, archived too).
// On a real PostgreSQL.
import { beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';
import { yearLike } from './support/future-year.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });
const cli = (...args: string[]) => runCli(db.url, ...args);
const TOKEN = 'job-info-options-token-0123456789';
const app = createApp({ queue, token: TOKEN });
const get = async (path: string) => {
  const res = await app.request(path, { headers: { authorization: `Bearer ${TOKEN}` } });
  return { status: res.status, body: (await res.json()) as any };
};

// Ahead of the real clock, so a job to run then is 'scheduled' until the test runs it (with its own now).
const Y = yearLike(2031);
const RUN_AT = new Date(`${Y}-03-01T10:00:00.000Z`);
const EXPIRES = new Date(`${Y}-03-01T11:00:00.000Z`);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.job_archive, jobs.dependency');
  await sql(`update jobs.queue set dead_letter = null`);
  await sql(`delete from jobs.queue where name <> 'default'`);
});

/** A waiting job with an expiry and a retry policy of its own, and one with neither. */
async function publishBoth() {
  const own = await queue.publish('t', { n: 1 }, { runAt: RUN_AT, expiresAt: EXPIRES, retryDelaySeconds: 2.5,
                                                   retryBackoff: false, retryDelayMaxSeconds: 30 });
  const plain = await queue.publish('t', { n: 2 }, { runAt: RUN_AT });
  return { own, plain };
}

/** Claims every due job (as of RUN_AT) and acks it. */
async function runAll() {
  const ids = (await sql<{ id: string }>(`select job_id::text as id from jobs.consume(100, $1::timestamptz)`, [RUN_AT.toISOString()]))
    .map((r) => r.id);
  for (const id of ids) await sql(`select jobs.ack($1::bigint, now => $2::timestamptz)`, [id, RUN_AT.toISOString()]);
  return ids;
}

const ownFields = { expiresAt: EXPIRES, retryDelaySeconds: 2.5, retryBackoff: false, retryDelayMaxSeconds: 30 };
const noFields = { expiresAt: null, retryDelaySeconds: null, retryBackoff: null, retryDelayMaxSeconds: null };

describe('SQL', () => {
  it('jobs.all shows a waiting job\'s expires_at and its retry policy; an ended one keeps both', async () => {
    const { own, plain } = await publishBoth();
    const view = () => sql(`select job_id::text as id, state, expires_at, retry_delay::float8 as d, retry_backoff as b,
                              retry_delay_max::float8 as m from jobs.all order by job_id`);
    expect(await view()).toEqual([
      { id: own, state: 'scheduled', expires_at: EXPIRES, d: 2.5, b: false, m: 30 },
      { id: plain, state: 'scheduled', expires_at: null, d: null, b: null, m: null },
    ]);
    expect((await runAll()).sort()).toEqual([own, plain].sort());
    expect(await view()).toEqual([
      { id: own, state: 'success', expires_at: EXPIRES, d: 2.5, b: false, m: 30 },
      { id: plain, state: 'success', expires_at: null, d: null, b: null, m: null },
    ]);
  });
});

describe('TypeScript', () => {
  it('getJob and listJobs answer expiresAt and the retry policy, the same for each job', async () => {
    const { own, plain } = await publishBoth();
    expect(await queue.getJob(own)).toMatchObject({ state: 'scheduled', runAt: RUN_AT, ...ownFields });
    expect(await queue.getJob(plain)).toMatchObject({ state: 'scheduled', ...noFields });
    const listed = await queue.listJobs();
    expect(listed).toEqual([await queue.getJob(plain), await queue.getJob(own)]);
  });

  it("a queue's expire_in shows as the job's expiresAt (its run time + expire_in)", async () => {
    await queue.queues.create('mail', { expiresInSeconds: 600 });
    const id = await queue.publish('t', {}, { queue: 'mail', runAt: RUN_AT });
    expect(await queue.getJob(id)).toMatchObject({ expiresAt: new Date(RUN_AT.getTime() + 600_000), retryDelaySeconds: null });
    expect((await queue.listJobs({ queue: 'mail' }))[0]).toMatchObject({ expiresAt: new Date(RUN_AT.getTime() + 600_000) });
  });

  it('once ended: expiresAt and the retry policy kept, in the history and in the archive', async () => {
    const { own } = await publishBoth();
    await runAll();
    const ended = { state: 'success', ...ownFields };
    expect(await queue.getJob(own)).toMatchObject(ended);
    expect((await queue.listJobs({ ids: [own] }))[0]).toMatchObject(ended);
    await sql(`update jobs.job set ended_at = now() - interval '30 days'`);
    await sql(`select jobs.maintain(retention => '7 days', archive => true)`);
    expect(await sql(`select job_id::text as id from jobs.job_archive`)).toContainEqual({ id: own });
    expect(await queue.getJob(own)).toMatchObject(ended);
  });
});

describe('HTTP', () => {
  it('GET /jobs/:id and GET /jobs answer expiresAt (ISO) and the retry policy', async () => {
    const { own, plain } = await publishBoth();
    const wire = { expiresAt: EXPIRES.toISOString(), retryDelaySeconds: 2.5, retryBackoff: false, retryDelayMaxSeconds: 30 };
    expect(await get(`/jobs/${own}`)).toMatchObject({ status: 200, body: { job: { id: own, ...wire } } });
    expect(await get(`/jobs/${plain}`)).toMatchObject({ status: 200, body: { job: { id: plain, ...noFields } } });
    const list = await get('/jobs');
    expect(list.body.jobs).toEqual([(await get(`/jobs/${plain}`)).body.job, (await get(`/jobs/${own}`)).body.job]);
  });
});

describe('CLI', () => {
  it('pgdrain show prints the expiry and the retry policy; --json as getJob answers them', async () => {
    const { own, plain } = await publishBoth();
    const shown = await cli('show', own);
    expect(shown).toMatchObject({ code: 0 });
    expect(shown.stdout).toMatch(new RegExp(`^run at {8}${Y}-03-01T10:00:00Z\nexpires {7}${Y}-03-01T11:00:00Z$`, 'm'));
    expect(shown.stdout).toMatch(/^retry delay {3}2\.5\nbackoff {7}fixed\nretry max {5}30$/m);
    expect(JSON.parse((await cli('show', own, '--json')).stdout)).toMatchObject({ id: own, expiresAt: EXPIRES.toISOString() });
    const bare = await cli('show', plain);
    expect(bare.stdout).not.toMatch(/^expires|^retry/m);
    expect(JSON.parse((await cli('show', plain, '--json')).stdout)).toMatchObject({ id: plain, ...noFields });
    await runAll();
    // Ended, it keeps its expiry (jobs.job.expires_at).
    expect((await cli('show', own)).stdout).toMatch(new RegExp(`^expires {7}${Y}-03-01T11:00:00Z$`, 'm'));
  });
});
