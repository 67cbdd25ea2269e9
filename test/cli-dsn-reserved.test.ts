// A database URL whose password holds a raw / ? or #: the URL ends its host
// there (postgres://app:pa/ss@db/app is host "app", port "pa", as libpq reads
// it too), and the CLI said only "must be a postgres:// URL", of a postgres://
// URL, or (app:12/34@…) tried host "app". It now says to percent-encode them,
// without echoing the value. @, :, % and spaces in a password work as given.
// The test server trusts every login, so the passwords here are not checked:
// what is tested is where the URL leads.
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const { host, pathname } = new URL(db.url);
const withPassword = (password: string, query = '') => `postgres://postgres:${password}@${host}${pathname}${query}`;
const RULE = 'has a / ? or # before its @, which ends the host there: percent-encode them in the user name and password '
  + '(/ as %2F, ? as %3F, # as %23; encodeURIComponent does it)';

it.each(['pa/ss', 'pa?ss', 'pa#ss', '12/34', 'p/w?x#y'])('--dsn with password %s: exit 2 saying to percent-encode it, the value not echoed',
  async (password) => {
    const run = await runCli(db.url, 'stats', '--dsn', withPassword(password));
    expect(run).toEqual({ code: 2, stdout: '', stderr: `pgdrain: --dsn: ${RULE}\n` });
  });

it('DATABASE_URL with one: the same, naming DATABASE_URL; publish (which connects early) too, publishing nothing', async () => {
  expect(await runCli(withPassword('pa/ss'), 'stats')).toEqual({ code: 2, stdout: '', stderr: `pgdrain: DATABASE_URL: ${RULE}\n` });
  expect(await runCli(withPassword('pa/ss'), 'publish', 'x.y')).toMatchObject({ code: 2, stderr: `pgdrain: DATABASE_URL: ${RULE}\n` });
  expect(await db.sql('select count(*)::int as n from jobs.job_queue')).toEqual([{ n: 0 }]);
});

it.each([
  ['percent-encoded', withPassword(encodeURIComponent('p/w?x#y'))],
  ['with a raw @ : % and space', withPassword('a@b:c%d e')],
  ['with an @ in its query only', withPassword('pw', '?application_name=a@b')],
])('a URL %s connects', async (_, url) => {
  expect(await runCli(url, 'stats')).toEqual({ code: 0, stdout: 'no jobs\n', stderr: '' });
});
