// One-shot commands against a database that does not answer: the network
// between the CLI and PostgreSQL freezes (a real TCP proxy stops forwarding,
// its sockets left open), so no error ever comes. Each command gives up at
// its --db-timeout, exits 1 with one line, and leaves no process behind
// (runCli kills one still running after 30 s: its code is then null).
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { runCli, runCliWith, until, withAppName } from './support/drain-process.js';
import { startServe } from './support/serve-process.js';
import { proxiedUrl, type TcpProxy } from './support/tcp-proxy.js';

const db = await testDb();
const sql = db.sql;
let proxy: TcpProxy;
let viaProxy: string;

beforeEach(async () => {
  ({ proxy, url: viaProxy } = await proxiedUrl(db.url));
});
afterEach(async () => proxy.close());

const lines = (text: string) => text.split('\n').filter((l) => l !== '');

describe('one-shot commands give up on a database that does not answer (--db-timeout)', () => {
  it.each([
    ['publish', 'email.send', '{}'],
    ['stats'],
    ['jobs'],
    ['show', '1'],
    ['cancel', '1'],
    ['redrive'],
    ['queue', 'list'],
    ['schedule', 'list'],
    ['migrate'],
    ['wait', '1'], // its LISTEN session
  ])('%s through a frozen network exits 1 naming the server it could not connect to', async (...args) => {
    proxy.freeze();
    const r = await runCli(viaProxy, ...args, '--db-timeout', '1');
    expect(r.code).toBe(1);
    expect(lines(r.stderr)).toEqual([
      `pgdrain: database unavailable: no connection to 127.0.0.1:${proxy.port} within 1 s (--db-timeout)`]);
  });

  it('a statement with no reply is given up at the bound and cancelled on the server: it does not run later', async () => {
    const [{ id }] = await sql<{ id: string }>(`select jobs.publish('a.task', '{}') as id`) as [{ id: string }];
    // The job's row held by another transaction: the cancel waits for it, and no reply comes.
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query('begin');
      await holder.query('select 1 from jobs.job_queue where job_id = $1 for update', [id]);
      const r = await runCli(db.url, 'cancel', id, '--db-timeout', '1');
      expect(r.code).toBe(1);
      expect(lines(r.stderr)).toEqual([`pgdrain: database unavailable: no reply from ${new URL(db.url).host} within 1 s (--db-timeout)`]);
      // Its connection ended: no backend of it is left waiting.
      await until(async () => (await sql<{ n: number }>(
        `select count(*)::int as n from pg_stat_activity where query like 'select jobs.cancel(%' and pid <> pg_backend_pid()`))[0]!.n === 0,
      'the cancel to be ended on the server');
      await holder.query('commit');
    } finally {
      await holder.end();
    }
    expect(JSON.parse((await runCli(db.url, 'show', id, '--json')).stdout)).toMatchObject({ state: 'pending' });
  });

  it.each([['stats'], ['jobs']])('a %s read with no reply is given up at the bound: its backend ends, nothing waits on', async (command) => {
    // The read waits on the table's lock: connected, then no reply.
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    const app = `bound-${command}`;
    const backends = async () => (await sql<{ n: number }>(
      'select count(*)::int as n from pg_stat_activity where application_name = $1', [app]))[0]!.n;
    try {
      await holder.query('begin');
      await holder.query('lock table jobs.job_queue in access exclusive mode');
      const r = await runCli(withAppName(db.url, app), command!, '--db-timeout', '1');
      expect(r.code).toBe(1);
      expect(lines(r.stderr)).toEqual([`pgdrain: database unavailable: no reply from ${new URL(db.url).host} within 1 s (--db-timeout)`]);
      // Its statement cancelled and its connection ended while the lock is still held.
      await until(async () => (await backends()) === 0, `the ${command} backend to end`);
    } finally {
      await holder.query('rollback').catch(() => {});
      await holder.end();
    }
  });

  it('migrate waits for another migrate\'s lock by default, and gives up on it at a --db-timeout given', async () => {
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query('select pg_advisory_lock(7360372011)');
      const given = await runCli(db.url, 'migrate', '--db-timeout', '1');
      expect(given.code).toBe(1);
      expect(lines(given.stderr)).toEqual([`pgdrain: database unavailable: no reply from ${new URL(db.url).host} within 1 s (--db-timeout)`]);
      const waiting = runCli(db.url, 'migrate');
      await until(async () => (await sql<{ n: number }>(`select count(*)::int as n from pg_stat_activity
        where wait_event = 'advisory' and query like 'select pg_advisory_xact_lock%'`))[0]!.n === 1, 'migrate to wait for the lock');
      await holder.query('select pg_advisory_unlock(7360372011)');
      expect(await waiting).toMatchObject({ code: 0, stderr: 'pgdrain: schema is up to date\n' });
    } finally {
      await holder.end();
    }
  });

  it('migrate given up on another migrate\'s lock leaves no backend of it waiting in the lock\'s queue', async () => {
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    const waitingForLock = async () => (await sql<{ n: number }>(`select count(*)::int as n from pg_stat_activity
      where wait_event = 'advisory' and query like 'select pg_advisory_xact_lock%'`))[0]!.n;
    try {
      await holder.query('select pg_advisory_lock(7360372011)');
      const r = await runCli(db.url, 'migrate', '--db-timeout', '1');
      expect(r.code).toBe(1);
      expect(lines(r.stderr)).toEqual([`pgdrain: database unavailable: no reply from ${new URL(db.url).host} within 1 s (--db-timeout)`]);
      // Its lock wait was cancelled on the server: the lock is still held, and nobody waits for it.
      await until(async () => (await waitingForLock()) === 0, 'the given-up migrate to leave the lock\'s queue');
    } finally {
      await holder.end();
    }
  });

  it('migrate with PGDRAIN_DB_TIMEOUT set waits for another migrate\'s lock past that bound: the variable bounds its connection only', async () => {
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query('select pg_advisory_lock(7360372011)');
      const waiting = runCliWith({ PGDRAIN_DB_TIMEOUT: '1' }, db.url, 'migrate');
      // Its lock wait outlives the variable's 1 s, by the server's clock (a bound on it would have cancelled it at 1 s).
      await until(async () => (await sql<{ n: number }>(`select count(*)::int as n from pg_stat_activity
        where wait_event = 'advisory' and query like 'select pg_advisory_xact_lock%'
          and clock_timestamp() - query_start > interval '3 seconds'`))[0]!.n === 1, 'migrate to wait for the lock past 3 s');
      await holder.query('select pg_advisory_unlock(7360372011)');
      expect(await waiting).toMatchObject({ code: 0, stderr: 'pgdrain: schema is up to date\n' });
    } finally {
      await holder.end();
    }
  });

  it.each([['stats'], ['wait', '1'], ['migrate']])('%s takes PGDRAIN_DB_TIMEOUT when --db-timeout is absent', async (...args) => {
    proxy.freeze();
    const r = await runCliWith({ PGDRAIN_DB_TIMEOUT: '1' }, viaProxy, ...args);
    expect(r.code).toBe(1);
    expect(lines(r.stderr)).toEqual([
      `pgdrain: database unavailable: no connection to 127.0.0.1:${proxy.port} within 1 s (--db-timeout)`]);
  });

  it('PGDRAIN_DB_TIMEOUT must be decimal seconds: a usage error naming the variable; a --db-timeout given wins', async () => {
    for (const [value, rule] of [['0x10', 'must be a number of seconds from 0 to 86400, got "0x10"'],
                                 ['-1', 'must be a number of seconds from 0 to 86400, got "-1"'],
                                 [' ', 'is set but empty: give a value or unset it']]) {
      for (const command of ['stats', 'migrate']) {
        const r = await runCliWith({ PGDRAIN_DB_TIMEOUT: value! }, db.url, command);
        expect(r.code).toBe(2);
        expect(lines(r.stderr)).toEqual([`pgdrain: PGDRAIN_DB_TIMEOUT: ${rule}`]);
      }
    }
    const given = await runCliWith({ PGDRAIN_DB_TIMEOUT: 'soon' }, db.url, 'stats', '--db-timeout', '5');
    expect(given).toMatchObject({ code: 0, stderr: '' });
  });

  it('--db-timeout must be a number of seconds: a usage error naming the flag', async () => {
    const r = await runCli(db.url, 'stats', '--db-timeout', 'soon');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--db-timeout: must be a number of seconds from 0 to 86400/);
  });
});

describe('pgdrain serve during a database outage', () => {
  it('logs one line per 503 database_unavailable, no stack trace', async () => {
    proxy.freeze();
    const server = startServe(viaProxy, [], { PGDRAIN_TOKEN: 't'.repeat(32) });
    try {
      const url = await server.url;
      for (let i = 0; i < 2; i++) expect((await fetch(`${url}/healthz`)).status).toBe(503);
      // Written before each answer, but stderr's pipe may lag it.
      const logged = () => lines(server.stderr()).filter((l) => !l.includes('serving on'));
      await until(async () => logged().filter((l) => l.startsWith('pgdrain: ')).length >= 2, 'both 503s to be logged');
      expect(logged()).toHaveLength(2);
      for (const line of logged()) expect(line).toMatch(/^pgdrain: database_unavailable: /);
    } finally {
      server.child.kill('SIGINT');
      await server.exited;
    }
  });
});
