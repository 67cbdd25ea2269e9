import pg from 'pg';
import { afterAll, beforeAll, beforeEach, expect } from 'vitest';
import { migrate, pgDriver } from '../../src/index.js';
import { startServer, type Server } from './postgres.js';

/** A cluster of the test's own with a small lock table, migrated, in its database `locks`. */
export interface SmallLockTable {
  server: Server;
  url: string;
  /** Two connections to `locks`; its errors (a restart, a full lock table) are the test's to see. */
  admin: pg.Pool;
}

/**
 * Starts a cluster with max_locks_per_transaction 10: a lock table of about
 * 3,200 entries (10 x 322 backends). Its own cluster, as it restarts it: a
 * restart of the shared server would break the files running beside this one.
 */
export async function smallLockTable(): Promise<SmallLockTable> {
  const server = await startServer();
  if (server.kind !== 'cluster' || !server.pgCtl) {
    throw new Error(`this test sets max_locks_per_transaction and restarts PostgreSQL with pg_ctl: it needs a cluster it ` +
      `started itself, got a '${server.kind}' server: unset TEST_DATABASE_URL and PGDRAIN_TEST_POSTGRES and install ` +
      'the PostgreSQL server binaries');
  }
  const c = new pg.Client({ connectionString: server.url });
  await c.connect();
  await c.query('alter system set max_locks_per_transaction = 10');
  await c.end();
  server.pgCtl('restart', '-m', 'fast');
  const c2 = new pg.Client({ connectionString: server.url });
  await c2.connect();
  expect((await c2.query('show max_locks_per_transaction')).rows[0]).toEqual({ max_locks_per_transaction: '10' });
  await c2.query('create database locks');
  await c2.end();
  const url = server.url.replace(/\/postgres$/, '/locks');
  const driver = pgDriver(url);
  await migrate(driver);
  await driver.close();
  const admin = new pg.Pool({ connectionString: url, max: 2 });
  admin.on('error', () => {});
  return { server, url, admin };
}

export type Sql = <R = Record<string, unknown>>(text: string, params?: unknown[]) => Promise<R[]>;

/**
 * The hooks of a describe on such a cluster: started before its tests,
 * stopped after them, its job tables emptied before each (a describe's own
 * beforeAll and beforeEach run after these). `url` is there once it is up.
 */
export function useSmallLockTable(): { readonly url: string; sql: Sql } {
  let table: SmallLockTable | undefined;
  const sql: Sql = async (text, params) => (await table!.admin.query(text, params)).rows;
  beforeAll(async () => {
    table = await smallLockTable();
  }, 60_000);
  afterAll(async () => {
    await table?.admin.end();
    await table?.server.stop();
  });
  beforeEach(async () => {
    await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
  });
  return { get url() { return table!.url; }, sql };
}

/**
 * Checks that one statement taking n locks does not fit the lock table of
 * the cluster at url (53200). On a client of its own, asked once more
 * after: a backend sends its error before it aborts and frees the table,
 * and a connection opened meanwhile could fail to start.
 */
export async function expectLocksNotToFit(url: string, n: number): Promise<void> {
  const check = new pg.Client({ connectionString: url });
  await check.connect();
  try {
    await expect(check.query(`select count(pg_advisory_xact_lock(1, g)) from generate_series(1, $1::int) g`, [n]))
      .rejects.toMatchObject({ code: '53200' });
    await check.query('select 1');
  } finally {
    await check.end();
  }
}
