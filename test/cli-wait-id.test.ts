// `pgdrain wait ID` checked its id only once its LISTEN session was open: on
// a server that is down, `wait abc` said "database unavailable" (exit 1), and
// on one that is up it connected first. Now refused first, as `show` and
// `cancel` refuse theirs: exit 2 naming the rule. No database: nothing connects.
import { expect, it } from 'vitest';
import { runCli } from './support/drain-process.js';

const NOWHERE = 'postgres://nobody@127.0.0.1:1/none';

it.each(['abc', '0', '-1', '', '99999999999999999999', '1.5'])('wait %j: exit 2 naming the id rule, before any connection', async (id) => {
  expect(await runCli(NOWHERE, 'wait', '--timeout', '1', '--', id)).toEqual({ code: 2, stdout: '',
    stderr: `pgdrain: id: must be a job id (a positive integer of at most 9223372036854775807), got ${JSON.stringify(id)}\n` });
});
