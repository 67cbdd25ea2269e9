// A database URL whose password holds a raw / ? or #: the URL ends its host
// there (postgres://app:pa/ss@db/app is host "app", port "pa", as libpq reads
// it too), and the CLI said only "must be a postgres:// URL", of a postgres://
// URL, or (app:12/34@…) tried host "app". It now says to percent-encode them,
// without echoing the value. @, :, % and spaces in a password work as given.
// The test server trusts every login, so the passwords here are not checked:
// what is tested is where the URL leads.
import { expect, it } from 'vitest';
import { readSettings as workerSettings } from '../functions/cloudflare-settings.js';
import { readSettings as lambdaSettings } from '../functions/lambda-settings.js';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const { host, hostname, port, pathname } = new URL(db.url);
const withPassword = (password: string, query = '') => `postgres://postgres:${password}@${host}${pathname}${query}`;
const escaped = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
const RULE = 'has a / ? or # before an @, which ends the host there: percent-encode them in the user name and password '
  + '(/ as %2F, ? as %3F, # as %23; encodeURIComponent does it), and an @ in the query (%40)';

it.each(['pa/ss', 'pa?ss', 'pa#ss', '12/34', 'p/w?x#y'])('--dsn with password %s: exit 2 saying to percent-encode it, the value not echoed',
  async (password) => {
    const run = await runCli(db.url, 'stats', '--dsn', withPassword(password));
    expect(run).toEqual({ code: 2, stdout: '', stderr: `pgdrain: --dsn: ${RULE}\n` });
  });

// An @ after the host's end leaves two readings, and pg took the one the
// user did not mean: postgres://app:12/34@db (no database) and app:12?34@db/x
// went to host "app", port 12; postgres://u:a@b/c@HOST/db to host "b",
// database "c@HOST/db". With no user before the host (h:5432/a@b/c), "h:5432/a"
// reads as user and password as well as host and port: refused too.
it.each([
  ['password 12/34, no database', `postgres://app:12/34@${host}`],
  ['password 12?34', `postgres://app:12?34@${host}${pathname}`],
  ['password 12#34', `postgres://app:12#34@${host}${pathname}`],
  ['password a@b/c', withPassword('a@b/c')],
  ['no user, an @ in the database name', `postgres://${host}/a@b/c`],
  ['no user, an @ in the query', `postgres://${host}${pathname}?application_name=a@b`],
  // An @ before the ? or # as well: pg read host "b" (and "corp", port 12).
  ['password a@b?c', withPassword('a@b?c')],
  ['password a@b#c', withPassword('a@b#c')],
  ['user me@corp, password 12?34', `postgres://me@corp:12?34@${host}${pathname}`],
  ['an @ in a query straight after the host', `postgres://postgres@${host}?application_name=a@b`],
])('--dsn with %s: exit 2 saying to percent-encode, nothing tried', async (_, url) => {
  expect(await runCli(db.url, 'stats', '--dsn', url)).toEqual({ code: 2, stdout: '', stderr: `pgdrain: --dsn: ${RULE}\n` });
  expect(() => lambdaSettings({ DATABASE_URL: url })).toThrow(new RegExp(`^DATABASE_URL: ${escaped(RULE)}$`));
  expect(() => workerSettings({ DATABASE_URL: url })).toThrow(new RegExp(`^env\\.DATABASE_URL: ${escaped(RULE)}$`));
});

