// The driver contract on @neondatabase/serverless's neon() over HTTP
// (neonHttpDriver). Neon's HTTP SQL endpoint cannot run here, so the driver
// talks to a stand-in for it built on pg (test/support/neon-http-server.ts),
// speaking the same protocol; every request is one round trip, and counted.
import { afterAll, describe, expect, it } from 'vitest';
import { neonHttpDriver } from '../../src/db/neon-http.js';
import { createQueue, defineTask } from '../../src/index.js';
import { emptyDb, testDb } from '../support/db.js';
import { startNeonHttpServer } from '../support/neon-http-server.js';
import { freePort } from '../support/postgres.js';
import { driverContract } from './contract.js';

const db = await testDb();
const empty = await emptyDb();
const closedPort = await freePort();
const endpoint = await startNeonHttpServer();
afterAll(() => endpoint.close());
const options = { fetchEndpoint: endpoint.endpoint };

driverContract('Neon HTTP', { sessions: false, network: true }, async () => ({
  driver: neonHttpDriver(db.url, options),
  emptyDatabase: async () => neonHttpDriver(empty.url, options),
  // The endpoint answers, the database behind it does not (Neon: compute unreachable).
  unreachable: () => neonHttpDriver(`postgres://postgres@127.0.0.1:${closedPort}/nowhere`, options),
}));

describe('neonHttpDriver', () => {
  it('one HTTP request per queue operation', async () => {
    const queue = createQueue({ driver: neonHttpDriver(db.url, options), tasks: { noop: async () => null } });
    await db.sql('truncate jobs.job_queue, jobs.job');
    let before = endpoint.requests;
    await queue.publish('noop', { n: 1 });
    expect(endpoint.requests - before).toBe(1);
    before = endpoint.requests;
    await queue.publishBulk(Array.from({ length: 99 }, () => ({ task: 'noop' })));
    expect(endpoint.requests - before).toBe(1);
    before = endpoint.requests;
    const report = await queue.drain(50, Date.now() + 120_000);
    expect(report).toMatchObject({ claimed: 100, succeeded: 100, stoppedBy: 'empty' });
    // claim 50; settle 50 + claim 50; settle 50 + find nothing: outcomes ride on the next claim.
    // A settle of its own is sent only when an outcome waits 50 ms, which a slow machine can cause.
    const requests = endpoint.requests - before;
    console.log(`neon-http: drained 100 jobs (batch 50) in ${requests} HTTP requests, ${report.batches} claims`);
    expect(report.batches).toBe(3);
    expect(requests).toBeGreaterThanOrEqual(3);
    expect(requests).toBeLessThanOrEqual(5);
    await queue.close();
  });

  it('a transactional task is refused before any claim, not failed job by job', async () => {
    const queue = createQueue({
      driver: neonHttpDriver(db.url, options),
      tasks: { noop: async () => null, billed: defineTask('billed', async () => null, { transactional: true }) },
    });
    await db.sql('truncate jobs.job_queue, jobs.job');
    await queue.publish('billed', {});
    const before = endpoint.requests;
    await expect(queue.drain(10, Date.now() + 60_000)).rejects.toThrow(/^tasks: a task is transactional, and this driver holds no transaction/);
    expect(endpoint.requests - before).toBe(0);
    // The job was never claimed: no attempt spent.
    expect(await db.sql('select attempt, lease_until from jobs.job_queue')).toEqual([{ attempt: 0, lease_until: null }]);
    await queue.close();
  });

  it('an endpoint that does not answer is "database unavailable"', async () => {
    // Last in the file: fetchEndpoint is global to the isolate.
    const driver = neonHttpDriver(db.url, { fetchEndpoint: `http://127.0.0.1:${closedPort}/sql` });
    await expect(driver.query('select 1')).rejects.toMatchObject({ code: 'database_unavailable' });
  });

  it('rejects bad options naming the field', () => {
    expect(() => neonHttpDriver('postgres://host-only')).toThrow(/^connectionString: must be a postgres:\/\/ URL/);
    expect(() => neonHttpDriver(db.url, { fetchEndpoint: 'ftp://x' })).toThrow(/^fetchEndpoint: must be an http\(s\):\/\/ URL/);
  });
});
