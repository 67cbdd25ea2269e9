// A bad value from an option's own environment variable (serve's --port reads
// PORT, commander's .env()) names the variable, as a PGDRAIN_* one's does
// ("PGDRAIN_BATCH_SIZE: …, got "0""): sayFlagErrorsAlike named the flag,
// "pgdrain: --port: …, got "abc"", for a flag nobody gave. The parse comes
// before anything connects: a closed port.
import { expect, it } from 'vitest';
import { runCliWith } from './support/drain-process.js';

const NOWHERE = 'postgres://x@127.0.0.1:1/x';
const TOKEN = { PGDRAIN_TOKEN: 'test-token-0123456789abcdef' };

it.each([
  [{ PORT: 'abc' }, [], 'pgdrain: PORT: must be an integer from 0 to 65535, got "abc"\n'],
  [{ PORT: '70000' }, [], 'pgdrain: PORT: must be an integer from 0 to 65535, got "70000"\n'],
  [{}, ['--port', 'abc'], 'pgdrain: --port: must be an integer from 0 to 65535, got "abc"\n'],
  // The flag wins: the variable is not read, the flag's value is the one named.
  [{ PORT: 'abc' }, ['--port', 'x1'], 'pgdrain: --port: must be an integer from 0 to 65535, got "x1"\n'],
])('serve with %j %j: exit 2 naming where the value came from', async (env, args, stderr) => {
  const run = await runCliWith({ ...TOKEN, ...env }, NOWHERE, 'serve', ...args, '--dsn', NOWHERE);
  expect(run).toEqual({ code: 2, stdout: '', stderr });
});
