// jobs.schedule_http_drain stores a body that pg_cron posts to POST /drain at
// every tick: a body POST /drain refuses (400) would be refused at each tick,
// the drain never run and no one told. So the SQL function refuses, naming
// body.<field>, what POST /drain refuses: the same bodies fed to both (the real
// app, in process, and the real function against a real PostgreSQL), so the
// two rules cannot drift apart unseen. pg_net cannot be installed here: the
// stand-in gives the function pg_net's signature; pg_cron is not in this
// database, so a body that passes every check meets 0A000 for pg_cron, after
// the checks, with nothing written.
import { describe, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';
import { PG_NET_STAND_IN } from './support/pg-net-stand-in.js';

const db = await testDb();
const TOKEN = 'http-drain-body-token-0123456789';
const queue = createQueue({ driver: db.driver, tasks: { t: async () => 'done' } });
// The most any server takes (serve --max-batch and --max-budget at their bounds): the SQL cannot know a server's own.
const app = createApp({ queue, token: TOKEN, limits: { maxBatchSize: 10_000, maxBudgetSeconds: 86_400 } });
await db.sql(PG_NET_STAND_IN);
await db.sql(`select jobs.create_queue('a.b_c:d-e')`); // a drain of a queue that does not exist is refused too

/** POST /drain's answer to body: its status and the field its error names. */
async function postDrain(body: unknown) {
  const res = await app.request('/drain', { method: 'POST', body: JSON.stringify(body),
                                            headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' } });
  const answer = await res.json() as { error?: { field: string | null } };
  return { status: res.status, field: answer.error?.field };
}

/** What jobs.schedule_http_drain raises given body: its code and the field it names. */
async function scheduleHttpDrain(body: unknown) {
  const e = await sqlErrorOf(db.sql, `select jobs.schedule_http_drain('https://app.example/drain', 'secret', name => 'rules',
                                                                      body => $1::jsonb)`, [JSON.stringify(body)]);
  return { code: e.code, column: e.column, message: e.message };
}

const BAD: [string, unknown, string][] = [
  ['not an object', [], 'body'],
  ['batchSize 0', { batchSize: 0 }, 'batchSize'],
  ['batchSize not an integer', { batchSize: 1.5 }, 'batchSize'],
  ['batchSize as text', { batchSize: '10' }, 'batchSize'],
  ['batchSize null', { batchSize: null }, 'batchSize'],
  ['batchSize over any server\'s maximum', { batchSize: 10_001 }, 'batchSize'],
  ['budgetSeconds 0', { budgetSeconds: 0 }, 'budgetSeconds'],
  ['budgetSeconds as text', { budgetSeconds: '30' }, 'budgetSeconds'],
  ['topic empty', { topic: '' }, 'topic'],
  ['topic only whitespace', { topic: ' \t\v' }, 'topic'],
  ['topic not text', { topic: 5 }, 'topic'],
  ['topic of 201 characters', { topic: 'x'.repeat(201) }, 'topic'],
  ['queue empty', { queue: '' }, 'queue'],
  ['queue with a space', { queue: 'my queue' }, 'queue'],
  ['queue not text', { queue: 7 }, 'queue'],
  ['queue null', { queue: null }, 'queue'],
  ['queue of 201 characters', { queue: 'q'.repeat(201) }, 'queue'],
  ['lingerMs below 0', { lingerMs: -1 }, 'lingerMs'],
  ['lingerMs over a day', { lingerMs: 86_400_001 }, 'lingerMs'],
  ['lingerMs as text', { lingerMs: '5' }, 'lingerMs'],
  ['pollMs under 50', { pollMs: 49 }, 'pollMs'],
  ['pollMs over an hour', { pollMs: 3_600_001 }, 'pollMs'],
  ['pollMs a boolean', { pollMs: true }, 'pollMs'],
  ['filter an array', { filter: [] }, 'filter'],
  ['filter text', { filter: '{"a":1}' }, 'filter'],
  ['filter null', { filter: null }, 'filter'],
  ['exclude an object', { exclude: { a: 1 } }, 'exclude'],
  ['exclude of 101 objects', { exclude: Array.from({ length: 101 }, (_, i) => ({ a: i })) }, 'exclude'],
  ['exclude holding {}', { exclude: [{}] }, 'exclude[0]'],
  ['exclude holding a number', { exclude: [{ a: 1 }, 5] }, 'exclude[1]'],
  ['a misspelt field', { batch_size: 10 }, 'batch_size'],
  ['an unknown field', { batch: 50 }, 'batch'],
];

describe('a body POST /drain refuses', () => {
  it.each(BAD)('%s: refused by POST /drain and by jobs.schedule_http_drain, naming the same field', async (_, body, field) => {
    expect(await postDrain(body)).toEqual({ status: 400, field });
    const refused = await scheduleHttpDrain(body);
    expect([refused.code, refused.column]).toEqual(['PDC03', field === 'body' ? 'body' : `body.${field}`]);
    expect(refused.message.startsWith(`${refused.column}: `)).toBe(true);
  });

});

const GOOD: [string, unknown][] = [
  ['empty', {}],
  ['every field at its bounds', { batchSize: 10_000, budgetSeconds: 0.5, topic: 'mail.%', queue: 'default', lingerMs: 0,
                                  pollMs: 50, filter: {}, exclude: [] }],
  ['the other bounds', { batchSize: 1, budgetSeconds: 119.9, topic: 'x'.repeat(200), queue: 'a.b_c:d-e', lingerMs: 1,
                         pollMs: 3_600_000, filter: { region: 'eu' }, exclude: Array.from({ length: 100 }, (_, i) => ({ a: i })) }],
  ['a whole number written as a decimal', { batchSize: 10.0, budgetSeconds: 1e1 }],
];

describe('a body POST /drain takes', () => {
  it.each(GOOD)('%s: taken by both (jobs.schedule_http_drain goes on to ask for pg_cron)', async (_, body) => {
    expect(await postDrain(body)).toEqual({ status: 200, field: undefined });
    const e = await scheduleHttpDrain(body);
    expect([e.code, e.message]).toEqual(['0A000', expect.stringMatching(/^pg_cron is not installed/)]);
  });
});

describe('a budget pg_net would hang up on', () => {
  it('is refused naming body.budgetSeconds, though the server would take it', async () => {
    expect(await postDrain({ budgetSeconds: 120, lingerMs: 0 })).toEqual({ status: 200, field: undefined });
    expect(await scheduleHttpDrain({ budgetSeconds: 120 })).toEqual({ code: 'PDC03', column: 'body.budgetSeconds',
      message: 'body.budgetSeconds: must be under timeout_ms (120000): pg_net hanging up at timeout_ms stops the drain, got 120' });
  });
});
