// The HTTP API's reads (GET /jobs, /jobs/:id, /stats, /metrics, /dashboard)
// are given up when their request ends: a caller that hangs up on a read
// still waiting for the database leaves it no pool slot (before, the read
// kept its connection until the app's 10 s bound, then answered a 503 no one
// read and reported it). On a real server (@hono/node-server), whose
// request signal fires when its client hangs up, and a real PostgreSQL; the
// read waits on a table lock another session holds (no timing).
import { serve, type ServerType } from '@hono/node-server';
import { afterAll, expect, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { createApp } from '../src/http/index.js';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';
import { lockSessions } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const TOKEN = 'read-signal-token-0123456789';
const session = lockSessions(db.url);

// One connection: a read that kept it after its caller left would leave none for the next request.
const driver = pgDriver(db.url, { max: 1 });
const reported: unknown[] = [];
const app = createApp({ queue: createQueue({ driver }), token: TOKEN, onError: (error) => reported.push(error) });
/** What the app answered each request, seen by the server: a caller that hung up reads nothing. */
const answered: number[] = [];
const server = await new Promise<{ server: ServerType; url: string }>((done) => {
  const s = serve({
    fetch: async (request: Request) => {
      const response = await app.fetch(request);
      answered.push(response.status);
      return response;
    }, port: 0, hostname: '127.0.0.1',
  }, (info) => done({ server: s, url: `http://127.0.0.1:${info.port}` }));
});
afterAll(async () => {
  await new Promise((r) => server.server.close(r));
  await driver.close();
});

const get = (path: string, signal?: AbortSignal) => fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` }, signal });
/** How many statements wait for a lock on jobs.job_queue. */
const waiting = async () => (await sql<{ n: number }>(`select count(*)::int as n from pg_locks
  where not granted and relation = 'jobs.job_queue'::regclass`))[0]!.n;

it.each(['/jobs', '/jobs/1', '/stats', '/metrics', '/dashboard'])(
  'GET %s: the caller hangs up while its read waits: the read is given up and its connection ended, the slot free again',
  async (path) => {
    const locker = await session();
    await locker.query('begin');
    await locker.query('lock table jobs.job_queue in access exclusive mode');
    try {
      answered.length = 0;
      const caller = new AbortController();
      const request = get(path, caller.signal).catch((error: unknown) => error);
      await until(async () => (await waiting()) === 1, 'the read to wait for the lock');
      caller.abort();
      expect(await request).toMatchObject({ name: 'AbortError' });
      await until(async () => answered.length === 1, 'the app to answer');
      // Before: 503 after the 10 s bound, the read waiting all along.
      expect(answered).toEqual([499]);
      // Its statement cancelled and its connection ended while the lock is still held.
      await until(async () => (await waiting()) === 0, 'the read to stop waiting');
    } finally {
      await locker.query('rollback');
    }
    // The pool's one connection is free again: the next read answers (no job 1: 404).
    expect((await get(path)).status).toBe(path === '/jobs/1' ? 404 : 200);
    expect(reported).toEqual([]); // a caller that left is no server error
  });
