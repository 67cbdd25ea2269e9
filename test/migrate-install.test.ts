// Installing as a team on managed PostgreSQL would: a login role that is no
// superuser, a schema jobs an admin made for it, another tool's schema
// jobs, a worker that runs migrate by mistake, and migrate --roles in two
// databases of one cluster at once (roles are the cluster's).
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { migrations } from '../src/generated/sql.js';
import { migrate, migrationSql } from '../src/migrate.js';
import { emptyDb, withClient } from './support/db.js';
import { until } from './support/drain-process.js';

const allVersions = migrations.map((m) => m.version);
// Roles are cluster-wide: names of this run's own.
const run = Date.now().toString(36);

function as(url: string, role: string): string {
  const u = new URL(url);
  u.username = role;
  return u.href;
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

const relations = (url: string) => withClient(url, async (c) => (await c.query<{ r: string }>(
  `select relname as r from pg_class where relnamespace = 'jobs'::regnamespace and relkind = 'r' order by relname`)).rows
  .map((row) => row.r));

describe('migrate as a role that is no superuser', () => {
  it('the owner of a schema jobs an admin made for it migrates without CREATE on the database', async () => {
    const { url } = await emptyDb();
    const owner = `own${run}`;
    // As on RDS or Supabase: the admin makes the schema for the application's role;
    // the role may not create schemas (PostgreSQL 15: PUBLIC has no CREATE on a database).
    await withClient(url, (c) => c.query(`create role ${owner} login; create schema jobs authorization ${owner}`));
    try {
      expect(await migrateAt(as(url, owner))).toEqual(allVersions);
      expect(await migrateAt(as(url, owner))).toEqual([]);
    } finally {
      await withClient(url, (c) => c.query(`drop schema jobs cascade; drop role ${owner}`));
    }
  });

  it('a superuser upgrading that role\'s install is told to migrate as it, not to drop the schema', async () => {
    const { url } = await emptyDb();
    const owner = `up${run}`;
    await withClient(url, (c) => c.query(`create role ${owner} login; create schema jobs authorization ${owner}`));
    try {
      expect(await migrateAt(as(url, owner))).toEqual(allVersions);
      const refused = { name: 'PgDrainError', code: 'permission_denied',
        message: `schema jobs was migrated by role ${owner}, which postgres is not a member of: migrate as that role (or a member of it)` };
      // Nothing to do: refused too, as the superuser may create in the schema (the up-to-date
      // path, with no ownership check, is for a role that may not: a stranger's schema would pass).
      expect(await migrateAt(url)).toMatchObject(refused);
      // An upgrade (the latest version not recorded yet) is the owner's.
      await withClient(url, (c) => c.query(`delete from jobs.migration where version = ${allVersions.length}`));
      expect(await migrateAt(url)).toMatchObject(refused);
    } finally {
      await withClient(url, (c) => c.query(`drop schema jobs cascade; drop role ${owner}`));
    }
  });

  it('one without CREATE on the database and no schema made for it is told what to grant', async () => {
    const { url, name } = await emptyDb();
    const owner = `bare${run}`;
    await withClient(url, (c) => c.query(`create role ${owner} login`));
    try {
      expect(await migrateAt(as(url, owner))).toMatchObject({ name: 'PgDrainError', code: 'permission_denied',
        message: `creating schema jobs needs CREATE on database ${name}: grant it to ${owner}, or have an admin run create schema jobs authorization ${owner}` });
    } finally {
      await withClient(url, (c) => c.query(`drop role ${owner}`));
    }
  });

  it('a worker of migrate --roles is told to migrate as the schema\'s owner', async () => {
    const { url, name } = await emptyDb();
    const prefix = `wm${run}`;
    const login = `${prefix}_login`;
    expect(await migrateAt(url, { roles: prefix })).toEqual(allVersions);
    await withClient(url, (c) => c.query(`create role ${login} login in role ${prefix}_worker; grant create on database ${name} to ${login}`));
    try {
      expect(await migrateAt(as(url, login), { roles: prefix })).toMatchObject({ name: 'PgDrainError', code: 'permission_denied',
        message: `schema jobs was migrated by role postgres, which ${login} is not a member of: migrate as that role (or a member of it)` });
    } finally {
      await withClient(url, (c) => c.query(`drop schema jobs cascade; revoke create on database ${name} from ${login};
        drop role ${login}, ${prefix}_publisher, ${prefix}_worker, ${prefix}_admin`));
    }
  });
});

describe('a role that is not a member of the owner of a schema jobs a superuser made', () => {
  it('is told, for an install the superuser migrated, whose it is and to migrate as that role (it could not look in the schema)', async () => {
    const { url } = await emptyDb();
    const login = `nu${run}`;
    expect(await migrateAt(url)).toEqual(allVersions);
    await withClient(url, (c) => c.query(`create role ${login} login`));
    try {
      expect(await migrateAt(as(url, login))).toMatchObject({ name: 'PgDrainError', code: 'permission_denied',
        message: `schema jobs was migrated by role postgres, which ${login} is not a member of: migrate as that role (or a member of it)` });
    } finally {
      await withClient(url, (c) => c.query(`drop schema jobs cascade; drop role ${login}`));
    }
  });

  it('is told, for an empty one the superuser made for it, what to grant; granted, it migrates', async () => {
    const { url } = await emptyDb();
    const login = `ne${run}`;
    await withClient(url, (c) => c.query(`create role ${login} login; create schema jobs`));
    try {
      expect(await migrateAt(as(url, login))).toMatchObject({ name: 'PgDrainError', code: 'permission_denied',
        message: `schema jobs belongs to role postgres, which gives ${login} no USAGE and CREATE on it: have it grant them `
          + `(grant usage, create on schema jobs to ${login}) or run alter schema jobs owner to ${login}` });
      expect(await relations(url)).toEqual([]);
      await withClient(url, (c) => c.query(`grant usage, create on schema jobs to ${login}`));
      expect(await migrateAt(as(url, login))).toEqual(allVersions);
    } finally {
      await withClient(url, (c) => c.query(`drop schema jobs cascade; drop role ${login}`));
    }
  });
});

describe('migrate --print run by a team\'s own tool', () => {
  it('may find that tool\'s history table in schema jobs (Flyway keeps it in the first schema it migrates)', async () => {
    const { url } = await emptyDb();
    await withClient(url, async (c) => {
      await c.query('create schema jobs; create table jobs.flyway_schema_history (installed_rank integer primary key)');
      await c.query(migrationSql());
    });
    expect(await relations(url)).toContain('flyway_schema_history');
    expect(await migrateAt(url)).toEqual([]);
  });
});

describe('migrate --roles as a role without CREATEROLE', () => {
  it('is told to get CREATEROLE or have the roles made for it; with them made, grants them', async () => {
    const { url } = await emptyDb();
    const owner = `cr${run}`;
    const prefix = `nc${run}`;
    const roles = [`${prefix}_publisher`, `${prefix}_worker`, `${prefix}_admin`];
    await withClient(url, (c) => c.query(`create role ${owner} login; create schema jobs authorization ${owner}`));
    try {
      expect(await migrateAt(as(url, owner), { roles: prefix })).toMatchObject({ name: 'PgDrainError', code: 'permission_denied',
        message: `creating role ${roles[0]} needs CREATEROLE: grant it to ${owner}, or have a role that has it create the three roles (create role ${roles[0]} nologin, and so on) and run this again` });
      expect(await relations(url)).toEqual([]);
      await withClient(url, (c) => c.query(roles.map((r) => `create role ${r} nologin;`).join('')));
      expect(await migrateAt(as(url, owner), { roles: prefix })).toEqual(allVersions);
      expect(await withClient(url, async (c) => (await c.query(
        `select has_function_privilege($1, 'jobs.consume(integer, timestamptz, text)', 'execute') as ok`, [roles[1]])).rows))
        .toEqual([{ ok: true }]);
    } finally {
      await withClient(url, (c) => c.query(`drop schema jobs cascade; drop role if exists ${owner}, ${roles.join(', ')}`));
    }
  });
});

describe('another tool\'s schema jobs', () => {
  it('one holding a table jobs.job is refused by name, pgdrain creating nothing in it', async () => {
    const { url } = await emptyDb();
    await withClient(url, (c) => c.query(`create schema jobs; create table jobs.job (id serial primary key, payload text);
      insert into jobs.job (payload) values ('theirs')`));
    expect(await migrateAt(url)).toMatchObject({ name: 'PgDrainError', code: 'migration_failed',
      message: expect.stringContaining('schema jobs holds relation jobs.job that pgdrain did not make (another tool\'s?)') });
    expect(await relations(url)).toEqual(['job']);
  });

  it('its own jobs.migration is not taken for pgdrain\'s record: refused, left as it was', async () => {
    const { url } = await emptyDb();
    await withClient(url, (c) => c.query(`create schema jobs;
      create table jobs.migration (version integer primary key, name text not null, run_on timestamptz default now())`));
    expect(await migrateAt(url)).toMatchObject({ name: 'PgDrainError', code: 'migration_failed',
      message: expect.stringContaining('schema jobs holds a table jobs.migration without pgdrain\'s columns') });
    expect(await relations(url)).toEqual(['migration']);
    expect(await withClient(url, async (c) => (await c.query(
      `select string_agg(attname, ',' order by attnum) as cols, (select count(*)::int from jobs.migration) as n
       from pg_attribute where attrelid = 'jobs.migration'::regclass and attnum > 0`)).rows))
      .toEqual([{ cols: 'version,name,run_on', n: 0 }]);
  });
});

describe('a migration edited after it was applied', () => {
  it('is refused naming the file, both ways it can happen, and what dropping the schema costs', async () => {
    const { url } = await emptyDb();
    expect(await migrateAt(url)).toEqual(allVersions);
    await withClient(url, (c) => c.query(`update jobs.migration set checksum = repeat('a', 64) where version = 5`));
    const m = migrations[4]!;
    expect(await migrateAt(url)).toMatchObject({ name: 'PgDrainError', code: 'migration_failed',
      message: `database has migration 5 with checksum aaaaaaaaaaaa, not this pgdrain's ${m.file} (checksum ${m.checksum.slice(0, 12)}): `
        + `it was migrated by a build whose ${m.file} differed (a pre-release pgdrain, or the file edited after it was applied), `
        + 'which this one cannot upgrade; migrate a new database, or drop schema jobs (losing every job and schedule in it) and migrate again' });
  });
});

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
      let settled = false;
      const second = migrateAt(two.url, { roles: prefix }).finally(() => (settled = true));
      // Until the second database's migrate waits for this transaction's commit, its own xid (pg_locks is
      // the cluster's: any transactionid wait, as another test file's, once let this commit first, the race
      // not run). pg_locks, not pg_stat_activity: this transaction would read the latter's first snapshot.
      const blocked = async () => (await first.query<{ n: number }>(
        `select count(*)::int as n from pg_locks
         where locktype = 'transactionid' and not granted and transactionid = pg_current_xact_id()::xid`)).rows[0]!.n > 0;
      await until(async () => settled || await blocked(), 'the second migrate to wait for the first one\'s commit');
      expect(settled).toBe(false);
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
