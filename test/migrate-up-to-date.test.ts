// migrate with nothing to do, as a deploy step runs it on every start
// (Kubernetes init containers, Supabase or Neon): the application's login,
// which may use schema jobs but not create in it nor in the database, and
// is no member of its owner. It succeeds, changing nothing; it still
// refuses a record that is not this build's, and anything to apply.
import { describe, expect, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { migrations } from '../src/generated/sql.js';
import { migrate } from '../src/migrate.js';
import { emptyDb, withClient } from './support/db.js';
import { runCli } from './support/drain-process.js';

const allVersions = migrations.map((m) => m.version);
const latest = allVersions[allVersions.length - 1]!;
// Roles are cluster-wide: a name of this run's own.
const app = `app${Date.now().toString(36)}`;

function as(url: string, role: string): string {
  const u = new URL(url);
  u.username = role;
  return u.href;
}

async function migrateAt(url: string): Promise<number[] | Error> {
  const driver = pgDriver(url);
  try {
    return await migrate(driver).catch((e: Error) => e);
  } finally {
    await driver.close();
  }
}

describe('migrate with every migration applied, as a role with only USAGE on schema jobs', () => {
  it('succeeds with no CREATE on the schema or the database; refuses a changed checksum and a pending migration', async () => {
    const { url, name } = await emptyDb();
    expect(await migrateAt(url)).toEqual(allVersions);
    await withClient(url, (c) => c.query(`create role ${app} login; grant usage on schema jobs to ${app}`));
    try {
      expect(await withClient(url, async (c) => (await c.query(
        `select has_schema_privilege($1, 'jobs', 'CREATE') as schema, has_database_privilege($1, $2, 'CREATE') as db`,
        [app, name])).rows)).toEqual([{ schema: false, db: false }]);
      expect(await migrateAt(as(url, app))).toEqual([]);
      // pgdrain migrate, as a deploy step runs it (dist: npm run build first).
      expect(await runCli(as(url, app), 'migrate')).toEqual({ code: 0, stdout: '', stderr: 'pgdrain: schema is up to date\n' });

      // A migration whose text differs from this build's: refused, clearly, as for the owner.
      await withClient(url, (c) => c.query(`update jobs.migration set checksum = repeat('a', 64) where version = 5`));
      const m = migrations[4]!;
      expect(await migrateAt(as(url, app))).toMatchObject({ name: 'PgDrainError', code: 'migration_failed',
        message: expect.stringContaining(`database has migration 5 with checksum aaaaaaaaaaaa, not this pgdrain's ${m.file}`) });
      expect(await runCli(as(url, app), 'migrate')).toMatchObject({ code: 1,
        stderr: expect.stringContaining(`database has migration 5 with checksum aaaaaaaaaaaa, not this pgdrain's ${m.file}`) });
      await withClient(url, (c) => c.query(`update jobs.migration set checksum = $1 where version = 5`, [m.checksum]));

      // Something to apply (the latest version not recorded): the owner's to do, as before.
      await withClient(url, (c) => c.query(`delete from jobs.migration where version = ${latest}`));
      expect(await migrateAt(as(url, app))).toMatchObject({ name: 'PgDrainError', code: 'permission_denied',
        message: `schema jobs was migrated by role postgres, which ${app} is not a member of: migrate as that role (or a member of it)` });
      expect(await withClient(url, async (c) => (await c.query(
        `select count(*)::int as n from jobs.migration`)).rows)).toEqual([{ n: allVersions.length - 1 }]);
    } finally {
      await withClient(url, (c) => c.query(`drop schema jobs cascade; drop role ${app}`));
    }
  });
});
