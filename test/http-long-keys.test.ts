// A 400 answer names the field and its rule, but a key or value the caller
// sent is cut, as the Lambda cuts a refusal: an unknown 5000-character key in
// POST /jobs or /drain was echoed whole in the field and again in the message
// (~10 KB). The real app in process, against a real PostgreSQL.
import { expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const TOKEN = 'long-keys-token-0123456789abcdef';
const queue = createQueue({ driver: db.driver, tasks: {} });
const app = createApp({ queue, token: TOKEN });

async function post(path: string, body: unknown) {
  const res = await app.request(path, { method: 'POST', body: JSON.stringify(body),
                                        headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' } });
  const text = await res.text();
  const { error } = JSON.parse(text) as { error: { code: string; field: string | null; message: string } };
  return { status: res.status, size: text.length, ...error };
}

const key = 'k'.repeat(5000);

it('POST /jobs with an unknown 5000-character key: a 400 under 1 KB that names the field, nothing written', async () => {
  const answer = await post('/jobs', { task: 'lk.t', [key]: 1 });
  expect(answer).toMatchObject({ status: 400, code: 'invalid_argument' });
  expect(answer.size).toBeLessThan(1200);
  expect(answer.field).toMatch(/^k{20,}…$/);
  expect(answer.message.startsWith(`${answer.field}: unknown field`)).toBe(true);
  const bulk = await post('/jobs', { jobs: [{ task: 'lk.t', [key]: 1 }] });
  expect(bulk.size).toBeLessThan(1200);
  expect(bulk.field).toMatch(/^jobs\[0\]\.k{20,}…$/);
  expect(bulk.message).toMatch(/^jobs\[0\]\.k+…: unknown field/);
  expect(await db.sql(`select count(*)::int as n from jobs.job_queue where task = 'lk.t'`)).toEqual([{ n: 0 }]);
});

it('POST /drain with an unknown 5000-character key, and more of them: under 1 KB', async () => {
  const answer = await post('/drain', { batchSize: 1, [key]: 1, [`${key}2`]: 2 });
  expect(answer).toMatchObject({ status: 400, code: 'invalid_argument' });
  expect(answer.size).toBeLessThan(1200);
  expect(answer.field).toMatch(/^k{20,}…$/);
  expect(answer.message.startsWith(`${answer.field}: unknown field`)).toBe(true);
});

it('a key of emoji is cut between two of them, never inside one', async () => {
  const answer = await post('/jobs', { task: 'lk.t', ['😀'.repeat(3000)]: 1 });
  expect(answer.status).toBe(400);
  expect(answer.size).toBeLessThan(3000);
  for (const text of [answer.field!, answer.message]) {
    expect(text).toMatch(/^(😀)+…/u);
    expect(text).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/); // no half of a pair
  }
});

it('a 404 for a 5000-character path is cut as well', async () => {
  const res = await app.request(`/${'p'.repeat(5000)}`, { headers: { Authorization: `Bearer ${TOKEN}` } });
  const text = await res.text();
  expect(res.status).toBe(404);
  expect(text.length).toBeLessThan(1000);
  expect((JSON.parse(text) as { error: { message: string } }).error.message).toMatch(/^no route for GET \/p+…$/);
});
