// pgDriver's query({ signal }) outside a transaction (a publish's signal, the
// CLI's --db-timeout): a signal that fires while the statement runs sends a
// cancel on a connection of its own, then resets the client's. The cancel can
// reach the server after the statement ended by itself (its reply came
// first): the client must then leave the pool, not go back to it, or the late
// cancel (and the reset after it) fails the next user's statement on that
// backend, a drain's claim among them. The proxy holds the cancel's
// connection to make it late.
import { afterAll, expect, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';
import { proxiedUrl } from './support/tcp-proxy.js';

const db = await testDb();
const { proxy, url } = await proxiedUrl(db.url);
const driver = pgDriver(url, { max: 1 });
afterAll(async () => {
  await driver.close();
  await proxy.close();
});

const pid = async (): Promise<number> => (await driver.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;

it('a statement that ended before its late cancel arrived does not hand its client to the next statement', async () => {
  const before = await pid();
  const release = proxy.holdNew(); // the cancel's connection waits here
  const controller = new AbortController();
  const given = driver.query("select pg_sleep(0.5), 'given up' as mark", [], { signal: controller.signal });
  await until(async () => (await db.sql(`select 1 from pg_stat_activity where pid = $1 and query like '%given up%'`, [before])).length > 0,
    'the statement running on the server');
  controller.abort(new Error('gave up'));
  await given; // the reply came before the cancel reached the server
  release();
  // The next statement: on a client of its own, not the one the cancel (and its reset) is on its way to.
  const next = await driver.query<{ pid: number }>('select pg_sleep(0.5), pg_backend_pid() as pid');
  expect(next.rows[0]!.pid).not.toBe(before);
});
