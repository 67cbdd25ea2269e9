// An unknown subcommand fails (exit 2, naming it) even with --help: commander
// showed the group's help for it and exited 0, so `pgdrain queue pasue --help`
// in a script passed. Help itself still works. No database: nothing connects.
import { expect, it } from 'vitest';
import { runCli } from './support/drain-process.js';

const NOWHERE = 'postgres://nobody@127.0.0.1:1/none';
const QUEUE = "error: unknown command 'pasue' (pgdrain queue has create, list, pause, resume, purge, delete, delete-ended)\n";

it.each([
  [['queue', 'pasue', '--help'], QUEUE],
  [['queue', 'pasue', '-h'], QUEUE],
  [['queue', '--help', 'pasue'], QUEUE],
  [['queue', 'help', 'pasue'], QUEUE],
  [['schedule', 'lst', '--help'], "error: unknown command 'lst' (pgdrain schedule has add, list, rm)\n"],
  [['event', 'sub', '--help'], "error: unknown command 'sub' (pgdrain event has subscribe, unsubscribe, list, publish)\n"],
  [['draine', '--help'], /^error: unknown command 'draine' \(pgdrain has migrate, drain, publish, .*maintain.*\)\n$/],
  [['help', 'draine'], /^error: unknown command 'draine' \(pgdrain has migrate, drain, /],
  // commander's help command read its first word only: schedule's help, exit 0.
  [['help', 'schedule', 'typo'], "error: unknown command 'typo' (pgdrain schedule has add, list, rm)\n"],
  [['help', 'queue', 'pasue'], QUEUE],
  // Without --help too (commander said only "(Did you mean pause?)").
  [['queue', 'pasue'], QUEUE],
  [['queue', 'pasue', 'mail', '--dsn', NOWHERE], QUEUE],
  [['schedule', 'lst'], "error: unknown command 'lst' (pgdrain schedule has add, list, rm)\n"],
  [['pubish', 'mail.send'], /^error: unknown command 'pubish' \(pgdrain has migrate, drain, publish, /],
])('pgdrain %j: exit 2 naming it, no help', async (args, stderr) => {
  const run = await runCli(NOWHERE, ...args);
  expect(run.code).toBe(2);
  expect(run.stdout).toBe('');
  expect(run.stderr).toMatch(typeof stderr === 'string' ? new RegExp(`^${stderr.replace(/[()]/g, '\\$&')}$`) : stderr);
});

it.each([
  [['queue', '--help'], 'Usage: pgdrain queue [options] [command]'],
  [['help', 'queue'], 'Usage: pgdrain queue [options] [command]'],
  [['queue', 'help', 'pause'], 'Usage: pgdrain queue pause [options] <name>'],
  [['queue', 'pause', '--help'], 'Usage: pgdrain queue pause [options] <name>'],
  [['--help'], 'Usage: pgdrain [options] [command]'],
  [['help'], 'Usage: pgdrain [options] [command]'],
  // `help A B` is `A B --help` (commander printed A's help, and for `help help` the program's twice, exit 2).
  [['help', 'schedule', 'list'], 'Usage: pgdrain schedule list [options]'],
  [['help', 'queue', 'pause', 'mail'], 'Usage: pgdrain queue pause [options] <name>'],
  [['help', 'help'], 'Usage: pgdrain help [options] [command...]'],
])('pgdrain %j still prints its help, exit 0', async (args, usage) => {
  const run = await runCli(NOWHERE, ...args);
  expect([run.code, run.stdout.split('\n')[0], run.stderr]).toEqual([0, usage, '']);
});
