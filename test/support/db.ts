// Each test file owns a database cloned from the migrated template.
import pg from 'pg';
import { afterAll, inject } from 'vitest';
import { pgDriver } from '../../src/db/pg.js';
import type { Driver } from '../../src/db/driver.js';

const TEMPLATE = 'pgdrain_template';

export interface TestDb {
  url: string;
  name: string;
  driver: Driver;
  /** A plain pg client for assertions; closed after the file. */
  sql<R = Record<string, unknown>>(text: string, params?: unknown[]): Promise<R[]>;
}

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.href;
}

/** Clones the template into a fresh database for this file; dropped after it. */
export async function testDb(): Promise<TestDb> {
  const server = inject('serverUrl');
  const name = `t_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = new pg.Client({ connectionString: server });
  await admin.connect();
  await admin.query(`create database ${name} template ${TEMPLATE}`);
  await admin.end();
  const url = withDatabase(server, name);
  const driver = pgDriver(url, { max: 20 });
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  // pool.end() resolves before its sockets close, so the forced drop below can
  // still reach a closing client; any other idle-client error stays fatal.
  let closing = false;
  pool.on('error', (error) => {
    if (!closing) throw error;
  });
  afterAll(async () => {
    closing = true;
    await driver.close();
    await pool.end();
    const a = new pg.Client({ connectionString: server });
    await a.connect();
    await a.query(`drop database if exists ${name} with (force)`);
    await a.end();
  });
  return {
    url, name, driver,
    sql: async (text, params) => (await pool.query(text, params)).rows,
  };
}

/** A database with no schema at all, for migration tests. */
export async function emptyDb(): Promise<{ url: string; name: string }> {
  const server = inject('serverUrl');
  const name = `e_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = new pg.Client({ connectionString: server });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  afterAll(async () => {
    const a = new pg.Client({ connectionString: server });
    await a.connect();
    await a.query(`drop database if exists ${name} with (force)`);
    await a.end();
  });
  return { url: withDatabase(server, name), name };
}

/** A function that runs `select (<expression>)::text as id` and returns that id (a job's, as text). */
export const idOf = (sql: TestDb['sql']) => async (expression: string): Promise<string> =>
  (await sql<{ id: string }>(`select (${expression})::text as id`))[0]!.id;

/** The error `sql(text, params)` fails with; fails the test when it succeeds. */
export async function sqlErrorOf(sql: (text: string, params?: unknown[]) => Promise<unknown>, text: string,
                                 params?: unknown[]): Promise<pg.DatabaseError> {
  try {
    await sql(text, params);
  } catch (error) {
    return error as pg.DatabaseError;
  }
  throw new Error(`expected ${text} to fail`);
}

/** Runs fn with a plain pg client on url, closing it afterwards. */
export async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}
