// maintain() catching up a backlog of several passes on every driver: each
// pass is one statement (its own transaction, committed before the next),
// so it works where no session or transaction is held — neon() over HTTP,
// here against a stand-in for Neon's endpoint built on pg
// (test/support/neon-http-server.ts), as Neon's own cannot run locally —
// as well as on the Neon WebSocket Pool and PGlite. pg: maintenance-lifecycle.test.ts.
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { neonHttpDriver } from '../src/db/neon-http.js';
import { neonDriver } from '../src/db/neon.js';
import { pgliteDriver } from '../src/db/pglite.js';
import { maintain, migrate, type Driver } from '../src/index.js';
import { testDb } from './support/db.js';
import { startNeonHttpServer } from './support/neon-http-server.js';
import { startWsProxy } from './support/ws-proxy.js';

const db = await testDb();
const endpoint = await startNeonHttpServer();
const proxy = await startWsProxy();
afterAll(async () => {
  await endpoint.close();
  await proxy.close();
});

/** n ended jobs, ended 8 days ago (past a 7-day retention), through `driver`. */
const oldJobs = (driver: Driver, n: number) => driver.query(
  `insert into jobs.job (job_id, task, status, attempts, priority, max_retries, timeout, scheduled_at, created_at, ended_at)
   select 10000000 + g, 'x.y', 'success', 1, 0, 3, 60, now(), now(), now() - interval '8 days' + g * interval '1 ms'
   from generate_series(1, $1::int) g`, [n]);

async function catchesUp(driver: Driver) {
  await oldJobs(driver, 350);
  expect(await maintain(driver, { maxRows: 100, archive: true }))
    .toEqual({ expired: 0, ticks: 0, deleted: 0, archived: 350, windows: 0, misses: 0, left: 0, passes: 4, caughtUp: true });
  expect((await driver.query(`select (select count(*)::int from jobs.job) as job, (select count(*)::int from jobs.job_archive) as archive`)).rows)
    .toEqual([{ job: 0, archive: 350 }]);
}

describe('maintain() removes a backlog of 350 in passes of 100, in one call', () => {
  beforeEach(async () => {
    await db.sql('truncate jobs.job, jobs.job_archive');
  });

  it('over neon() HTTP: one request per pass', async () => {
    const driver = neonHttpDriver(db.url, { fetchEndpoint: endpoint.endpoint });
    try {
      const before = endpoint.requests;
      await catchesUp(driver);
      // The insert above, four passes, the count.
      expect(endpoint.requests - before).toBe(6);
    } finally {
      await driver.close();
    }
  });

  it('over the Neon WebSocket Pool', async () => {
    const driver = neonDriver(db.url, { wsProxy: proxy.url, webSocketConstructor: WebSocket });
    try {
      await catchesUp(driver);
    } finally {
      await driver.close();
    }
  });

  // A fresh PGlite costs about 6 CPU-seconds (its wasm and initdb): on a loaded
  // 2-core machine it took 47 to 99 s to start, near or past the default 60 s.
  it('on PGlite', async () => {
    const driver = await pgliteDriver();
    try {
      await migrate(driver);
      await catchesUp(driver);
    } finally {
      await driver.close();
    }
  }, 180_000);
});
