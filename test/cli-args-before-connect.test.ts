// A name or key the SQL would refuse (jobs.check_name's queue and task rule,
// jobs.check_key, jobs.schedule's name rule) is refused by the CLI before it
// connects: exit 2 naming the argument and the rule, in the words it used
// once connected ("pgdrain: --queue: must be …"). The CLI connected first,
// so against a server that is down it exited 1 ("database unavailable") and
// never said the argument was wrong. The real CLI, against a closed port.
import { expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { runCli, runCliWith } from './support/drain-process.js';

const NOWHERE = 'postgres://x@127.0.0.1:1/x';
const CRON = ['--cron', '0 9 * * *'];
const db = await testDb();

it.each([
  [['publish', ''], /^pgdrain: task: must be a non-empty task name/],
  [['publish', 'a b'], /^pgdrain: task: must be dot-separated words/],
  [['publish', 'café.send'], /^pgdrain: task: must be dot-separated words/],
  [['publish', '--queue', '', 'x'], /^pgdrain: --queue: must be a non-empty queue name/],
  [['publish', '--queue', 'a..b', 'x'], /^pgdrain: --queue: must be dot-separated words/],
  [['publish', '--queue', 'q'.repeat(201), 'x'], /^pgdrain: --queue: must be at most 200 characters/],
  [['publish', '--dedupe-key', ' ', 'x'], /^pgdrain: --dedupe-key: must be a non-empty text/],
  [['publish', '--serial-key', '', 'x'], /^pgdrain: --serial-key: must be a non-empty text/],
  // Rules of publish's flags together, the core's (publish()), checked before connecting too.
  [['publish', 'x', '--throttle', '5'], /^pgdrain: --throttle: needs a dedupe key/],
  [['publish', 'x', '--dedupe-mode', 'replace'], /^pgdrain: --dedupe-mode: needs a dedupe key/],
  [['publish', 'x', '--retry-delay', '10', '--retry-delay-max', '2'], /^pgdrain: --retry-delay-max: must be at least the retry delay/],
  [['queue', 'create', ''], /^pgdrain: name: must be a non-empty queue name/],
  [['queue', 'create', 'mail box'], /^pgdrain: name: must be dot-separated words/],
  [['queue', 'pause', ''], /^pgdrain: name: must be a non-empty queue name/],
  [['queue', 'resume', 'é'], /^pgdrain: name: must be dot-separated words/],
  [['schedule', 'add', '', ...CRON, '--task', 'a.run'], /^pgdrain: name: must be 1 to 46 letters/],
  [['schedule', 'add', 's'.repeat(47), ...CRON, '--task', 'a.run'], /^pgdrain: name: must be 1 to 46 letters/],
  [['schedule', 'add', 's', ...CRON, '--task', ''], /^pgdrain: --task: must be a non-empty task name/],
  [['schedule', 'add', 's', ...CRON, '--task', 'a.run', '--queue', ''], /^pgdrain: --queue: must be a non-empty queue name/],
  [['schedule', 'add', 's', ...CRON, '--task', 'a.run', '--dedupe-key', ''], /^pgdrain: --dedupe-key: must be a non-empty text/],
  [['schedule', 'add', 's', ...CRON, '--task', 'a.run', '--serial-key', ''], /^pgdrain: --serial-key: must be a non-empty text/],
  [['schedule', 'rm', ''], /^pgdrain: name: must be 1 to 46 letters/],
  [['redrive', '--queue', ''], /^pgdrain: --queue: must be a non-empty queue name/],
  [['redrive', '--task', ''], /^pgdrain: --task: must be a non-empty pattern/],
  // The core's rules of flags together, and JSON jsonb cannot store (jsonParam): checked before connecting too.
  [['publish', 'x', '--attributes', '{"a":"\\u0000"}'], /^pgdrain: --attributes: must not contain \\u0000 \(PostgreSQL jsonb cannot store it\), at options\.attributes\.a$/m],
  [['event', 'publish', 'e.x', '--retry-delay', '10', '--retry-delay-max', '2'], /^pgdrain: --retry-delay-max: must be at least the retry delay \(10 seconds\), got 2$/m],
  [['event', 'publish', 'e.x', '--at', '2030-01-01T00:00:00Z', '--expires-at', '2029-01-01T00:00:00Z'], /^pgdrain: --expires-at: must be after runAt/],
  [['event', 'publish', 'e.x', '"\\u0000"'], /^pgdrain: json: must not contain \\u0000/],
  [['event', 'publish', 'e.x', '--attributes', '{"a":"\\u0000"}'], /^pgdrain: --attributes: must not contain \\u0000/],
  [['queue', 'create', 'q', '--retry-delay', '10', '--retry-delay-max', '2'], /^pgdrain: --retry-delay-max: must be at least the retry delay$/m],
  [['queue', 'create', 'q', '--group-concurrency', '2', '--group-tiers', '{"pro":0}'], /^pgdrain: --group-tiers\.pro: must be an integer between 1 and 100000$/m],
  [['queue', 'create', 'q', '--group-concurrency', '2', '--group-tiers', '{"":1}'], /^pgdrain: --group-tiers: tier names must be non-empty texts/],
  [['redrive', '--include-cancelled'], /^pgdrain: --include-cancelled: needs ids \(cancelled jobs go back by id\)$/m],
  [['complete', '1', '--result', '"\\u0000"'], /^pgdrain: --result: must not contain \\u0000/],
  [['jobs', '--body', '"\\u0000"'], /^pgdrain: --body: must not contain \\u0000/],
  [['schedule', 'add', 's', ...CRON, '--task', 'a.run', '--dedupe-mode', 'replace'], /^pgdrain: --dedupe-mode: needs a dedupe key/],
  [['schedule', 'add', 's', ...CRON, '--task', 'a.run', '--overlap', 'skip', '--dedupe-key', 'k'], /^pgdrain: --dedupe-key: cannot be given with overlap 'skip'/],
  [['schedule', 'add', 's', ...CRON, '--task', 'a.run', '--body', '"\\u0000"'], /^pgdrain: --body: must not contain \\u0000/],
])('pgdrain %j with the server down: exit 2 naming the argument, before connecting', async (args, stderr) => {
  const run = await runCli(NOWHERE, ...args, '--dsn', NOWHERE);
  expect(run.stderr).toMatch(stderr);
  expect(run.stderr).not.toMatch(/database unavailable/);
  expect(run.code).toBe(2);
});

// serve and wait, each flag and variable they read (serve's PORT, PGDRAIN_TASKS; wait's PGDRAIN_DB_TIMEOUT), and
// drain's --tasks. serve's --host '' listened on every interface (Node's default for no host), and its --tasks ''
// or PGDRAIN_TASKS='' served with POST /drain off, which drain refuses; drain's --tasks ' ' exited 1 (no such
// package); serve's whole numbers took 1e3 (port 1000), which drain's --batch and every other integer flag refuse.
const TOKEN = { PGDRAIN_TOKEN: 'test-token-0123456789abcdef' };
it.each([
  [{}, ['serve', '--host', ''], '--host: is empty: give an address (0.0.0.0 for every interface), or leave the flag out, got ""'],
  [{}, ['serve', '--host', ' '], '--host: is empty: give an address (0.0.0.0 for every interface), or leave the flag out, got " "'],
  [{}, ['serve', '--tasks', ''], '--tasks: is empty: give the tasks module (a path or a package name), got ""'],
  [{ PGDRAIN_TASKS: '' }, ['serve'], 'PGDRAIN_TASKS: is set but empty: give a value or unset it'],
  [{ PGDRAIN_TASKS: ' ' }, ['serve'], 'PGDRAIN_TASKS: is set but empty: give a value or unset it'],
  [{}, ['serve', '--port', '1e3'], '--port: must be an integer from 0 to 65535, got "1e3"'],
  [{ PORT: '8e3' }, ['serve'], 'PORT: must be an integer from 0 to 65535, got "8e3"'],
  [{}, ['serve', '--max-batch', '1e2'], '--max-batch: must be an integer from 1 to 10000, got "1e2"'],
  [{}, ['serve', '--max-body', '1e6'], '--max-body: must be an integer from 1 to 104857600, got "1e6"'],
  [{}, ['serve', '--max-connections', '1e2'], '--max-connections: must be an integer from 1 to 1000000, got "1e2"'],
  [{}, ['serve', '--dashboard-actions', '--dashboard-redrive-rows', '1e2'], '--dashboard-redrive-rows: must be an integer from 1 to 1000000, got "1e2"'],
  // As drain's --grace says it.
  [{}, ['serve', '--grace', '-1'], '--grace: must be a number of seconds from 0 to 3600, got "-1"'],
  [{}, ['serve', '--max-budget', '0'], '--max-budget: must be a number of seconds from 0.1 to 86400, got "0"'],
  [{}, ['drain', '--tasks', ' '], '--tasks: is empty: give the tasks module (a path or a package name), got " "'],
  [{}, ['drain', '--tasks', ''], '--tasks: is empty: give the tasks module (a path or a package name), got ""'],
  // Said as an empty PGDRAIN_* is (fromEnv), not as a value of the wrong kind ('must be an integer …, got ""').
  [{ PORT: '' }, ['serve'], 'PORT: is set but empty: give a value or unset it'],
  [{ PORT: ' ' }, ['serve'], 'PORT: is set but empty: give a value or unset it'],
  // In the pgdrain: style, naming the variable, as every other refusal of serve's (was "error: set PGDRAIN_TOKEN …");
  // "" is unset, as the Lambda and the Worker take it (a template's optional secret: docs/http-and-lambda.md).
  [{ PGDRAIN_TOKEN: undefined }, ['serve'],
   'PGDRAIN_TOKEN: is not set, nor PGDRAIN_HMAC_SECRET: set one (a bearer token, or the secret of signed requests) of at least 16 characters'],
  [{ PGDRAIN_TOKEN: '', PGDRAIN_HMAC_SECRET: '' }, ['serve'],
   'PGDRAIN_TOKEN: is not set, nor PGDRAIN_HMAC_SECRET: set one (a bearer token, or the secret of signed requests) of at least 16 characters'],
  // Refused before as now: pinned.
  [{}, ['serve', '--headers-timeout', '0'], '--headers-timeout: must be a number of seconds from 0.1 to 3600, got "0"'],
  [{}, ['serve', '--request-timeout', '1', '--headers-timeout', '5'],
   '--request-timeout: must be at least the headers timeout (5 s, --headers-timeout): the headers are part of the request'],
  [{}, ['serve', '--keep-alive-timeout', '0'], '--keep-alive-timeout: must be a number of seconds from 0.1 to 3600, got "0"'],
  [{}, ['serve', '--dashboard-redrive-rows', '5'], "--dashboard-redrive-rows: bounds the dashboard's redrive button: give --dashboard-actions too"],
  [{ PGDRAIN_TOKEN: 'short' }, ['serve'], 'PGDRAIN_TOKEN: must be a string of at least 16 characters'],
  [{ PGCONNECT_TIMEOUT: 'x' }, ['serve'], 'PGCONNECT_TIMEOUT: must be a whole number of seconds, got "x"'],
  [{}, ['wait', 'abc'], 'id: must be a job id (a positive integer of at most 9223372036854775807), got "abc"'],
  [{}, ['wait', '1', '--timeout', '1.5'], '--timeout: must be a positive integer of at most 2147483647, got "1.5"'],
  [{}, ['wait', '1', '--db-timeout', '-1'], '--db-timeout: must be a number of seconds from 0 to 86400, got "-1"'],
  [{ PGDRAIN_DB_TIMEOUT: 'x' }, ['wait', '1'], 'PGDRAIN_DB_TIMEOUT: must be a number of seconds from 0 to 86400, got "x"'],
  [{ PGDRAIN_DB_TIMEOUT: '' }, ['wait', '1'], 'PGDRAIN_DB_TIMEOUT: is set but empty: give a value or unset it'],
  [{ PGCONNECT_TIMEOUT: 'x' }, ['wait', '1'], 'PGCONNECT_TIMEOUT: must be a whole number of seconds, got "x"'],
])('with %j, pgdrain %j and the server down: exit 2 naming the flag or variable, before connecting', async (env, args, said) => {
  // --port 0: a serve that wrongly starts takes a free port, not one another test or helper holds.
  const port = args[0] === 'serve' && !args.includes('--port') && !('PORT' in env) ? ['--port', '0'] : [];
  const run = await runCliWith({ ...TOKEN, ...env }, NOWHERE, ...args, ...port, '--dsn', NOWHERE);
  expect(run).toEqual({ code: 2, stdout: '', stderr: `pgdrain: ${said}\n` });
});

// Said as every other refusal is (`pgdrain: FIELD: rule`), exit 2, before connecting: two flags that exclude each other
// and a flag that needs another said "error: give --delay or --at, not both" (commander's usage style); reschedule's
// --attempts over --max-retries named the option by its TypeScript name (maxRetries); redrive's --task ' ', which
// only a blank task name (none is) could match, was taken, as drain's --topic ' ' is not.
it.each([
  [['publish', 'x', '--delay', '5', '--at', '2030-01-01T00:00:00Z'], '--delay: give --delay or --at, not both'],
  [['publish', 'x', '1', '--body', '2'], '--body: give the body as the [json] argument or --body, not both'],
  [['publish', 'x', '--group-tier', 'pro'], '--group-tier: needs --group (the group whose tier it names)'],
  [['event', 'publish', 'e.x', '--delay', '5', '--at', '2030-01-01T00:00:00Z'], '--delay: give --delay or --at, not both'],
  [['event', 'publish', 'e.x', '--expires-in', '5', '--expires-at', '2030-01-01T00:00:00Z'],
   '--expires-in: give --expires-in or --expires-at, not both'],
  [['reschedule', '1', '--at', '2030-01-01T00:00:00Z', '--delay', '5'], '--delay: give --at or --delay, not both'],
  [['queue', 'create', 'q', '--group-tiers', '{"pro":5}'], '--group-tiers: needs --group-concurrency (the cap of groups of no tier)'],
  [['reschedule', '1', '--attempts', '5', '--max-retries', '2'], '--attempts: must be at most --max-retries (2), got 5: a job keeps a run left'],
  [['redrive', '--task', ' '], '--task: must be a non-empty pattern, not only whitespace, got " "'],
  // cancel's ids and --key, both or neither, and a reschedule of nothing said "error: give job ids or --key, one of
  // them" and "error: give --at, --delay or --priority, --max-retries or --attempts" (commander's style).
  [['cancel', '1', '--key', 'k'], '--key: give job ids or --key, not both'],
  [['cancel'], 'id: give job ids or --key'],
  [['reschedule', '1'], 'reschedule: give --at, --delay, --priority, --max-retries or --attempts'],
])('pgdrain %j with the server down: exit 2, said as pgdrain: FIELD: rule', async (args, said) => {
  expect(await runCli(NOWHERE, ...args, '--dsn', NOWHERE)).toEqual({ code: 2, stdout: '', stderr: `pgdrain: ${said}\n` });
});

it('the CLI agrees with the SQL: a unicode or dotted-empty name no queue can have, an ASCII one it can', async () => {
  // jobs.check_name: the rule of every queue and task name (sql/0002).
  const check = (name: string) => db.sql(`select jobs.check_name($1, 'PD009', 'name', 'queue name')`, [name])
    .then(() => true, (e: { code?: string }) => e.code === 'PD009' ? false : e);
  expect(await check('é')).toBe(false);
  expect(await check('café.send')).toBe(false);
  expect(await check('a..b')).toBe(false);
  expect(await check('q'.repeat(201))).toBe(false);
  expect(await check('mail:eu-1.send_2')).toBe(true);
  const refused = await db.sql(`select jobs.create_queue('é')`).then(() => 'created', (e: { code?: string }) => e.code);
  expect(refused).toBe('PD009');
  // The valid ones get as far as the connection (exit 1 with the server down).
  const run = await runCli(NOWHERE, 'publish', 'mail:eu-1.send_2', '--queue', 'mail:eu-1', '--dsn', NOWHERE);
  expect(run.stderr).toMatch(/database unavailable/);
  expect(run.code).toBe(1);
});

// The CLI takes what the core and the SQL take: schedule add --backfill 0.0005 was refused (the CLI's own floor, 0.001)
// though schedule()'s backfillSeconds and jobs.schedule's backfill take any seconds above 0; redrive --error-like ''
// (and redrive({ errorLike: '' })) was refused though jobs.redrive's error_like '' matches the error '' an SQL
// caller's jobs.nack(id, '') records.
it('schedule add --backfill above 0 and under 0.001: taken, as schedule() and jobs.schedule take it', async () => {
  const added = await runCli(db.url, 'schedule', 'add', 'fill', ...CRON, '--task', 'a.run', '--backfill', '0.0005');
  expect(added).toMatchObject({ code: 0, stderr: '' });
  expect(await db.sql(`select backfill::text from jobs.recurring where name = 'fill'`)).toEqual([{ backfill: '0.0005' }]);
});

it('redrive --error-like \'\' and redrive({ errorLike: \'\' }): the failures an SQL nack recorded with error \'\', as jobs.redrive', async () => {
  const fails = async (task: string, error: string) => {
    const id = (await db.sql<{ id: string }>(`select jobs.publish($1, null, max_retries => 0)::text as id`, [task]))[0]!.id;
    await db.sql(`select * from jobs.claim(1, $1)`, [task]);
    expect(await db.sql(`select jobs.nack($1::bigint, $2) as ok`, [id, error])).toEqual([{ ok: true }]);
    return id;
  };
  const [empty] = [await fails('a.one', ''), await fails('a.one', 'boom')];
  expect(await runCli(db.url, 'redrive', '--error-like', '')).toEqual({ code: 0, stdout: '1\n', stderr: '' });
  expect(await db.sql(`select job_id::text as id from jobs.job_queue`)).toEqual([{ id: empty }]);
  const again = await fails('a.two', '');
  const queue = createQueue({ driver: db.driver, tasks: {} });
  expect(await queue.redrive({ errorLike: '' })).toMatchObject({ redriven: 1 });
  expect(await db.sql(`select job_id::text as id from jobs.job_queue order by job_id`)).toEqual([{ id: empty }, { id: again }]);
});

it.each([
  ['event', 'publish', 'e.x', '--retry-delay-max', '2'],
  ['queue', 'create', 'q', '--group-concurrency', '2', '--group-tiers', '{"pro":1.5}'],
  ['reschedule', '1', '--attempts', '5', '--max-retries', '2'],
  ['redrive', '--include-cancelled', '--task', 'x'],
  ['jobs', '--body', '"\\u0000"'],
  ['schedule', 'add', 's', ...CRON, '--task', 'a.run', '--dedupe-key', 'k', '--dedupe-mode', 'replace', '--overlap', 'skip'],
])('pgdrain %j: the same words with the server down as once connected', async (...args) => {
  const [down, up] = await Promise.all([runCli(NOWHERE, ...args, '--dsn', NOWHERE), runCli(db.url, ...args)]);
  expect(up.code).toBe(2);
  expect(down).toEqual(up);
});

// One name for one argument: a body that is no JSON and one jsonb cannot store are named alike, as docs/cli.md
// names them (publish's and event publish's JSON argument, --body, --result); the core's "body:" and "result:"
// named no argument or flag there is.
it.each([
  [['publish', 'x', '{'], 'json: must be JSON'],
  [['publish', 'x', '{"a":"\\u0000"}'], 'json: must not contain \\u0000 (PostgreSQL jsonb cannot store it), at body.a'],
  [['publish', 'x', '--body', '{'], '--body: must be JSON'],
  [['publish', 'x', '--body', '"\\u0000"'], '--body: must not contain \\u0000 (PostgreSQL jsonb cannot store it)'],
  [['event', 'publish', 'e.x', '{'], 'json: must be JSON'],
  [['event', 'publish', 'e.x', '["\\u0000"]'], 'json: must not contain \\u0000 (PostgreSQL jsonb cannot store it), at body[0]'],
  [['complete', '1', '--result', '{'], '--result: must be JSON'],
  [['complete', '1', '--result', '"\\u0000"'], '--result: must not contain \\u0000 (PostgreSQL jsonb cannot store it)'],
  // migrate's URL argument, as the argument: it said --dsn, which was not given.
  [['migrate', ''], 'dsn: is set but empty'],
  [['migrate', 'http://x'], 'dsn: must be a postgres:// or postgresql:// URL'],
  [['migrate', '--print', '--pending', ' postgres://x@h/x'], 'dsn: has a space or line break before it'],
])('pgdrain %j: the value named as the argument or flag that gave it', async (args, said) => {
  // migrate's URL is its argument here (runCli sets DATABASE_URL to NOWHERE too).
  const run = await runCli(NOWHERE, ...args, ...(args[0] === 'migrate' ? [] : ['--dsn', NOWHERE]));
  expect(run).toMatchObject({ code: 2, stdout: '' });
  expect(run.stderr.startsWith(`pgdrain: ${said}`)).toBe(true);
});

// A name or key refused before connecting ends as every flag parser's refusal
// does, with the value: namedBy's (and event's) said the rule alone.
it.each([
  [['queue', 'create', 'mail box'], 'name: must be dot-separated words of letters, digits, _ : or -, got "mail box"'],
  [['publish', ''], 'task: must be a non-empty task name, got ""'],
  [['publish', 'x', '--queue', 'a..b'], '--queue: must be dot-separated words of letters, digits, _ : or -, got "a..b"'],
  [['event', 'subscribe', 'a b', 'q'], 'event: must be dot-separated words of letters, digits, _ : or -, got "a b"'],
  [['schedule', 'rm', ''], 'name: must be 1 to 46 letters, digits, _ . : or -, got ""'],
])('pgdrain %j: the rule, then the value', async (args, said) => {
  expect(await runCli(NOWHERE, ...args, '--dsn', NOWHERE)).toEqual({ code: 2, stdout: '', stderr: `pgdrain: ${said}\n` });
});
