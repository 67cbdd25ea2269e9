// A body PostgreSQL's jsonb cannot store (a NUL, \u0000, or a lone surrogate)
// is refused before any write, naming the job and where in its body, as a
// handler's result is (src/json-text.ts notJsonAt): in a bulk of many jobs
// with large bodies, "jobs[1].body" alone left the caller searching.
// Before, the message stopped at the field: "jobs[1].body: must not contain \u0000 (PostgreSQL jsonb cannot store it)".
import { expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const queue = createQueue({ driver: db.driver, tasks: {} });
const TOKEN = 'publish-nul-path-token-0123456789';
const app = createApp({ queue, token: TOKEN });
const RULE = 'must not contain \\u0000 (PostgreSQL jsonb cannot store it)';
const queued = async () => (await db.sql(`select count(*)::int as n from jobs.job_queue`))[0]!.n as number;

async function refusal(call: () => Promise<unknown>) {
  const error = await call().then(() => undefined, (e: unknown) => e as { field: string; message: string });
  return { field: error?.field, message: error?.message };
}

it('publish and publishBulk name the job and the path of the string', async () => {
  expect(await refusal(() => queue.publish('t.x', { a: { b: ['ok', 'nul \u0000'] } }))).toEqual({
    field: 'body', message: `body: ${RULE}, at body.a.b[1]` });
  expect(await refusal(() => queue.publishBulk([{ task: 't.x', body: { s: 'ok' } }, { task: 't.x', body: { list: [{ s: '\u0000' }] } }])))
    .toEqual({ field: 'jobs[1].body', message: `jobs[1].body: ${RULE}, at jobs[1].body.list[0].s` });
  expect(await refusal(() => queue.publishBulk([{ task: 't.x' }, { task: 't.x', body: { 'k\u0000': 1 } }]))).toEqual({
    field: 'jobs[1].body', message: `jobs[1].body: ${RULE}, in the key "k\\u0000" of jobs[1].body` });
  expect(await refusal(() => queue.publish('t.x', { s: 'half \udc00' }))).toEqual({ field: 'body',
    message: 'body: must not contain an unpaired surrogate (\\udc00) (PostgreSQL jsonb cannot store it), at body.s' });
  // A body that is the string itself: its field is already where.
  expect(await refusal(() => queue.publish('t.x', '\u0000'))).toEqual({ field: 'body', message: `body: ${RULE}` });
  expect(await queued()).toBe(0);
});

it('POST /jobs names them as the request sent them, before any write', async () => {
  const post = async (raw: string) => {
    const res = await app.request('/jobs', { method: 'POST', body: raw,
                                             headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' } });
    return { status: res.status, error: ((await res.json()) as { error: unknown }).error };
  };
  expect(await post('{"jobs": [{"task": "t.x"}, {"task": "t.x", "body": {"a": [1, "x\\u0000"]}}]}')).toEqual({ status: 400,
    error: { code: 'invalid_argument', field: 'jobs[1].body', message: `jobs[1].body: ${RULE}, at jobs[1].body.a[1]` } });
  expect(await post('{"task": "t.x", "body": {"a": "\\u0000"}}')).toEqual({ status: 400,
    error: { code: 'invalid_argument', field: 'body', message: `body: ${RULE}, at body.a` } });
  expect(await queued()).toBe(0);
});

it('names a key that is no plain name in brackets, a long key by its head, and a long path by its head', async () => {
  // A dot, a quote, a newline or nothing at all in a key: `body.a.b` read as two levels, a newline split the message.
  expect(await refusal(() => queue.publish('t.x', { 'a.b': { 'c"d': ['\u0000'] } }))).toEqual({ field: 'body',
    message: `body: ${RULE}, at body["a.b"]["c\\"d"][0]` });
  expect(await refusal(() => queue.publish('t.x', { '': { 'x\ny': '\u0000' } }))).toEqual({ field: 'body',
    message: `body: ${RULE}, at body[""]["x\\ny"]` });
  // A key JSON leaves out (undefined) is not where the NUL is.
  expect(await refusal(() => queue.publish('t.x', { 'k\u0000': undefined, s: '\u0000' }))).toEqual({ field: 'body',
    message: `body: ${RULE}, at body.s` });
  // A 200,000-character key, or 2,000 levels of keys: the message does not carry them whole.
  const long = 'k'.repeat(200_000);
  const head = `${'k'.repeat(80)}…`;
  expect(await refusal(() => queue.publish('t.x', { [long]: '\u0000' }))).toEqual({ field: 'body',
    message: `body: ${RULE}, at body["${head}"]` });
  expect(await refusal(() => queue.publish('t.x', { [`${long}\u0000`]: 1 }))).toEqual({ field: 'body',
    message: `body: ${RULE}, in the key "${head}" of body` });
  let deep: unknown = '\u0000';
  for (let i = 0; i < 2000; i++) deep = { [`key${'x'.repeat(60)}`]: deep };
  const { message } = await refusal(() => queue.publish('t.x', deep));
  expect(message!.length).toBeLessThan(1200);
  expect(message).toMatch(/^body: must not contain \\u0000 \(PostgreSQL jsonb cannot store it\), at body\.keyx+\.keyx+.*… \(\d+ characters cut\)$/);
  expect(await queued()).toBe(0);
});
