// listJobs / queue.listJobs: finding jobs by queue, task, state, body
// (jsonb containment) and ids, newest first, paged with `before`, over
// queued (jobs.job_queue) and ended (jobs.job) jobs alike.
import { beforeAll, describe, expect, it } from 'vitest';
import { createQueue, getJob, listJobs, ValidationError, type JobInfo, type ListJobsFilter } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} } });
const ids = (jobs: JobInfo[]) => jobs.map((j) => j.id);
const one = async (text: string) => (await sql<{ id: string }>(text))[0]!.id;

/** Job ids by what each is, one job in each state, in two queues and two tasks. */
let j: Record<'success' | 'running' | 'expired' | 'pending' | 'scheduled' | 'blocked' | 'failure' | 'cancelled' | 'other', string>;

beforeAll(async () => {
  await queue.queues.create('mail');
  // Claimed one at a time by priority: the only due job of its queue when consumed.
  const success = await queue.publish('email.send', { user: 42, kind: 'welcome' }, { queue: 'mail' });
  await sql(`select jobs.ack(job_id, '{"sent": true}') from jobs.consume(1, queue => 'mail')`);
  const running = await queue.publish('email.send', { user: 7 }, { queue: 'mail' });
  await sql(`select * from jobs.consume(1, queue => 'mail')`);
  // Due two hours ago, leased an hour ago for 60 s: its lease has passed.
  const expired = await queue.publish('report.build', { user: 5 }, { runAt: new Date(Date.now() - 7_200_000) });
  await sql(`select * from jobs.consume(1, now => now() - interval '1 hour')`);
  const pending = await queue.publish('report.build', { user: 42, size: 'big' });
  const scheduled = await queue.publish('report.build', { user: 42 }, { delaySeconds: 3600 });
  const blocked = await queue.publish('email.send', { user: 8 }, { queue: 'mail', dependsOn: [scheduled] });
  const failure = await queue.publish('email.send', { user: 42, kind: 'reset' }, { queue: 'mail', delaySeconds: 3600 });
  await queue.fail([failure], 'bounced');
  const cancelled = await queue.publish('report.build', { user: 9 }, { delaySeconds: 3600 });
  await queue.cancel(cancelled);
  const other = await one(`select jobs.publish('email.send', '[1, 2, {"user": 42}]')::text as id`);
  j = { success, running, expired, pending, scheduled, blocked, failure, cancelled, other };
});

