// A ctx.publish given up at its job's timeout while its statement waits on
// the server (here: on a bounded queue's publish lock, held by another
// publisher's open transaction). Ending the connection alone is not enough:
// a backend waiting on a lock does not read its socket, and once the lock is
// released its INSERT commits, a second follow-up beside the retry's. The
// abandoned statement must be cancelled on the server. Through PgBouncer the
// cancel must go out before the client leaves: PgBouncer finds the backend to
// cancel from the client's connection to it.
import pg from 'pg';
import { expect, inject, it, onTestFinished } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { createQueue, type JobContext } from '../src/index.js';
import { testDb } from './support/db.js';
import { sleep } from './support/drain-process.js';
import { startPgBouncer } from './support/pgbouncer.js';

const db = await testDb();
const sql = db.sql;
const url = new URL(db.url);

/**
 * The pool the queue publishes through, its sessions named `app`: over TCP,
 * TLS, the server's unix socket, or a PgBouncer (in session or transaction
 * pooling) started for this test.
 */
async function poolFor(transport: string, app: string): Promise<pg.Pool> {
  const base = { user: url.username, database: db.name, port: Number(url.port), application_name: app, max: 2 };
  if (transport.startsWith('pgbouncer-')) {
    const bouncer = await startPgBouncer(inject('serverUrl'), transport === 'pgbouncer-session' ? 'session' : 'transaction');
    onTestFinished(() => bouncer.stop());
    return new pg.Pool({ ...base, host: bouncer.host, port: bouncer.port });
  }
  if (transport === 'unix') {
    const [dir] = (await sql<{ d: string }>(`select split_part(current_setting('unix_socket_directories'), ',', 1) as d`));
    expect(dir!.d, 'the test server listens on a unix socket').toMatch(/^\//);
    return new pg.Pool({ ...base, host: dir!.d });
  }
  if (transport === 'tls') {
    expect(inject('serverTls'), 'the test cluster takes TLS (it needs openssl to make its certificate)').toBe(true);
  }
  // The test cluster's certificate is self-signed.
  return new pg.Pool({ ...base, host: url.hostname, ...(transport === 'tls' ? { ssl: { rejectUnauthorized: false } } : {}) });
}

/** Sessions of `app` running a statement (`active`), or only those waiting on a lock. */
const sessions = async (app: string, waiting: 'active' | 'on a lock') => (await sql<{ n: number }>(
  `select count(*)::int as n from pg_stat_activity where application_name = $1
     and ${waiting === 'active' ? `state = 'active'` : `wait_event_type = 'Lock'`}`, [app]))[0]!.n;

/** Polls until no session of `app` is so; false if one still is after 10 s (the test goes on to show what follows). */
async function noneLeft(app: string, waiting: 'active' | 'on a lock'): Promise<boolean> {
  for (let i = 0; i < 200; i++) {
    if (await sessions(app, waiting) === 0) return true;
    await sleep(50);
  }
  return false;
}

const children = async () =>
  (await sql<{ n: number }>(`select count(*)::int as n from jobs.job_queue where task = 'child'`))[0]!.n;

it.each(['tcp', 'tls', 'unix', 'pgbouncer-session', 'pgbouncer-transaction'])("a publish given up at its job's timeout while it waits on a lock (%s) is cancelled on the server: the retry's is the only follow-up", async (transport) => {
  await sql(`truncate jobs.job_queue, jobs.job`);
  const app = `abandon-cancel-${transport}`;
  const pool = await poolFor(transport, app);
  const given: string[] = [];
  const queue = createQueue({
    driver: pgDriver(pool),
    tasks: {
      parent: async (_body: unknown, ctx: JobContext) => {
        try {
          await ctx.publish('child', {}, { queue: 'side' });
        } catch (error) {
          given.push((error as Error).message);
          throw error;
        }
        return null;
      },
    },
  });
  // Another publisher into the bounded queue 'side', its transaction open: it holds the queue's publish lock.
  const other = new pg.Client({ connectionString: db.url });
  await other.connect();
  let open = false;
  try {
    await queue.queues.create('side', { maxSize: 1000 });
    await queue.publish('parent', {}, { timeoutSeconds: 1, maxRetries: 1 });
    await other.query('begin');
    open = true;
    await queue.using(other).publish('other', {}, { queue: 'side' });

    expect(await queue.drain(1, Date.now() + 15_000)).toMatchObject({ claimed: 1, retried: 1, succeeded: 0 });
    expect(given).toEqual(['timed out after 1 s']);
    const stopped = await noneLeft(app, 'on a lock');
    await other.query('commit');
    open = false;
    // The lock is free: an abandoned INSERT still waiting would commit now, and its session then end.
    await noneLeft(app, 'active');
    expect(await children(), 'follow-ups of the attempt that timed out').toBe(0);
    expect(stopped, 'the abandoned publish stopped waiting on the lock while it was held').toBe(true);

    // The retry publishes its own: one follow-up for the one successful attempt.
    await sql(`update jobs.job_queue set scheduled_at = now() where task = 'parent'`); // past the backoff
    expect(await queue.drain(1, Date.now() + 15_000)).toMatchObject({ claimed: 1, succeeded: 1 });
    expect(await children()).toBe(1);
  } finally {
    if (open) await other.query('rollback');
    await other.end();
    await queue.close();
    await pool.end();
  }
});
