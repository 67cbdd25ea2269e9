// Installing as a team on managed PostgreSQL would: migrate --roles in two
// databases of one cluster at once (roles are the cluster's).
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { migrations } from '../src/generated/sql.js';
import { migrate } from '../src/migrate.js';
import { emptyDb } from './support/db.js';

const allVersions = migrations.map((m) => m.version);
// Roles are cluster-wide: names of this run's own.
const run = Date.now().toString(36);

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** migrate() as url's role: its versions applied, or its error. */
async function migrateAt(url: string, options: { roles?: string } = {}): Promise<number[] | Error> {
  const driver = pgDriver(url);
  try {
    return await migrate(driver, options).catch((e: Error) => e);
  } finally {
    await driver.close();
  }
}

describe('migrate --roles in two databases of one cluster at once', () => {
  it('both make or take the same roles (one waits for the other\'s commit, then grants)', async () => {
    const one = await emptyDb();
    const two = await emptyDb();
    const prefix = `rr${run}`;
    const roles = [`${prefix}_publisher`, `${prefix}_worker`, `${prefix}_admin`];
    expect(await migrateAt(one.url)).toEqual(allVersions);
    expect(await migrateAt(two.url)).toEqual(allVersions);
    const first = new pg.Client({ connectionString: one.url });
    await first.connect();
    try {
      // The first database's migrate has made the roles, not yet committed.
      await first.query('begin');
      await first.query('select jobs.create_roles($1)', [prefix]);
      const second = migrateAt(two.url, { roles: prefix });
      const waiting = async () => (await first.query<{ n: number }>(
        `select count(*)::int as n from pg_locks where locktype = 'transactionid' and not granted`)).rows[0]!.n;
      while (await waiting() < 1) await new Promise((r) => setTimeout(r, 20));
      await first.query('commit');
      expect(await second).toEqual([]);
      expect(await withClient(two.url, async (c) => (await c.query(
        `select has_function_privilege($1, 'jobs.consume(integer, timestamptz, text)', 'execute') as ok`, [roles[1]])).rows))
        .toEqual([{ ok: true }]);
    } finally {
      await first.end();
      for (const { url } of [one, two]) await withClient(url, (c) => c.query(`drop owned by ${roles.join(', ')}`));
      await withClient(one.url, (c) => c.query(`drop role ${roles.join(', ')}`));
    }
  });
});