describe('listJobs', () => {
  it('answers every job newest first, each as getJob answers it', async () => {
    const all = await queue.listJobs();
    expect(ids(all)).toEqual(Object.values(j).reverse());
    for (const job of all) expect(job).toEqual(await getJob(db.driver, job.id));
    expect(all.map((x) => x.state)).toEqual(['pending', 'cancelled', 'failure', 'blocked', 'scheduled', 'pending', 'expired',
      'running', 'success']);
  });

  it('narrows by state, queued and ended, using JobInfo\'s state names', async () => {
    for (const state of ['success', 'running', 'expired', 'scheduled', 'blocked', 'failure', 'cancelled'] as const) {
      expect(ids(await listJobs(db.driver, { state })), state).toEqual([j[state]]);
    }
    expect(ids(await listJobs(db.driver, { state: 'pending' }))).toEqual([j.other, j.pending]);
  });

  it('narrows by queue and task, alone and with a state', async () => {
    expect(ids(await queue.listJobs({ queue: 'mail' }))).toEqual([j.failure, j.blocked, j.running, j.success]);
    expect(ids(await queue.listJobs({ task: 'report.build' }))).toEqual([j.cancelled, j.scheduled, j.pending, j.expired]);
    expect(ids(await queue.listJobs({ queue: 'default', task: 'email.send' }))).toEqual([j.other]);
    expect(ids(await queue.listJobs({ queue: 'mail', state: 'failure' }))).toEqual([j.failure]);
    expect(ids(await queue.listJobs({ queue: 'mail', state: 'pending' }))).toEqual([]);
    expect(ids(await queue.listJobs({ queue: 'nowhere' }))).toEqual([]);
  });

  it('finds jobs by what their body contains, queued and ended', async () => {
    expect(ids(await queue.listJobs({ body: { user: 42 } }))).toEqual([j.failure, j.scheduled, j.pending, j.success]);
    expect(ids(await queue.listJobs({ body: { user: 42, kind: 'welcome' } }))).toEqual([j.success]);
    expect(ids(await queue.listJobs({ body: { user: 42 }, state: 'pending' }))).toEqual([j.pending]);
    expect(ids(await queue.listJobs({ body: { user: 42 }, queue: 'mail', state: 'failure' }))).toEqual([j.failure]);
    // Containment, as jsonb's @>: an array body contains the object among its elements.
    expect(ids(await queue.listJobs({ body: [{ user: 42 }] }))).toEqual([j.other]);
    expect(ids(await queue.listJobs({ body: { user: 43 } }))).toEqual([]);
  });

  it('narrows to ids, with the other filters', async () => {
    expect(ids(await queue.listJobs({ ids: [j.success, j.pending, '999999'] }))).toEqual([j.pending, j.success]);
    expect(ids(await queue.listJobs({ ids: [j.success, j.pending], state: 'success' }))).toEqual([j.success]);
    expect(await queue.listJobs({ ids: [] })).toEqual([]);
  });

  it('pages with before: each page follows the last with no overlap and no gap', async () => {
    const all = ids(await queue.listJobs());
    const pages: string[][] = [];
    let before: string | undefined;
    for (let n = 0; n < 10; n++) { // bounded: a page that repeats itself would loop forever
      const page = ids(await queue.listJobs({ limit: 2, before }));
      if (page.length === 0) break;
      pages.push(page);
      before = page.at(-1);
    }
    expect(pages.map((p) => p.length)).toEqual([2, 2, 2, 2, 1]);
    expect(pages.flat()).toEqual(all);
    // With a filter too: the next page of the user 42 bodies.
    expect(ids(await queue.listJobs({ body: { user: 42 }, limit: 2 }))).toEqual([j.failure, j.scheduled]);
    expect(ids(await queue.listJobs({ body: { user: 42 }, limit: 2, before: j.scheduled }))).toEqual([j.pending, j.success]);
  });

  it('refuses a bad filter before any round trip, naming the field and the rule', async () => {
    const cases: [unknown, string][] = [
      [{ limit: 0 }, 'filter.limit: must be an integer from 1 to 1000'],
      [{ limit: 1001 }, 'filter.limit: must be an integer from 1 to 1000'],
      [{ limit: 1.5 }, 'filter.limit: must be an integer'],
      [{ limit: '10' }, 'filter.limit: must be an integer from 1 to 1000'],
      [{ state: 'waiting' }, 'filter.state: must be one of pending, scheduled, blocked, running, expired, success, failure, cancelled'],
      [{ before: '0' }, 'filter.before: must be a job id'],
      [{ before: 5 }, 'filter.before: '],
      [{ ids: ['1', 'x'] }, 'filter.ids.1: must be a job id'],
      [{ ids: Array.from({ length: 1001 }, (_, i) => String(i + 1)) }, 'filter.ids: must list at most 1000 jobs'],
      [{ queue: 'bad queue' }, 'filter.queue: must be dot-separated words'],
      [{ task: '' }, 'filter.task: must be a non-empty task name'],
      [{ body: new Map([['a', 1]]) }, 'filter.body: must not lose data in JSON: filter.body is a Map'],
      [{ body: { s: 'a\u0000b' } }, 'filter.body: must not contain \\u0000'],
      [{ bodyy: {} }, 'filter: unknown option "bodyy"'],
      ['x', 'filter: must be an object'],
    ];
    for (const [filter, message] of cases) {
      const error = await listJobs(db.driver, filter as ListJobsFilter).then(() => null, (e: unknown) => e);
      expect(error, JSON.stringify(filter)).toBeInstanceOf(ValidationError);
      expect((error as Error).message, JSON.stringify(filter)).toContain(message);
    }
  });
});
