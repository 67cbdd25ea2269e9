// A name that starts with a dash (a queue, task, event or schedule may be
// named -x) is read by commander as an option: `pgdrain queue delete -x` was
// "error: unknown option '-x'" and no more. Every command that takes a name
// now says, on the next line, to put it after `--`, with the command that
// works; the one-name commands' line is run here as given. The options given
// with the name stay in that line, before `--` (before, they were dropped:
// `queue create -x --max-size 5` was told `queue create -- -x`). An unknown option
// that looks like a typo keeps commander's "(Did you mean …?)" alone, and so
// does one after every argument (`queue purge mail -f`: a mistyped option).
// A command of several arguments shows the words given after `--` too.
// dist/cli.mjs: `npm run build` first.
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();

const one = (what: string, command: string, flag: string) =>
  `error: unknown option '${flag}'\n(${what} that starts with - goes after --, options before it: pgdrain ${command} -- ${flag})\n`;
const several = (command: string, after: string, flag: string) =>
  `error: unknown option '${flag}'\n(an argument that starts with - goes after --, options before it: pgdrain ${command} -- ${after})\n`;

it.each([
  // The options given stay in the line, before -- (a URL's password masked as everywhere on stderr).
  [['queue', 'create', '-x', '--max-size', '5'], one('a <name>', 'queue create --max-size 5', '-x')],
  [['queue', 'create', '--timeout', '9', '-x', '--max-size=5', '--no-dead-letter'],
   one('a <name>', 'queue create --timeout 9 --max-size=5 --no-dead-letter', '-x')],
  [['queue', 'purge', '--reason', 'two words', '-x'], one('a <name>', "queue purge --reason 'two words'", '-x')],
  [['queue', 'delete', '--dsn', 'postgres://app:secret@127.0.0.1:1/db', '-x'],
   one('a <name>', "queue delete --dsn 'postgres://app:***@127.0.0.1:1/db'", '-x')],
  // A key=value DSN's quoted password (libpq's password='…'), masked before the word is quoted.
  [['queue', 'delete', '--dsn', "host=127.0.0.1 password='s3cr3t' user=app", '-x'],
   one('a <name>', "queue delete --dsn 'host=127.0.0.1 password=*** user=app'", '-x')],
  [['queue', 'delete', "--dsn=host=127.0.0.1 password='two words'", '-x'],
   one('a <name>', "queue delete '--dsn=host=127.0.0.1 password=***'", '-x')],
  [['event', 'subscribe', '--task', 'a.b', 'ev.x', '-x', '--db-timeout', '3'],
   several('event subscribe --task a.b --db-timeout 3', 'ev.x -x', '-x')],
  [['queue', 'pause', '-x'], one('a <name>', 'queue pause', '-x')],
  [['queue', 'resume', '-x'], one('a <name>', 'queue resume', '-x')],
  [['queue', 'purge', '-x'], one('a <name>', 'queue purge', '-x')],
  [['queue', 'delete', '-x'], one('a <name>', 'queue delete', '-x')],
  [['queue', 'delete-ended', '-x'], one('a <name>', 'queue delete-ended', '-x')],
  [['schedule', 'rm', '-x'], one('a <name>', 'schedule rm', '-x')],
  [['event', 'list', '-x'], one('an <event>', 'event list', '-x')],
  // Several arguments: the user's words (they showed `-- <event> <queue>`, which a shell reads as
  // redirections, the words given dropped), then a required one not given in capitals.
  [['event', 'subscribe', 'ev.x', '-x'], several('event subscribe', 'ev.x -x', '-x')],
  [['event', 'subscribe', '-x'], several('event subscribe', '-x QUEUE', '-x')],
  [['event', 'unsubscribe', '-x', 'q'], several('event unsubscribe', '-x q', '-x')],
  [['event', 'publish', '-x'], several('event publish', '-x', '-x')],
  [['publish', '-x'], several('publish', '-x', '-x')],
  [['publish', '--priority', '1', '-x', '{"a": 1}'], several('publish --priority 1', `-x '{"a": 1}'`, '-x')],
  [['queue', 'delete', '--dsm'], "error: unknown option '--dsm'\n(Did you mean --dsn?)\n"],
  // A name equal to one of the command's options is that option (docs/cli.md says so).
  [['queue', 'delete', '--dsn'], "error: option '--dsn <url>' argument missing\n"],
  // Every argument given: a mistyped option, not a name (the line would purge a queue named -f).
  [['queue', 'purge', 'mail', '-f'], "error: unknown option '-f'\n"],
  [['event', 'subscribe', 'ev.x', 'q', '-x'], "error: unknown option '-x'\n"],
  [['publish', 'mail.send', '{}', '-x'], "error: unknown option '-x'\n"],
])('pgdrain %j exits 2 saying how to give it', async (args, stderr) => {
  expect(await runCli(db.url, ...args)).toEqual({ code: 2, stdout: '', stderr });
});

it('the command the line names works', async () => {
  const line = async (...args: string[]) => (await runCli(db.url, ...args)).stderr.split('\n')[1]!.replace(/^.*: pgdrain (.*)\)$/, '$1');
  expect(await line('queue', 'create', '-dashed', '--max-size', '5')).toBe('queue create --max-size 5 -- -dashed');
  expect(await runCli(db.url, 'queue', 'create', '--max-size', '5', '--', '-dashed')).toMatchObject({ code: 0, stderr: '' });
  expect(await db.sql(`select max_size from jobs.queue where name = '-dashed'`)).toEqual([{ max_size: 5 }]);
  expect(await line('queue', 'pause', '-dashed')).toBe('queue pause -- -dashed');
  expect(await runCli(db.url, 'queue', 'pause', '--', '-dashed')).toMatchObject({ code: 0, stderr: '' });
  expect(await db.sql(`select paused from jobs.queue where name = '-dashed'`)).toEqual([{ paused: true }]);
  expect(await runCli(db.url, 'event', 'subscribe', '--', '-ev', '-dashed')).toMatchObject({ code: 0, stderr: '' });
  expect(await db.sql(`select event, queue from jobs.subscription`)).toEqual([{ event: '-ev', queue: '-dashed' }]);
  expect(await runCli(db.url, 'event', 'unsubscribe', '--', '-ev', '-dashed')).toMatchObject({ code: 0, stderr: '' });
  expect(await line('queue', 'delete', '-dashed')).toBe('queue delete -- -dashed');
  expect(await runCli(db.url, 'queue', 'delete', '--', '-dashed')).toMatchObject({ code: 0, stdout: 'deleted\n', stderr: '' });
});
