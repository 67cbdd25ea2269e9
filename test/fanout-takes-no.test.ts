// publishEvent (and POST /events/:event) refuses a dedupeKey saying why, not
// as a plain "unknown option": a dedupe key is global, not per queue, so one
// key on the job of every subscribed queue would make the fan-out one job.
// Its mode and throttle go with it; the subscriptions name the queues.
// `pgdrain event publish --dedupe-key` (and --dedupe-mode, --throttle, --queue,
// the flags of `pgdrain publish` standing for the others) too (dist/cli.mjs:
// `npm run build` first).
import { beforeEach, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });
const TOKEN = 'fanout-token-0123456789';
const app = createApp({ queue, token: TOKEN });

const WHY_NO_KEY = 'a dedupe key is global, not per queue: on the job of every subscribed queue, one key would make the '
  + 'fan-out one job, in the first queue. To publish an event at most once, publish its job into each subscribed queue '
  + "yourself, each with a key of its own (the queue's name and the event's key)";
const cases: [Record<string, unknown>, string, string][] = [
  [{ dedupeKey: 'k' }, 'dedupeKey', `an event takes no dedupeKey: ${WHY_NO_KEY}`],
  [{ dedupeMode: 'replace' }, 'dedupeMode', `an event takes no dedupeMode: it goes with a dedupeKey, which an event takes none of: ${WHY_NO_KEY}`],
  [{ throttleSeconds: 60 }, 'throttleSeconds', `an event takes no throttleSeconds: it goes with a dedupeKey, which an event takes none of: ${WHY_NO_KEY}`],
  [{ queue: 'mail' }, 'queue', 'an event takes no queue: its subscriptions name the queues it is published to (subscribe the queue to the event)'],
];

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.subscription');
  await sql(`delete from jobs.queue where name <> 'default'`);
  await sql(`select jobs.create_queue('mail'); select jobs.create_queue('crm')`);
  await queue.queues.subscribe('user.created', 'mail');
  await queue.queues.subscribe('user.created', 'crm');
});

it.each(cases)('publishEvent(…, %j) names options.%s and says why; nothing is written', async (options, name, message) => {
  await expect(queue.publishEvent('user.created', {}, { priority: 1, ...options } as never)).rejects
    .toMatchObject({ name: 'ValidationError', field: `options.${name}`, message: `options.${name}: ${message}` });
  expect(await sql('select job_id from jobs.job_queue')).toEqual([]);
});

it.each(cases)('POST /events/:event with %j answers 400 naming %s and saying why; nothing is written', async (options, name, message) => {
  const res = await app.request('/events/user.created', { method: 'POST', body: JSON.stringify({ body: { user: 1 }, ...options }),
                                                         headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' } });
  expect({ status: res.status, body: await res.json() }).toEqual({ status: 400,
    body: { error: { code: 'invalid_argument', message: `${name}: ${message}`, field: name } } });
  expect(await sql('select job_id from jobs.job_queue')).toEqual([]);
});

it('pgdrain event publish takes --dedupe-key (its help says it is refused) and refuses it saying why, exit 2; nothing is written', async () => {
  const help = await runCli(db.url, 'event', 'publish', '--help');
  expect(help.code).toBe(0);
  expect(help.stdout.replace(/\s+/g, ' ')).toContain('--dedupe-key <key> refused: a dedupe key is global, not per queue');
  const refused = await runCli(db.url, 'event', 'publish', 'user.created', '{"user":1}', '--dedupe-key', 'user:1', '--priority', '1');
  expect({ code: refused.code, stdout: refused.stdout, stderr: refused.stderr })
    .toEqual({ code: 2, stdout: '', stderr: `pgdrain: --dedupe-key: an event takes none: ${WHY_NO_KEY}\n` });
  expect(await sql('select job_id from jobs.job_queue')).toEqual([]);
});

const flags: [string, string, string][] = [
  ['--dedupe-mode', 'replace', `it goes with a dedupeKey, which an event takes none of: ${WHY_NO_KEY}`],
  ['--throttle', '60', `it goes with a dedupeKey, which an event takes none of: ${WHY_NO_KEY}`],
  ['--queue', 'mail', 'its subscriptions name the queues it is published to (subscribe the queue to the event)'],
];

it.each(flags)('pgdrain event publish takes %s (its help says it is refused) and refuses it saying why, exit 2; nothing is written',
  async (flag, value, why) => {
    const help = await runCli(db.url, 'event', 'publish', '--help');
    expect(help.stdout.replace(/\s+/g, ' ')).toMatch(new RegExp(`${flag} <\\w+> refused: `));
    const refused = await runCli(db.url, 'event', 'publish', 'user.created', '{"user":1}', flag, value, '--priority', '1');
    expect({ code: refused.code, stdout: refused.stdout, stderr: refused.stderr })
      .toEqual({ code: 2, stdout: '', stderr: `pgdrain: ${flag}: an event takes none: ${why}\n` });
    expect(await sql('select job_id from jobs.job_queue')).toEqual([]);
  });
