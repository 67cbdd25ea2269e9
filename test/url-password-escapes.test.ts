// A database URL whose password (or user name) holds a raw % that starts no
// escape, or a raw space, besides a %-escape with a letter in it (%2F, %3F,
// %C3): pg-connection-string re-encodes a URL holding either (encodeURI,
// then %25 put back before two digits only), so those escapes came out as
// their text, and password "50%off/x", written 50%off%2Fx, reached the
// server as "50%off%2Fx": authentication failed. pgdrain now writes the
// stray % as %25 and the space as %20 before any URL reaches pg (the CLI,
// pgDriver and createQueue, the LISTEN session, the Lambda's pool, the Neon
// drivers), so each %XX is an escape and the rest is read as written.
// Real roles with real passwords: the test server checks the passwords of
// PASSWORD_CHECKED's members (test/support/postgres.ts), which the first
// test proves.
import { parse } from 'pg-connection-string';
import { afterAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { reconnectingDriver } from '../functions/lambda-driver.js';
import { pgConnectionString } from '../src/database-url.js';
import { neonHttpDriver } from '../src/db/neon-http.js';
import { neonDriver } from '../src/db/neon.js';
import { pgDriver } from '../src/db/pg.js';
import { createQueue, type Driver } from '../src/index.js';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';
import { startNeonHttpServer } from './support/neon-http-server.js';
import { PASSWORD_CHECKED } from './support/postgres.js';
import { startWsProxy } from './support/ws-proxy.js';

const db = await testDb();
const { host, pathname } = new URL(db.url);
const tag = Math.random().toString(36).slice(2, 8);
const roles: string[] = [];
const literal = (text: string) => `'${text.replaceAll("'", "''")}'`;
const ident = (text: string) => `"${text.replaceAll('"', '""')}"`;

await db.sql(`do $$ begin create role ${PASSWORD_CHECKED} nologin; exception when duplicate_object then null; end $$`);
/** A superuser (drain() needs the jobs schema) whose password the server checks. */
async function role(name: string, password: string): Promise<void> {
  roles.push(name);
  await db.sql(`create role ${ident(name)} superuser login password ${literal(password)} in role ${PASSWORD_CHECKED}`);
}
afterAll(async () => {
  for (const name of roles) await db.sql(`drop role if exists ${ident(name)}`);
});

// [the user name and password as written in the URL, as meant]
const cases: [string, string, string, string][] = [
  [`pw_${tag}_a`, '50%off%2Fx', `pw_${tag}_a`, '50%off/x'],
  [`pw_${tag}_b`, 'a b%3Fc', `pw_${tag}_b`, 'a b?c'],
  [`pw_${tag}_c`, '%C3%A9 1%', `pw_${tag}_c`, 'é 1%'],
  [`pw_${tag}_d%2Fe f`, 'x%y', `pw_${tag}_d/e f`, 'x%y'],
  // A : in a user name is %3A: the first raw : ends it (a:b:c is user a, password b:c; libpq's reading too).
  [`pw_${tag}_e%3Af`, 'g:h %', `pw_${tag}_e:f`, 'g:h %'],
  // A raw \ beside a space: the Neon drivers parse the URL as an http: one, where \ ends the host.
  [`pw_${tag}_f`, 'a\\b c', `pw_${tag}_f`, 'a\\b c'],
];
for (const [, , user, password] of cases) await role(user, password);
const urlOf = (user: string, password: string) => `postgres://${user}:${password}@${host}${pathname}`;

const currentUser = async (driver: Driver) => {
  try {
    return (await driver.query<{ u: string }>('select current_user as u')).rows[0]!.u;
  } finally {
    await driver.close();
  }
};

it('the server checks these roles\' passwords: a wrong one is refused', async () => {
  const [, , user] = cases[0]!;
  await expect(currentUser(pgDriver(urlOf(user, 'wrong')))).rejects.toMatchObject({ code: '28P01' });
});

describe.each(cases)('user %s, password %s', (userText, passwordText, user, password) => {
  const url = urlOf(userText, passwordText);

  it('pg reads the user and password meant from pgConnectionString\'s URL (and from it again)', () => {
    expect(parse(pgConnectionString(url))).toMatchObject({ user, password, database: pathname.slice(1) });
    expect(pgConnectionString(pgConnectionString(url))).toBe(pgConnectionString(url));
  });

  it('the CLI connects (DATABASE_URL, and --dsn)', async () => {
    expect(await runCli(url, 'queue', 'list')).toMatchObject({ code: 0, stderr: '' });
    expect(await runCli(db.url, 'queue', 'list', '--dsn', url)).toMatchObject({ code: 0, stderr: '' });
  });

  it('createQueue publishes, drains, and its LISTEN session hears the job end', async () => {
    const queue = createQueue({ connectionString: url, tasks: { t: async () => 'ok' } });
    try {
      const id = await queue.publish('t', null);
      const stop = await queue.subscribe(() => {});
      const outcome = queue.waitFor(id);
      expect(await queue.drain(10, Date.now() + 120_000)).toMatchObject({ succeeded: 1 });
      expect(await outcome).toMatchObject({ id, status: 'success', result: 'ok' });
      stop();
    } finally {
      await queue.close();
    }
  });

  it('the Lambda\'s pool, the Neon WebSocket Pool and the Neon HTTP driver (over the stand-in) log in', async () => {
    expect(await currentUser(reconnectingDriver(url, 1))).toBe(user);
    const proxy = await startWsProxy();
    const endpoint = await startNeonHttpServer();
    try {
      const neonPool = currentUser(neonDriver(url, { wsProxy: proxy.url, webSocketConstructor: WebSocket }));
      // The Neon Pool's URL parser joins the decoded user and password with a : and splits them at
      // the first: no user name with a : gets through it, %3A or not (docs/cloudflare.md says so).
      if (user.includes(':')) await expect(neonPool).rejects.toThrow(`role "${user.split(':')[0]}" does not exist`);
      else expect(await neonPool).toBe(user);
      expect(await currentUser(neonHttpDriver(url, { fetchEndpoint: endpoint.endpoint }))).toBe(user);
    } finally {
      await proxy.close();
      await endpoint.close();
    }
  });
});

// What pg read right before stays as it was: a URL with no stray % or space is
// left as it is, and in one with only such, pg reads the same.
it.each([
  'postgres://app:50%off;=x@db.example:5433/app?application_name=a%20b',
  'postgres://us:er:a@b:c%d e@db.example/app?sslmode=disable',
  'postgres://app:p%40w%20x@db.example/my%20db',
  'postgres://app:%C3%A9@db.example/app?host=%2Frun%2Fpostgresql',
  'postgres://app:pw@/app?host=/cloudsql/p:r:i',
  'postgresql://app@%2Frun%2Fpostgresql/app',
  'postgres://app:50%@db.example/app%',
  '/run/postgresql my db',
])('%s: pg reads the same', (url) => {
  expect(parse(pgConnectionString(url))).toEqual(parse(url));
});

it('a raw : in the user name ends it: pg reads user a, password b:c (as libpq); nothing refuses it', () => {
  expect(parse(pgConnectionString('postgres://a:b:c@db.example/app'))).toMatchObject({ user: 'a', password: 'b:c' });
});

// What changes: an escape with a letter, in a URL with a stray % or a space, is an escape.
it.each([
  ['postgres://app:a b@db.example/app?host=%2Frun%2Fpostgresql', { password: 'a b', host: '/run/postgresql' }],
  ['postgres://app:a b@[::1]:5433/caf%C3%A9', { password: 'a b', host: '::1', database: 'café' }],
])('%s: pg reads each escape', (url, read) => {
  expect(parse(pgConnectionString(url))).toMatchObject(read);
});
