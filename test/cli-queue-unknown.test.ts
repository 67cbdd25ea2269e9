// Every `pgdrain queue` subcommand given a queue that does not exist: pause,
// resume, purge and delete fail alike (exit 2, naming it), so a script's typo
// is not a silent no-op; delete-ended takes any name (a deleted queue's history).
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const NO_GHOST = "pgdrain: queue: no queue named 'ghost' (pgdrain queue list names them)\n";

it.each(['pause', 'resume', 'purge', 'delete'])('queue %s ghost: exit 2 naming the queue, nothing on stdout', async (verb) => {
  expect(await runCli(db.url, 'queue', verb, 'ghost')).toEqual({ code: 2, stdout: '', stderr: NO_GHOST });
});

it('queue delete-ended ghost: 0 ended jobs, exit 0 (any name: a deleted queue keeps its history)', async () => {
  expect(await runCli(db.url, 'queue', 'delete-ended', 'ghost')).toEqual({ code: 0, stdout: '0\n', stderr: '' });
});

it('an existing queue with nothing to purge prints 0 and exits 0; delete prints deleted, then the same delete fails', async () => {
  expect(await runCli(db.url, 'queue', 'create', 'empty')).toMatchObject({ code: 0 });
  expect(await runCli(db.url, 'queue', 'purge', 'empty')).toEqual({ code: 0, stdout: '0\n', stderr: '' });
  expect(await runCli(db.url, 'queue', 'delete', 'empty')).toEqual({ code: 0, stdout: 'deleted\n', stderr: '' });
  expect(await runCli(db.url, 'queue', 'delete', 'empty')).toMatchObject({ code: 2, stderr: expect.stringContaining("no queue named 'empty'") });
});
