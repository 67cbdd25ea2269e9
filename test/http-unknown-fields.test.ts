// POST /jobs names every unknown field of a job in one 400, each with its
// hint (before: the first only, so a client fixed them one request at a
// time), and a job sent in the TS call's shape ({ task, body, options: { … } })
// is told that a job's options are its own fields (before: "options:
// unknown field", no more). The real app in process, against a real PostgreSQL.
import { expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const TOKEN = 'unknown-fields-token-0123456789';
const queue = createQueue({ driver: db.driver, tasks: {} });
const app = createApp({ queue, token: TOKEN });

async function post(body: unknown) {
  const res = await app.request('/jobs', { method: 'POST', body: JSON.stringify(body),
                                           headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' } });
  const { error } = await res.json() as { error: { field: string | null; message: string } };
  return { status: res.status, field: error.field, message: error.message };
}

it('one job: every unknown field, each with its hint; nothing written', async () => {
  expect(await post({ task: 'uf.t', retryLimit: 2, startAfter: 5, colour: 'red' })).toEqual({ status: 400, field: 'retryLimit',
    message: "retryLimit: unknown field (pg-boss's retryLimit is maxRetries, the same count); also startAfter: unknown field "
      + "(pg-boss's startAfter is runAt (a Date) or delaySeconds); colour: unknown field" });
  expect(await db.sql(`select count(*)::int as n from jobs.job_queue where task = 'uf.t'`)).toEqual([{ n: 0 }]);
});

it('a job of a bulk: the same, with a field a bulk job takes not', async () => {
  expect(await post({ jobs: [{ task: 'uf.t', singletonKey: 'k', queue: 'q' }] })).toEqual({ status: 400, field: 'jobs[0].singletonKey',
    message: "jobs[0].singletonKey: unknown field (pg-boss's singletonKey is dedupeKey); also queue: a job of a bulk publish "
      + 'takes no queue: the bulk\'s "queue" applies to all its jobs' });
});

it("the TS call's shape: options are the job's own fields", async () => {
  expect(await post({ task: 'uf.t', body: {}, options: { priority: 5, maxRetries: 1 } })).toEqual({ status: 400, field: 'options',
    message: 'options: unknown field (a job\'s options are its own fields, beside "task" and "body", not an "options" object: '
      + 'move "priority", "maxRetries" up)' });
  expect(await post({ jobs: [{ task: 'uf.t', options: 3 }] })).toEqual({ status: 400, field: 'jobs[0].options',
    message: 'jobs[0].options: unknown field (a job\'s options are its own fields, beside "task" and "body", not an "options" '
      + 'object: give them at its top level)' });
  // Not at a bulk's own level, which is no job.
  expect(await post({ jobs: [{ task: 'uf.t' }], options: {} })).toEqual({ status: 400, field: 'options', message: 'options: unknown field' });
});
