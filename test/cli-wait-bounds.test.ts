// `pgdrain wait` against a database that does not answer, past the opening
// of its LISTEN session (cli-db-timeout.test.ts covers the opening): each
// read of the job is bounded by a --db-timeout given, and each connection by
// the URL's connect_timeout, else PGCONNECT_TIMEOUT, as the other commands'.
// The network is a real TCP proxy; a read that waits on a lock is a real one.
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { runCli, runCliWith, until, withAppName } from './support/drain-process.js';
import { proxiedUrl, silentServer, type TcpProxy } from './support/tcp-proxy.js';

const db = await testDb();
const sql = db.sql;
let proxy: TcpProxy;
let viaProxy: string;
let job = '';

beforeEach(async () => {
  ({ proxy, url: viaProxy } = await proxiedUrl(db.url));
  await sql('truncate jobs.job_queue, jobs.job');
  job = (await sql<{ id: string }>(`select jobs.publish('a.task') as id`))[0]!.id; // active: nothing drains it
});
afterEach(async () => proxy.close());

const lines = (text: string) => text.split('\n').filter((l) => l !== '');

/** The backends of application_name app, and how many of them have answered a read of the job and sit idle. */
const backends = async (app: string) => (await sql<{ n: number; idle: number }>(
  `select count(*)::int as n, count(*) filter (where state = 'idle' and query like '%jobs.job_queue q where q.job_id%')::int as idle
     from pg_stat_activity where application_name = $1`, [app]))[0]!;

describe('pgdrain wait gives up on a read of its job with no reply at the --db-timeout given', () => {
  it('a read sent once the network froze under its open session: exit 1, one line naming the server', async () => {
    const app = 'wait-frozen';
    const waiting = runCli(withAppName(viaProxy, app), 'wait', job, '--timeout', '8', '--db-timeout', '1');
    // Its session open and its first read of the job answered: it waits for a NOTIFY.
    await until(async () => (await backends(app)).idle === 1, 'wait to read the job once');
    proxy.freezeOpen();
    // Its last look at --timeout gets no reply: given up 1 s later (without the bound: "still active" 2 s later).
    const r = await waiting;
    expect(r.code).toBe(1);
    expect(lines(r.stderr)).toEqual([
      `pgdrain: database unavailable: no reply from 127.0.0.1:${proxy.port} within 1 s (--db-timeout)`]);
  });

  it('a read waiting on a lock: cancelled on the server, its backend ends while the lock is still held', async () => {
    const app = 'wait-locked';
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query('begin');
      await holder.query('lock table jobs.job_queue in access exclusive mode');
      const r = await runCli(withAppName(db.url, app), 'wait', job, '--db-timeout', '1');
      expect(r.code).toBe(1);
      expect(lines(r.stderr)).toEqual([`pgdrain: database unavailable: no reply from ${new URL(db.url).host} within 1 s (--db-timeout)`]);
      await until(async () => (await backends(app)).n === 0, 'the wait backend to end');
    } finally {
      await holder.query('rollback').catch(() => {});
      await holder.end();
    }
  });
});

describe('pgdrain wait honours PGCONNECT_TIMEOUT as the other commands do', () => {
  it('bounds the connection of a URL without connect_timeout; the URL\'s own wins; a bad one is a usage error', async () => {
    const silent = await silentServer();
    try {
      const r = await runCliWith({ PGCONNECT_TIMEOUT: '2' }, silent.url, 'wait', job, '--db-timeout', '20');
      expect(r).toMatchObject({ code: 1, stdout: '', stderr: 'pgdrain: database unavailable: timeout expired\n' });
      // connect_timeout=0 in the URL (no limit) wins over the variable: --db-timeout ends it.
      const own = await runCliWith({ PGCONNECT_TIMEOUT: '2' }, `${silent.url}?connect_timeout=0`, 'wait', job, '--db-timeout', '3');
      expect(own.code).toBe(1);
      expect(lines(own.stderr)).toEqual([`pgdrain: database unavailable: no connection to ${new URL(silent.url).host} within 3 s (--db-timeout)`]);
      const bad = await runCliWith({ PGCONNECT_TIMEOUT: 'ten' }, silent.url, 'wait', job, '--db-timeout', '1');
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/^pgdrain: PGCONNECT_TIMEOUT: must be a whole number of seconds, got "ten"/);
    } finally {
      await silent.close();
    }
  });
});
