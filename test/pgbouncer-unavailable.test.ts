// A database behind PgBouncer that is down or restarting is "database
// unavailable", as a direct one is. PgBouncer answers for the server with
// its own error code, SQLSTATE 08P01 (class 08, connection exception),
// whatever the server said: a login the server refuses during a restart
// ("the database system is starting up", "… is shutting down") reaches the
// client as 08P01 with that message, and so do PgBouncer's own
// "server login has been failing, try again later (server_login_retry)" and
// "client_login_timeout (server down)". Each must reach the caller as
// database_unavailable: drain() and publish() reject with that code, HTTP
// answers 503 (not a 500 "internal"), the CLI exits 1 saying so.
// A database that does not allow connections stands in for the restarting
// server: PgBouncer's first login to it fails at once, as during a restart.
// (Its later logins wait server_login_retry, 15 s: one database per case.)
import pg from 'pg';
import { afterAll, expect, inject, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue } from '../src/index.js';
import { runCli } from './support/drain-process.js';
import { startPgBouncer } from './support/pgbouncer.js';

const bouncer = await startPgBouncer(inject('serverUrl'), 'transaction');
const names: string[] = [];
const admin = async (text: string) => {
  const client = new pg.Client({ connectionString: inject('serverUrl') });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
};
afterAll(async () => {
  await bouncer.stop();
  for (const name of names) await admin(`drop database if exists ${name} with (force)`);
});

/** The URL, through PgBouncer, of a new database that refuses every login. */
async function refusingDb(): Promise<string> {
  const name = `closed_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  names.push(name);
  await admin(`create database ${name}`);
  await admin(`alter database ${name} allow_connections false`);
  return `postgres://postgres@127.0.0.1:${bouncer.port}/${name}`;
}

const unavailable = { name: 'PgDrainError', code: 'database_unavailable',
                      message: expect.stringMatching(/^database unavailable: .*not currently accepting connections/) };
const tasks = { t: async () => ({}) };

it('drain() rejects with database_unavailable', async () => {
  const queue = createQueue({ connectionString: await refusingDb(), tasks });
  try {
    await expect(queue.drain(10, Date.now() + 10_000)).rejects.toMatchObject(unavailable);
  } finally {
    await queue.close();
  }
});

it('publish() rejects with database_unavailable', async () => {
  const queue = createQueue({ connectionString: await refusingDb(), tasks });
  try {
    await expect(queue.publish('t', {})).rejects.toMatchObject(unavailable);
  } finally {
    await queue.close();
  }
});

it('HTTP answers 503 database_unavailable, not 500', async () => {
  const queue = createQueue({ connectionString: await refusingDb(), tasks });
  const token = 'a-token-of-16-chars-or-more';
  try {
    const answer = await createApp({ queue, token }).request('/jobs', {
      method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ task: 't' }) });
    expect({ status: answer.status, body: await answer.json() })
      .toEqual({ status: 503, body: { error: { code: 'database_unavailable', message: 'database unavailable', field: null } } });
  } finally {
    await queue.close();
  }
});

it('the CLI exits 1 with one line: database unavailable', async () => {
  const exit = await runCli(await refusingDb(), 'publish', 't', '{}');
  expect(exit).toMatchObject({ code: 1, stderr: expect.stringMatching(/^pgdrain: database unavailable: [^\n]+\n$/) });
});
