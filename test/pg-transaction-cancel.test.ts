// pgDriver's transactions honour a statement's { signal } by cancelling it on
// the server. The cancel travels on a connection of its own and can arrive
// late; a client that had one sent leaves the pool, so that a late cancel
// cannot fail the next user's statement on that backend.
import { afterAll, expect, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';

const db = await testDb();
const driver = pgDriver(db.url, { max: 1 });
afterAll(() => driver.close());

const pid = async (): Promise<number> => (await driver.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;

it('a statement given up in a transaction is cancelled on the server, and its client leaves the pool', async () => {
  const before = await pid();
  expect(await pid()).toBe(before); // one client, kept by the pool between statements
  const controller = new AbortController();
  const given = driver.transaction(async (tx) => {
    await tx.query('select pg_sleep(30)', [], { signal: controller.signal });
  }).then(() => undefined, (e: unknown) => e);
  // Given up once it runs on the server, not 200 ms on (a slow BEGIN, a loaded machine: the signal fired before
  // the statement was sent, which then failed without a cancel, code 23, and the case went unreached).
  await until(async () => (await db.sql(`select 1 from pg_stat_activity where pid = $1 and state = 'active'
                                         and query = 'select pg_sleep(30)'`, [before])).length > 0, 'the statement running on the server');
  controller.abort();
  const failed = await given;
  expect((failed as { code?: string }).code).toBe('57014'); // canceling statement due to user request
  expect(await pid()).not.toBe(before);
});

it('a transaction whose signal never fired keeps its client', async () => {
  const before = await pid();
  const controller = new AbortController();
  await driver.transaction(async (tx) => {
    await tx.query('select 1', [], { signal: controller.signal });
  });
  controller.abort();
  expect(await pid()).toBe(before);
});
