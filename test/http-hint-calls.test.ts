// An HTTP caller is told the command that does what a hint asks, as the CLI
// is: the API has no route that creates a queue, and its caller writes no TS.
// Before, POST /jobs to an unknown or full queue (or with an unknown
// deadLetter) answered the TS call, queues.create('q', { maxSize: ... }).
// The real app in process, against a real PostgreSQL.
import { beforeAll, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const TOKEN = 'http-hint-calls-token-0123456789';
const queue = createQueue({ driver: db.driver, tasks: {} });
const app = createApp({ queue, token: TOKEN });

beforeAll(async () => {
  await queue.queues.create('hh_full', { maxSize: 1 });
  await queue.publish('t.x', {}, { queue: 'hh_full' });
});

async function post(path: string, body: unknown) {
  const res = await app.request(path, { method: 'POST', body: JSON.stringify(body),
                                        headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' } });
  const { error } = await res.json() as { error: { field: string | null; message: string } };
  return { status: res.status, message: error.message };
}

it('an unknown queue: the command that creates it', async () => {
  expect(await post('/jobs', { task: 't.x', queue: 'hh_none' })).toEqual({ status: 400,
    message: "queue: no queue named 'hh_none'; create it with pgdrain queue create hh_none" });
  expect(await post('/jobs', { jobs: [{ task: 't.x' }], queue: 'hh_none' })).toEqual({ status: 400,
    message: "queue: no queue named 'hh_none'; create it with pgdrain queue create hh_none" });
  expect(await post('/jobs', { task: 't.x', deadLetter: 'hh_dead' })).toEqual({ status: 400,
    message: "deadLetter: no queue named 'hh_dead'; create it first with pgdrain queue create hh_dead" });
});

it('a full queue: the command that raises its bound', async () => {
  expect(await post('/jobs', { task: 't.x', queue: 'hh_full' })).toEqual({ status: 429,
    message: "queue: queue 'hh_full' is full: 1 waiting job + 1 published > max_size 1; "
      + 'publish later or raise it with pgdrain queue create hh_full --max-size N' });
  expect(await db.sql(`select count(*)::int as n from jobs.job_queue where queue = 'hh_full'`)).toEqual([{ n: 1 }]);
});

// Only pgdrain's own hint is the command: a caller's text echoed in a message stays as given, even when it
// reads like a hint's call. Before, an unknown option named so came back as `pgdrain queue create a --max-size 5`.
it("a caller's own text that reads like a hint's call is echoed as given", async () => {
  expect(await post('/jobs', { task: 't.x', "queues.create('a', { maxSize: 5 })": 1 })).toEqual({ status: 400,
    message: "queues.create('a', { maxSize: 5 }): unknown field" });
  expect(await post('/jobs', { task: 't.x', queue: 'hh_full', "create it with queues.create('a')": 1 })).toEqual({ status: 400,
    message: "create it with queues.create('a'): unknown field" });
});
