// Concurrent POST /drain on one server share its queue's pool (`pgdrain
// serve`: one pool for every request). With a transactional task each running
// handler holds a pooled connection: the drains together must not start more
// of them than the pool holds (less one for the drains' own statements), or
// the rest wait for a connection with their timeout running and are nacked
// without having run (README "Typed tasks": "more would wait for a connection
// with their timeout running, and be nacked without having run").
import { serve, type ServerType } from '@hono/node-server';
import { afterAll, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import type { Driver, QueryOptions } from '../src/db/driver.js';
import { pgDriver } from '../src/db/pg.js';
import { createQueue, defineTask } from '../src/index.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';

const db = await testDb();
const TOKEN = 'test-token-0123456789abcdef';
const POOL_MAX = 4;

const servers: ServerType[] = [];
const driver = pgDriver(db.url, { max: POOL_MAX });
afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  await driver.close();
});

// The jobs the drains on `counting` have claimed and whose handlers have not yet returned, and the most at once:
// what a handler that returned leaves is its connection, given back after (a bound on the slots, never over it).
let claimed = 0;
let returned = 0;
let mostOut = 0;
const counting: Driver = {
  ...driver,
  query: async <R,>(text: string, params?: readonly unknown[], options?: QueryOptions) => {
    const result = await driver.query<R>(text, params, options);
    if (text.includes('jobs.claim_json(')) {
      claimed += (result.rows[0] as { r: { count: number } }).r.count;
      mostOut = Math.max(mostOut, claimed - returned);
    }
    return result;
  },
};

// Holds its transaction's connection for 0.3 s; long holds until the test lets it go.
let release: (() => void) | undefined;
let longStarted = false;
let longEnded = false;
const tasks = {
  hold: defineTask('hold', async (_body: unknown, ctx) => {
    await ctx.db.query('select pg_sleep(0.3)');
    returned++;
  }, { transactional: true }),
  long: defineTask('long', async (_body: unknown, ctx) => {
    await ctx.db.query('select 1');
    longStarted = true;
    await new Promise<void>((resolve) => (release = resolve));
    longEnded = true;
  }, { transactional: true }),
};
const queue = createQueue({ driver: counting, tasks });

// The drains must claim no more jobs than the pool has connections for their handlers (POOL_MAX less one): those
// past it would wait for a connection with their timeout running, and be nacked unrun. Counted, not timed: the
// jobs' timeouts (30 s) are far past anything a loaded machine adds. Before, a 1.5 s timeout against two 0.6 s
// holds in a row decided it, and a slow claim or commit nacked a job that had run.
it('concurrent drains on one pool run no more transactional jobs at once than it holds: none is nacked without having run', async () => {
  const base = await new Promise<string>((done) => {
    servers.push(serve({ fetch: createApp({ queue, token: TOKEN }).fetch, port: 0, hostname: '127.0.0.1' },
                       (info) => done(`http://127.0.0.1:${info.port}`)));
  });
  await db.sql(`select jobs.publish('hold', '{}'::jsonb, timeout_seconds => 30, max_retries => 0)
                from generate_series(1, 24)`);
  const reports = await Promise.all(Array.from({ length: 4 }, () =>
    fetch(`${base}/drain`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
                             body: JSON.stringify({ batchSize: 6, budgetSeconds: 120 }) }).then((r) => r.json() as Promise<{ succeeded: number }>)));
  const failed = await db.sql<{ error: string }>(`select error from jobs.job where status = 'failure'`);
  expect(failed.map((f) => f.error)).toEqual([]);
  expect(reports.reduce((n, r) => n + r.succeeded, 0)).toBe(24);
  expect(claimed).toBe(24);
  expect(mostOut).toBeLessThanOrEqual(POOL_MAX - 1);
});

it("a lingering drain whose pool the other drains' handlers fill still ends at its deadline", async () => {
  const two = pgDriver(db.url, { max: 2 }); // one connection for handlers, over every drain on it
  try {
    // A lingering drain opens its LISTEN (onQueued) when its first claim found its queue empty and it waits.
    let lingers = false;
    const q = createQueue({ driver: { ...two, onQueued: (fn) => { lingers = true; return two.onQueued!(fn); } }, tasks });
    await db.sql(`select jobs.create_queue('idle'), jobs.create_queue('busy')`);
    // It lingers on its empty queue, polling, before the other drain's job takes the pool's one handler connection.
    const lingering = q.drain(10, Date.now() + 6000, { queue: 'idle', lingerMs: 60_000, pollMs: 100 });
    let lingeringEnded = false;
    void lingering.then(() => (lingeringEnded = true), () => {});
    await until(async () => lingers, 'the drain to linger on its empty queue');
    await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 60, queue => 'busy')`);
    const busy = q.drain(10, Date.now() + 120_000, { queue: 'busy' });
    await until(async () => longStarted, "the other drain's handler to hold the pool's handler connection");
    expect(lingeringEnded).toBe(false); // it still lingers with the pool full: what follows is the case
    const report = await lingering;
    const stillHeld = !longEnded;
    release?.();
    await busy;
    expect(stillHeld).toBe(true); // it returned at its deadline, not when the other drain's handler let go
    expect(report).toMatchObject({ claimed: 0, stoppedBy: 'empty' });
  } finally {
    release?.();
    await two.close();
  }
});
