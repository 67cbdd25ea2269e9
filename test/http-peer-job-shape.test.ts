// POST /jobs given pg-boss's insert shape ({ name, data }) or graphile-worker's
// addJobs shape ({ identifier, payload }) says which fields are task and body,
// one job or a bulk's, as publishBulk does (bulk-peer-shape): before, only
// "task: is required", and { task, data } "data: unknown field" with no word
// of body. Nothing is written. The real app in process, against a real PostgreSQL.
import { expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const TOKEN = 'peer-job-shape-token-0123456789';
const app = createApp({ queue: createQueue({ driver: db.driver, tasks: {} }), token: TOKEN });

async function post(body: unknown) {
  const res = await app.request('/jobs', { method: 'POST', body: JSON.stringify(body),
                                           headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' } });
  const { error } = await res.json() as { error: { field: string | null; message: string } };
  return { status: res.status, field: error.field, message: error.message };
}

it.each([
  [{ name: 'mail.send', data: { to: 'a' } }, 'task', "task: is required (pg-boss's name is task; pg-boss's data is body)"],
  [{ jobs: [{ task: 't.ok' }, { identifier: 'mail.send', payload: {} }] }, 'jobs[1].task',
   "jobs[1].task: is required (graphile-worker's identifier is task; graphile-worker's payload is body)"],
  [{ task: 'mail.send', data: { to: 'a' } }, 'data', "data: unknown field (pg-boss's data is body)"],
  [{ jobs: [{ task: 'mail.send', payload: 1 }] }, 'jobs[0].payload', "jobs[0].payload: unknown field (graphile-worker's payload is body)"],
])('%j: names the field and what it is here', async (body, field, message) => {
  expect(await post(body)).toEqual({ status: 400, field, message });
  expect(await db.sql('select count(*)::int as n from jobs.job_queue')).toEqual([{ n: 0 }]);
});

it('a job without a task and no peer field, or a task missing elsewhere: the rule alone', async () => {
  expect(await post({ body: 1 })).toMatchObject({ field: 'task', message: 'task: is required' });
  expect(await post({ jobs: [{ body: 1 }] })).toMatchObject({ field: 'jobs[0].task', message: 'jobs[0].task: is required' });
});
