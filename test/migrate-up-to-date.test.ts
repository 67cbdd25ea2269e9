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

describe('an install migrated before jobs.migration was readable by PUBLIC', () => {
  it("is given the grant by the owner's next migrate, with nothing to apply: then the login's migrate is up to date", async () => {
    const { url } = await emptyDb();
    expect(await migrateAt(url)).toEqual(allVersions);
    const login = `${app}g`;
    await withClient(url, (c) => c.query(`revoke select on jobs.migration from public;
      create role ${login} login; grant usage on schema jobs to ${login}`));
    try {
      expect(await migrateAt(url)).toEqual([]);
      expect(await migrateAt(as(url, login))).toEqual([]);
    } finally {
      await withClient(url, (c) => c.query(`drop schema jobs cascade; drop role ${login}`));
    }
  });
});

// A stranger (a role that may create in the database, or in a schema jobs
// made for the installer) who makes schema jobs, or jobs.migration in it,
// before pgdrain is installed, its record faking every version with this
// build's checksums: the ownership checks of a full migrate refuse it to the
// installer and to a superuser, which would call its functions as itself.
// The up-to-date path must not skip them for such a role.
describe('migrate over a record a stranger made', () => {
  const stranger = `st${Date.now().toString(36)}`;
  const installer = `in${Date.now().toString(36)}`;
  const fake = (url: string) => withClient(as(url, stranger), async (c) => {
    await c.query(`create table jobs.migration (version integer primary key, name text not null,
                     applied_at timestamptz not null default now(), checksum text)`);
    await c.query('grant select on jobs.migration to public');
    await c.query(`insert into jobs.migration (version, name, checksum) select * from unnest($1::int[], $2::text[], $3::text[])`,
      [allVersions, migrations.map((m) => m.name), migrations.map((m) => m.checksum)]);
  });
  const refused = (role: string) => ({ name: 'PgDrainError', code: 'permission_denied',
    message: `schema jobs was migrated by role ${stranger}, which ${role} is not a member of: migrate as that role (or a member of it)` });

  it('is refused to a role that may create in the database or the schema, as a full migrate refuses it', async () => {
    const { url, name } = await emptyDb();
    await withClient(url, (c) => c.query(`create role ${stranger} login; create role ${installer} login;
      grant create on database ${name} to ${stranger}, ${installer}`));
    try {
      // The stranger's own schema jobs.
      await withClient(as(url, stranger), (c) => c.query('create schema jobs; grant usage on schema jobs to public'));
      await fake(url);
      expect(await migrateAt(url)).toMatchObject(refused('postgres'));
      expect(await migrateAt(as(url, installer))).toMatchObject(refused(installer));

      // A schema jobs a superuser made for the installer (no CREATE on the database), which a stranger may create in too.
      await withClient(url, (c) => c.query(`drop schema jobs cascade; revoke create on database ${name} from ${installer};
        create schema jobs; grant usage, create on schema jobs to ${installer}, ${stranger}`));
      await fake(url);
      expect(await migrateAt(as(url, installer))).toMatchObject(refused(installer));
      expect(await withClient(url, async (c) => (await c.query(`select to_regclass('jobs.job') as t`)).rows)).toEqual([{ t: null }]);
    } finally {
      await withClient(url, (c) => c.query(`drop schema if exists jobs cascade;
        revoke create on database ${name} from ${stranger}, ${installer}; drop role ${stranger}, ${installer}`));
    }
  });

  it("another tool's jobs.migration (no applied_at) is not taken for pgdrain's record: no advice to drop the schema", async () => {
    const { url } = await emptyDb();
    await withClient(url, (c) => c.query(`create role ${app}x login; create schema jobs;
      create table jobs.migration (version integer primary key, name text not null, checksum text, run_on timestamptz);
      insert into jobs.migration (version, name) values (1, 'create_users');
      grant usage on schema jobs to ${app}x; grant select on jobs.migration to ${app}x`));
    try {
      const error = await migrateAt(as(url, `${app}x`));
      expect(error).toMatchObject({ name: 'PgDrainError', code: 'permission_denied',
        message: `schema jobs was migrated by role postgres, which ${app}x is not a member of: migrate as that role (or a member of it)` });
      expect(await migrateAt(url)).toMatchObject({ name: 'PgDrainError',
        message: expect.stringContaining("schema jobs holds a table jobs.migration without pgdrain's columns") });
    } finally {
      await withClient(url, (c) => c.query(`drop schema jobs cascade; drop role ${app}x`));
    }
  });
});
