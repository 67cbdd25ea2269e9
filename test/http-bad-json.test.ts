// Bad JSON sent to the HTTP API, in a body or a query parameter, answers 400
// naming the field and the rule, and where the text went wrong: not the
// parser's message, which quotes what was sent (`Unexpected token 'h',
// "hello" is not valid JSON`). Before, every body and the JSON query
// parameters (POST /drain's filter and exclude, GET /jobs's body) answered
// "must be valid JSON (<the parser's message>)". Where the parser says a
// position, the answer gives it; a text cut short says so. The Worker and the Lambda
// handler serve this same app (createApp). The real app in process, against
// a real PostgreSQL; nothing is claimed or published.
import { expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const TOKEN = 'http-bad-json-token-0123456789';
const queue = createQueue({ driver: db.driver, tasks: {} });
const app = createApp({ queue, token: TOKEN });
const MARK = 'ECHOED<b>';

async function send(method: string, path: string, body?: string) {
  const res = await app.request(path, { method, body, headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' } });
  const { error } = await res.json() as { error: { code: string; field: string | null; message: string } };
  return { status: res.status, ...error };
}
const query = (text: string) => encodeURIComponent(text);

it.each([
  ['POST', '/jobs', `{"task": "t.x", "body": ${MARK}}`, 'body', 'body: must be valid JSON'],
  ['POST', '/jobs', `${MARK}`, 'body', 'body: must be valid JSON'],
  ['POST', '/drain', `{"batchSize": 1, "topic": "${MARK}"`, 'body', 'body: must be valid JSON (the first error is at position 37)'],
  ['POST', '/drain', `{"batchSize": 1, "topic": `, 'body', 'body: must be valid JSON (the text ends too soon)'],
  ['POST', '/events/user.created', `{"body": '${MARK}'}`, 'body', 'body: must be valid JSON'],
  ['POST', `/drain?filter=${query(`{"region": ${MARK}}`)}`, undefined, 'filter', 'filter: must be valid JSON'],
  ['POST', `/drain?filter=${query(`{${MARK}: 1}`)}`, undefined, 'filter', 'filter: must be valid JSON (the first error is at position 1)'],
  ['POST', `/drain?exclude=${query(`[{"partner": "acme"}, ${MARK}]`)}`, undefined, 'exclude', 'exclude: must be valid JSON'],
  ['POST', `/drain?filter=${query(MARK)}`, undefined, 'filter', 'filter: must be valid JSON'],
  ['GET', `/jobs?body=${query(`{"user": ${MARK}}`)}`, undefined, 'body', 'body: must be valid JSON'],
  ['GET', `/jobs?body=${query(`{"user": "${MARK}", }`)}`, undefined, 'body', 'body: must be valid JSON (the first error is at position 22)'],
])('%s %s answers 400 naming the field, not echoing the text', async (method, path, body, field, message) => {
  expect(await send(method, path, body)).toEqual({ status: 400, code: 'invalid_argument', field, message });
  expect(await db.sql(`select count(*)::int as n from jobs.job`)).toEqual([{ n: 0 }]);
});