// pg decodes no %40 in a database name: a raw @ is its only way there, and
// with the user named before the host it is read as written.
it('a database named a@b, in a URL that names its user: migrate reaches it', async () => {
  await db.sql('create database "a@b"');
  try {
    const run = await runCli(db.url, 'migrate', `postgres://postgres@${host}/a@b`);
    expect([run.code, run.stderr]).toEqual([0, expect.stringMatching(/^pgdrain: applied migrations 1, 2, /)]);
  } finally {
    await db.sql('drop database "a@b" with (force)');
  }
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
  // libpq's and Cloud SQL's Unix-socket form (postgres://app:pw@/db?host=/cloudsql/p:r:i): no WHATWG
  // URL, which pg reads with a host put in; the CLI said it was no postgres:// URL.
  ['with a user and no host, the host in its query', `postgres://postgres:pw@${pathname}?host=${hostname}&port=${port}&connect_timeout=5`],
])('a URL %s connects', async (_, url) => {
  expect(await runCli(url, 'stats')).toEqual({ code: 0, stdout: 'no jobs\n', stderr: '' });
});

// pgdrain wait read --dsn or DATABASE_URL without the checks above (it opens a
// LISTEN session of its own), and the Lambda's and the Worker's DATABASE_URL
// had only a scheme check: each tried host "postgres", port "pa".
it('pgdrain wait: the same, for --dsn and DATABASE_URL; a --dsn set but empty is refused as elsewhere', async () => {
  expect(await runCli(db.url, 'wait', '1', '--timeout', '1', '--dsn', withPassword('pa/ss')))
    .toEqual({ code: 2, stdout: '', stderr: `pgdrain: --dsn: ${RULE}\n` });
  expect(await runCli(withPassword('12/34'), 'wait', '1', '--timeout', '1'))
    .toEqual({ code: 2, stdout: '', stderr: `pgdrain: DATABASE_URL: ${RULE}\n` });
  expect(await runCli(db.url, 'wait', '1', '--timeout', '1', '--dsn', 'mysql://u@h/db'))
    .toMatchObject({ code: 2, stdout: '', stderr: expect.stringMatching(/^pgdrain: --dsn: must be a postgres:\/\/ or postgresql:\/\/ URL/) });
  expect(await runCli(db.url, 'wait', '1', '--timeout', '1', '--dsn', ''))
    .toEqual({ code: 2, stdout: '', stderr: 'pgdrain: --dsn: is set but empty: give a postgres:// URL (unset, the embedded database is used)\n' });
});

it.each(['pa/ss', '12/34', 'pa#ss'])('the Lambda\'s and the Worker\'s DATABASE_URL with password %s: refused naming it, the value not echoed',
  (password) => {
    expect(() => lambdaSettings({ DATABASE_URL: withPassword(password) })).toThrow(new RegExp(`^DATABASE_URL: ${escaped(RULE)}$`));
    expect(() => workerSettings({ DATABASE_URL: withPassword(password) })).toThrow(new RegExp(`^env\\.DATABASE_URL: ${escaped(RULE)}$`));
  });

it('the Lambda\'s and the Worker\'s DATABASE_URL percent-encoded, or with an @ in its query only: taken', () => {
  for (const url of [withPassword(encodeURIComponent('p/w?x#y')), withPassword('pw', '?application_name=a@b/c')]) {
    expect(lambdaSettings({ DATABASE_URL: url }).DATABASE_URL).toBe(url);
    expect(workerSettings({ DATABASE_URL: url }).DATABASE_URL).toBe(url);
  }
});

// pg-connection-string encodes a space (%20) before it parses: a leading one
// made the URL a path under its own default, host "base" ('getaddrinfo
// ENOTFOUND base'), past the checks above; a trailing one ended the database
// name ('app '). The Lambda's and the Worker's scheme check refused the first.
it.each([' ', '\n'])('--dsn with %j before it, or a space after it: exit 2 saying to remove them, nothing tried', async (space) => {
  const rule = 'has a space or line break before it, or a space after it: remove them (pg reads them as part of the URL)';
  expect(await runCli(db.url, 'stats', '--dsn', `${space}${db.url}`)).toEqual({ code: 2, stdout: '', stderr: `pgdrain: --dsn: ${rule}\n` });
  expect(await runCli(`${db.url} `, 'stats')).toEqual({ code: 2, stdout: '', stderr: `pgdrain: DATABASE_URL: ${rule}\n` });
});
