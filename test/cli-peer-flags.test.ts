// A flag spelt as pg-boss's option or graphile-worker's CLI flag: commander's
// "unknown option" said no more (drain --poll-interval 2000, --once, -j 4), or,
// after publish's task, told to put the flag after `--` as if it were a dashed
// name (`pgdrain publish -- t --retry-limit 2` publishes a task named
// "--retry-limit"?). It now names the flag of the command that does its work
// (src/cli/peer-flags.ts), exit 2 as before, before connecting. Other unknown
// options are told as they were (cli-dashed-names.test.ts has the rest).
// dist/cli.mjs: `npm run build` first.
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();

it.each([
  [['publish', 'mail.send', '--retry-limit', '2'], "'--retry-limit' (pg-boss's retryLimit is --max-retries, the same count)"],
  [['publish', 'mail.send', '--start-after=60'], "'--start-after=60' (pg-boss's startAfter is --at (ISO 8601) or --delay (seconds))"],
  [['publish', 'mail.send', '--queue-name', 'x'], "'--queue-name' (graphile-worker's queueName is --serial-key)"],
  [['drain', '--tasks', 'x.mjs', '--poll-interval', '2000'],
    "'--poll-interval' (graphile-worker's --poll-interval (milliseconds) is --poll, in seconds, with --linger to wait on an empty queue)"],
  [['drain', '--tasks', 'x.mjs', '-j', '4'], "'-j' (graphile-worker's -j is --concurrency)"],
  // Its value attached, as graphile-worker's CLI (yargs) takes it.
  [['drain', '--tasks', 'x.mjs', '-j4'], "'-j4' (graphile-worker's -j is --concurrency)"],
  [['drain', '--tasks', 'x.mjs', '--once'],
    "'--once' (graphile-worker's --once: none needed, a drain returns once the queue is empty (unless --linger))"],
  [['schedule', 'add', 'n', '--cron', '0 4 * * *', '--task', 't', '--max-attempts', '5'],
    "'--max-attempts' (graphile-worker's maxAttempts is --max-retries, one less)"],
  [['queue', 'create', 'q', '--expire-in-seconds', '900'], "'--expire-in-seconds' (pg-boss's expireInSeconds is --timeout)"],
  [['schedule', 'add', 'n', '--cron', '0 4 * * *', '--task', 't', '--expire-in-seconds', '900'],
    "'--expire-in-seconds' (pg-boss's expireInSeconds is --timeout)"],
  [['queue', 'create', 'q', '--policy', 'singleton'],
    "'--policy' (pg-boss's policy singleton is --max-running 1; short, stately and exclusive are publish's --dedupe-key and --dedupe-mode)"],
])('pgdrain %j names the flag that does its work', async (args, said) => {
  expect(await runCli(db.url, ...args)).toEqual({ code: 2, stdout: '', stderr: `error: unknown option ${said}\n` });
});

it('other unknown options are told as before', async () => {
  expect(await runCli(db.url, 'publish', '-x')).toMatchObject({ code: 2, stderr: expect.stringContaining('goes after --') });
  expect(await runCli(db.url, 'drain', '--tasks', 'x.mjs', '--batchsize', '3')).toEqual({ code: 2, stdout: '', stderr: "error: unknown option '--batchsize'\n" });
  expect(await runCli(db.url, 'queue', 'delete', '--dsm')).toEqual({ code: 2, stdout: '', stderr: "error: unknown option '--dsm'\n(Did you mean --dsn?)\n" });
});

it('and the flags each names are the command\'s', async () => {
  expect(await runCli(db.url, 'queue', 'create', 'peerq', '--timeout', '900', '--expires-in', '60', '--max-running', '1'))
    .toMatchObject({ code: 0, stderr: '' });
  const published = await runCli(db.url, 'publish', 'mail.send', '--max-retries', '2', '--delay', '60', '--serial-key', 'x', '--queue', 'peerq');
  expect(published).toMatchObject({ code: 0, stderr: '' });
  expect(await db.sql(`select max_retries, serial_key, queue from jobs.job_queue where job_id = ${published.stdout.trim()}`))
    .toEqual([{ max_retries: 2, serial_key: 'x', queue: 'peerq' }]);
  expect(await runCli(db.url, 'schedule', 'add', 'n', '--cron', '0 4 * * *', '--task', 't', '--max-retries', '4', '--priority', '-1',
                      '--timeout', '900'))
    .toMatchObject({ code: 0, stderr: '' });
});
