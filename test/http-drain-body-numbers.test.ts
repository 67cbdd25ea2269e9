// jobs.schedule_http_drain's body is stored as jsonb and posted as jsonb's
// text at every tick (1e20 as 100000000000000000000); POST /drain reads it
// into doubles and refuses a number it cannot keep as written (an integer
// past 2^53, 1e400): a body the function took was then a 400 at every tick,
// the drain never run and no one told. One POST /drain would read as another
// number (1e-400 as 0) is refused too: a filter would match other jobs.
// On a real PostgreSQL, the real app in process.
import { describe, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';
import { PG_NET_STAND_IN } from './support/pg-net-stand-in.js';

const db = await testDb();
const TOKEN = 'http-drain-body-token-0123456789';
const queue = createQueue({ driver: db.driver, tasks: { t: async () => 'done' } });
const app = createApp({ queue, token: TOKEN, limits: { maxBatchSize: 10_000, maxBudgetSeconds: 86_400 } });
await db.sql(PG_NET_STAND_IN);

/** POST /drain's status for the text pg_net posts for body (jsonb's own text). */
async function postDrain(body: string) {
  const { text } = (await db.sql<{ text: string }>('select $1::jsonb::text as text', [body]))[0]!;
  const res = await app.request('/drain', { method: 'POST', body: text,
                                            headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' } });
  return res.status;
}

/** What jobs.schedule_http_drain answers: the field it refuses, or 'taken' (0A000: it went on to ask for pg_cron). */
async function scheduleHttpDrain(body: string) {
  const e = await sqlErrorOf(db.sql, `select jobs.schedule_http_drain('https://app.example/drain', 'secret', name => 'rules',
                                                                      body => $1::jsonb)`, [body]);
  return e.code === '0A000' ? 'taken' : e.column;
}

describe('numbers a double cannot hold', () => {
  it.each([
    ['budgetSeconds under the least double', '{"budgetSeconds": 1e-400}', 'body.budgetSeconds'],
    ['a filter value over the greatest double', '{"filter": {"a": 1e400}}', 'body.filter'],
    ['an exclude value over the greatest double', '{"exclude": [{"a": 1e400}]}', 'body.exclude'],
    ['a filter id past 2^53', '{"filter": {"id": 12345678901234567890}}', 'body.filter'],
    ['a filter value written 1e20 (its jsonb text an integer past 2^53)', '{"filter": {"a": 1e20}}', 'body.filter'],
  ])('%s: POST /drain refuses it, and so does jobs.schedule_http_drain', async (_, body, field) => {
    expect(await postDrain(body)).toBe(400);
    expect(await scheduleHttpDrain(body)).toBe(field);
  });

  // POST /drain takes these, but reads other numbers: its filter would match other jobs than the one stored.
  it.each([
    ['a filter value under the least double', '{"filter": {"a": 1e-400}}', 'body.filter'],
    ['a filter decimal past a double\'s precision', '{"filter": {"a": 0.1000000000000000000001}}', 'body.filter'],
  ])('%s: refused by jobs.schedule_http_drain', async (_, body, field) => {
    expect(await scheduleHttpDrain(body)).toBe(field);
  });
});

describe('numbers a double holds as written', () => {
  it.each([
    ['a decimal a double holds only with 17 digits', '{"budgetSeconds": 0.30000000000000004, "filter": {"a": 0.1}}'],
    ['whole numbers written as decimals and exponents', '{"batchSize": 100.0, "lingerMs": 1e3, "pollMs": 5E+1, "filter": {"n": -0}}'],
    ['the least double, the greatest safe integer', '{"filter": {"a": 5e-324, "b": 9007199254740991, "c": -9007199254740991}}'],
    ['a large double with a fraction', '{"filter": {"a": 1.5e15}}'],
  ])('%s: taken by both', async (_, body) => {
    expect(await postDrain(body)).toBe(200);
    expect(await scheduleHttpDrain(body)).toBe('taken');
  });
});
