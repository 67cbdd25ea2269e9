// A job's own dead-letter queue (publish's deadLetter) is part of what
// reading a job shows: jobs.all's dead_letter, JobInfo.deadLetter from
// getJob / listJobs, GET /jobs/:id and GET /jobs, and `pgdrain show`
// (dist/cli.mjs: `npm run build` first): for a waiting job and once it ended
// (archived too). Its queue's dead letter is not the job's: null there. On a
// real PostgreSQL.
import { beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });
const cli = (...args: string[]) => runCli(db.url, ...args);
const TOKEN = 'job-info-dead-letter-token-0123456789';
const app = createApp({ queue, token: TOKEN });
const get = async (path: string) => {
  const res = await app.request(path, { headers: { authorization: `Bearer ${TOKEN}` } });
  return { status: res.status, body: (await res.json()) as any };
};

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.job_archive, jobs.dependency');
  await sql(`update jobs.queue set dead_letter = null`);
  await sql(`delete from jobs.queue where name <> 'default'`);
  await queue.queues.create('vis_dead');
  await queue.queues.create('queue_dead');
  // The queue has a dead letter of its own: not the job's, so not shown as the job's.
  await queue.queues.create('mail', { deadLetter: 'queue_dead' });
});

/** A job with a dead letter of its own and one without, both waiting. */
async function publishBoth() {
  const own = await queue.publish('vis.task', { n: 1 }, { queue: 'mail', deadLetter: 'vis_dead' });
  const plain = await queue.publish('vis.task', { n: 2 }, { queue: 'mail' });
  return { own, plain };
}

/** Ends every job of queue mail as cancelled (an ended job, its history row). */
const endAll = () => sql(`select jobs.cancel_bulk(array(select job_id from jobs.job_queue where queue = 'mail'))`);

describe('a job\'s own dead letter is shown wherever a job is read', () => {
  it('jobs.all: dead_letter for a waiting and an ended job', async () => {
    const { own, plain } = await publishBoth();
    const view = () => sql(`select job_id::text as id, state, dead_letter from jobs.all order by job_id`);
    expect(await view()).toEqual([{ id: own, state: 'pending', dead_letter: 'vis_dead' },
                                  { id: plain, state: 'pending', dead_letter: null }]);
    await endAll();
    expect(await view()).toEqual([{ id: own, state: 'cancelled', dead_letter: 'vis_dead' },
                                  { id: plain, state: 'cancelled', dead_letter: null }]);
  });

  it('getJob and listJobs answer deadLetter, waiting, ended and archived', async () => {
    const { own, plain } = await publishBoth();
    expect(await queue.getJob(own)).toMatchObject({ state: 'pending', deadLetter: 'vis_dead' });
    expect(await queue.getJob(plain)).toMatchObject({ state: 'pending', deadLetter: null });
    expect((await queue.listJobs({ queue: 'mail' })).map((j) => [j.id, j.deadLetter])).toEqual([[plain, null], [own, 'vis_dead']]);
    await endAll();
    expect(await queue.getJob(own)).toMatchObject({ state: 'cancelled', deadLetter: 'vis_dead' });
    expect((await queue.listJobs({ ids: [own, plain] })).map((j) => [j.id, j.deadLetter])).toEqual([[plain, null], [own, 'vis_dead']]);
    await sql(`update jobs.job set ended_at = now() - interval '30 days'`);
    await sql(`select jobs.maintain(retention => '7 days', archive => true)`);
    expect(await queue.getJob(own)).toMatchObject({ state: 'cancelled', deadLetter: 'vis_dead' });
  });

  it('GET /jobs/:id and GET /jobs answer deadLetter', async () => {
    const { own, plain } = await publishBoth();
    expect(await get(`/jobs/${own}`)).toMatchObject({ status: 200, body: { job: { id: own, deadLetter: 'vis_dead' } } });
    expect(await get(`/jobs/${plain}`)).toMatchObject({ status: 200, body: { job: { id: plain, deadLetter: null } } });
    await endAll();
    expect(await get(`/jobs/${own}`)).toMatchObject({ status: 200, body: { job: { id: own, state: 'cancelled', deadLetter: 'vis_dead' } } });
    expect((await get('/jobs')).body.jobs.map((j: { id: string; deadLetter: unknown }) => [j.id, j.deadLetter]))
      .toEqual([[plain, null], [own, 'vis_dead']]);
  });

  it('pgdrain show prints a dead letter line (none without one); --json answers deadLetter', async () => {
    const { own, plain } = await publishBoth();
    const shown = await cli('show', own);
    expect(shown).toMatchObject({ code: 0 });
    expect(shown.stdout).toMatch(/^dead letter {3}vis_dead$/m);
    expect(JSON.parse((await cli('show', own, '--json')).stdout)).toMatchObject({ id: own, deadLetter: 'vis_dead' });
    expect((await cli('show', plain)).stdout).not.toMatch(/^dead letter/m);
    expect(JSON.parse((await cli('show', plain, '--json')).stdout)).toMatchObject({ id: plain, deadLetter: null });
    await endAll();
    expect((await cli('show', own)).stdout).toMatch(/^state {9}cancelled\n[\s\S]*^dead letter {3}vis_dead$/m);
  });
});
