// GET /jobs (listJobs over HTTP) on a real server on 127.0.0.1 against a
// real PostgreSQL: the filters as query parameters, paging, the auth of
// GET /jobs/:id, and a 400 naming the parameter on bad input.
import { serve, type ServerType } from '@hono/node-server';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const TOKEN = 'test-token-0123456789abcdef';
const queue = createQueue({ driver: { ...db.driver, close: async () => {} } });

let server: ServerType | undefined;
afterAll(async () => {
  await new Promise((r) => server?.close(r));
});
const base = await new Promise<string>((done) => {
  server = serve({ fetch: createApp({ queue, token: TOKEN }).fetch, port: 0, hostname: '127.0.0.1' },
    (info) => done(`http://127.0.0.1:${info.port}`));
});

async function get(pathAndQuery: string, token: string | null = TOKEN): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}${pathAndQuery}`, { headers: token === null ? {} : { authorization: `Bearer ${token}` } });
  return { status: res.status, body: await res.json() };
}
const idsOf = async (query: string) => {
  const answer = await get(`/jobs${query}`);
  expect(answer.status, JSON.stringify(answer.body)).toBe(200);
  return (answer.body.jobs as { id: string }[]).map((j) => j.id);
};

let a: string;
let b: string;
let c: string;

beforeAll(async () => {
  await queue.queues.create('mail');
  a = await queue.publish('email.send', { user: 42, kind: 'welcome' }, { queue: 'mail' });
  b = await queue.publish('email.send', { user: 42 }, { queue: 'mail', delaySeconds: 3600 });
  await queue.fail([b], 'bounced');
  c = await queue.publish('report.build', { user: 7 });
});

it('answers the jobs newest first as queue.listJobs does, narrowed by each parameter', async () => {
  const all = await get('/jobs');
  expect(all.status).toBe(200);
  expect(all.body).toEqual({ jobs: JSON.parse(JSON.stringify(await queue.listJobs())) });
  expect(all.body.jobs.map((j: { id: string }) => j.id)).toEqual([c, b, a]);
  expect(await idsOf('?queue=mail')).toEqual([b, a]);
  expect(await idsOf('?task=report.build')).toEqual([c]);
  expect(await idsOf('?state=failure')).toEqual([b]);
  expect(await idsOf('?queue=mail&state=pending')).toEqual([a]);
  expect(await idsOf(`?body=${encodeURIComponent('{"user":42}')}`)).toEqual([b, a]);
  expect(await idsOf(`?body=${encodeURIComponent('{"kind":"welcome"}')}&state=pending`)).toEqual([a]);
  expect(await idsOf('?limit=2')).toEqual([c, b]);
  expect(await idsOf(`?limit=2&before=${b}`)).toEqual([a]);
  expect(await idsOf('?queue=nowhere')).toEqual([]);
});

it('needs the auth GET /jobs/:id needs', async () => {
  expect((await get('/jobs')).status).toBe(200);
  expect(await get('/jobs', null)).toMatchObject({ status: 401, body: { error: { code: 'unauthorized' } } });
  expect(await get('/jobs', 'wrong-token-0123456789abcdef')).toMatchObject({ status: 401 });
});

it('answers 400 naming the query parameter on bad input', async () => {
  for (const [query, field, message] of [
    ['?limit=0', 'limit', 'limit: must be an integer from 1 to 1000'],
    ['?limit=abc', 'limit', 'limit: must be an integer from 1 to 1000'],
    ['?limit=1001', 'limit', 'limit: must be an integer from 1 to 1000'],
    ['?state=waiting', 'state', 'state: must be one of pending, scheduled, blocked, running, expired, success, failure, cancelled'],
    ['?body=%7Buser%7D', 'body', 'body: must be valid JSON'],
    ['?body=', 'body', 'body: is empty'],
    ['?before=-1', 'before', 'before: must be a job id'],
    ['?queue=bad%20queue', 'queue', 'queue: must be dot-separated words'],
    ['?task=', 'task', 'task: must be a non-empty task name'],
    ['?state=failure&state=success', 'state', 'state: must be given once in the query string, got 2'],
    ['?ids=1', 'ids', 'ids: unknown query parameter (GET /jobs takes queue, task, state, body, before, limit)'],
  ] as const) {
    const answer = await get(`/jobs${query}`);
    expect(answer.status, query).toBe(400);
    expect(answer.body.error, query).toMatchObject({ code: 'invalid_argument', field });
    expect(answer.body.error.message, query).toContain(message);
  }
});
