// publishBulk given pg-boss's insert shape ({ name, data }) or graphile-worker's
// addJobs shape ({ identifier, payload }) says which fields are pgdrain's:
// before, only "jobs[0].task: … expected string, received undefined", and
// { task, data } an unknown option "data" with no word of body. Nothing is written.
import { beforeEach, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const queue = createQueue({ driver: { ...db.driver, close: async () => {} } });

beforeEach(async () => {
  await db.sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

it.each([
  [[{ name: 'mail.send', data: { to: 'a' } }], 'jobs[0].task', /received undefined \(pg-boss's name is task; pg-boss's data is body\)$/],
  [[{ task: 't.ok' }, { identifier: 'mail.send', payload: {} }], 'jobs[1].task',
   /received undefined \(graphile-worker's identifier is task; graphile-worker's payload is body\)$/],
  [[{ task: 'mail.send', data: { to: 'a' } }], 'jobs[0]', /^jobs\[0\]: unknown option "data" \(pg-boss's data is body\)$/],
])('%j: names the field and what it is here', async (jobs, field, message) => {
  await expect(queue.publishBulk(jobs as never)).rejects.toMatchObject({ name: 'ValidationError', field, message: expect.stringMatching(message) });
  expect(await db.sql('select count(*)::int as n from jobs.job_queue')).toEqual([{ n: 0 }]);
});

it('a job without a task and no peer field: the rule alone', async () => {
  await expect(queue.publishBulk([{ body: 1 }] as never)).rejects.toMatchObject({ field: 'jobs[0].task',
    message: expect.stringMatching(/received undefined$/) });
});
