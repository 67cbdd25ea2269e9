// migrate() and migrationSql() against real, empty PostgreSQL databases.
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { PgDrainError } from '../src/errors.js';
import { migrations } from '../src/generated/sql.js';
import { latestVersion, migrate, migrationSql } from '../src/migrate.js';
import { emptyDb, withClient } from './support/db.js';

const allVersions = migrations.map((m) => m.version);

interface Recorded { version: number; name: string; checksum: string | null }

async function recorded(url: string): Promise<Recorded[]> {
  return withClient(url, async (c) =>
    (await c.query<Recorded>('select version, name, checksum from jobs.migration order by version')).rows);
}

const shipped = migrations.map((m) => ({ version: m.version, name: m.name, checksum: m.checksum }));

/** migrate()'s error on url, and then what jobs.migration holds. */
async function refusal(url: string): Promise<{ error: unknown; after: Recorded[] }> {
  const driver = pgDriver(url);
  try {
    const error = await migrate(driver).then(() => undefined, (e: unknown) => e);
    return { error, after: await recorded(url) };
  } finally {
    await driver.close();
  }
}

describe('migrate()', () => {
  it('knows at least one migration, numbered 1..latestVersion', () => {
    expect(allVersions.length).toBeGreaterThan(0);
    expect(allVersions).toEqual(Array.from({ length: latestVersion }, (_, i) => i + 1));
  });

  it('applies every version on an empty database and records it; a second run applies nothing', async () => {
    const { url } = await emptyDb();
    const driver = pgDriver(url);
    try {
      expect(await migrate(driver)).toEqual(allVersions);
      expect(await recorded(url)).toEqual(shipped);
      expect(await migrate(driver)).toEqual([]);
      expect((await recorded(url)).map((r) => r.version)).toEqual(allVersions);
      // The schema works after the second run too.
      const { rows } = await driver.query<{ id: string }>(`select jobs.publish('m.ok')::text as id`);
      expect(rows[0]!.id).toMatch(/^\d+$/);
    } finally {
      await driver.close();
    }
  });

  it('refuses, creating nothing, a schema jobs another role made first (its owner could replace the functions); takes a member\'s', async () => {
    const { url, name } = await emptyDb();
    // Roles are cluster-wide: names of this run's own.
    const squatter = `sq${Date.now().toString(36)}`;
    await withClient(url, (c) => c.query(`create role ${squatter} nologin; grant create on database ${name} to ${squatter};
      set role ${squatter}; create schema jobs; reset role`));
    const driver = pgDriver(url);
    try {
      await expect(migrate(driver)).rejects.toMatchObject({
        name: 'PgDrainError', code: 'permission_denied',
        message: expect.stringMatching(new RegExp(`^schema jobs belongs to role ${squatter}, which postgres is not a member of`)) });
      expect(await withClient(url, async (c) => (await c.query(`select to_regclass('jobs.migration') as t`)).rows)).toEqual([{ t: null }]);
      // Its owner's member (the application's role in the owner's group) migrates it.
      await withClient(url, (c) => c.query(`grant ${squatter} to postgres`));
      expect(await migrate(driver)).toEqual(allVersions);
    } finally {
      await driver.close();
      await withClient(url, (c) => c.query(`drop schema jobs cascade; revoke create on database ${name} from ${squatter}; drop role ${squatter}`));
    }
  });

  it.each(['read committed', 'repeatable read', 'serializable'])(
    'two migrators started together on an empty database both succeed, each version recorded once (default isolation %s)',
    async (isolation) => {
    const { url, name } = await emptyDb();
    await withClient(url, (c) => c.query(`alter database ${name} set default_transaction_isolation = '${isolation}'`));
    const a = pgDriver(url);
    const b = pgDriver(url);
    // Hold the migrators' advisory lock so both are provably waiting at once,
    // then let them go together.
    const lockId = /pg_advisory_xact_lock\((\d+)\)/.exec(migrationSql())![1]!;
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    try {
      await holder.query('select pg_advisory_lock($1)', [lockId]);
      const running = Promise.all([migrate(a), migrate(b)]);
      const waiting = async () => (await holder.query<{ n: number }>(
        `select count(*)::int as n from pg_locks where locktype = 'advisory' and not granted
           and database = (select oid from pg_database where datname = current_database())`)).rows[0]!.n;
      while (await waiting() < 2) await new Promise((r) => setTimeout(r, 20));
      await holder.query('select pg_advisory_unlock($1)', [lockId]);
      const [ra, rb] = await running;
      // One of them did all the work, the other found it done.
      expect([ra, rb].sort((x, y) => y.length - x.length)).toEqual([allVersions, []]);
      const counts = await withClient(url, async (c) =>
        (await c.query<{ version: number; n: number }>(
          'select version, count(*)::int as n from jobs.migration group by version order by version')).rows);
      expect(counts).toEqual(allVersions.map((version) => ({ version, n: 1 })));
    } finally {
      await holder.end();
      await a.close();
      await b.close();
    }
  });

  it('every migration is frozen: its text matches its line in sql/checksums.txt', () => {
    const listed = new Map(readFileSync(new URL('../sql/checksums.txt', import.meta.url), 'utf8')
      .split('\n').filter((line) => line && !line.startsWith('#'))
      .map((line) => line.split(' ') as [string, string]));
    for (const m of migrations) {
      expect(listed.has(m.file), `sql/${m.file} is missing from sql/checksums.txt`).toBe(true);
      expect(listed.get(m.file), `sql/${m.file} changed; released migrations never change: add a new one`)
        .toBe(m.checksum);
    }
    expect(listed.size).toBe(migrations.length);
  });

  it('refuses, applying nothing, a database whose applied migration text differs from this build', async () => {
    const { url } = await emptyDb();
    const driver = pgDriver(url);
    try {
      await migrate(driver);
      // Version 1 applied from another text; the latest one pending.
      await driver.query(`update jobs.migration set checksum = repeat('0', 64) where version = 1;
        delete from jobs.migration where version = ${latestVersion}`);
    } finally {
      await driver.close();
    }
    const before = await recorded(url);
    const { error, after } = await refusal(url);
    expect(error).toMatchObject({ name: 'PgDrainError', code: 'migration_failed' });
    expect((error as Error).message).toContain('migration 1 with checksum 000000000000');
    expect((error as Error).message).toContain(`0001_${migrations[0]!.name}.sql (checksum ${migrations[0]!.checksum.slice(0, 12)})`);
    expect(after).toEqual(before);
  });

  it('refuses a database migrated before a renumbering (another name under a version), recording nothing', async () => {
    const { url } = await emptyDb();
    const driver = pgDriver(url);
    try {
      await migrate(driver);
      // As a build from before checksums left it, with version 2 named as it was then.
      await driver.query(`update jobs.migration set checksum = null; update jobs.migration set name = 'claim' where version = 2`);
    } finally {
      await driver.close();
    }
    const { error, after } = await refusal(url);
    expect(error).toMatchObject({ name: 'PgDrainError', code: 'migration_failed' });
    expect((error as Error).message).toContain(`migration 2 with name claim, not this pgdrain's 0002_${migrations[1]!.name}.sql`);
    expect(after.map((r) => r.checksum)).toEqual(migrations.map(() => null));
  });

  it('adds and fills in the checksums of a database migrated before they were recorded', async () => {
    const { url } = await emptyDb();
    const driver = pgDriver(url);
    try {
      await migrate(driver);
      await driver.query('alter table jobs.migration drop column checksum');
      expect(await migrate(driver)).toEqual([]);
      expect(await recorded(url)).toEqual(shipped);
    } finally {
      await driver.close();
    }
  });

  it('fails with migration_failed naming the version when the database is newer than this build', async () => {
    const { url } = await emptyDb();
    const driver = pgDriver(url);
    try {
      await migrate(driver);
      const future = latestVersion + 7;
      await driver.query(`insert into jobs.migration (version, name) values (${future}, 'from_the_future')`);
      const error = await migrate(driver).then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(PgDrainError);
      expect((error as PgDrainError).code).toBe('migration_failed');
      expect((error as PgDrainError).message).toContain(String(future));
      // Nothing was changed by the failed run.
      expect((await recorded(url)).map((r) => r.version)).toEqual([...allVersions, future]);
    } finally {
      await driver.close();
    }
  });

  it('a database that only has a newer version (fresh bootstrap) is refused too', async () => {
    const { url } = await emptyDb();
    const future = latestVersion + 1;
    await withClient(url, (c) => c.query(`create schema jobs;
      create table jobs.migration (version integer primary key, name text not null,
                                   applied_at timestamptz not null default now());
      insert into jobs.migration (version, name) values (${future}, 'next')`));
    const driver = pgDriver(url);
    try {
      const error = await migrate(driver).then(() => undefined, (e: unknown) => e);
      expect(error).toMatchObject({ name: 'PgDrainError', code: 'migration_failed' });
      expect((error as Error).message).toContain(`version ${future}`);
      // No migration ran: the queue tables do not exist.
      const tables = await withClient(url, async (c) =>
        (await c.query(`select to_regclass('jobs.job_queue') as t`)).rows[0]);
      expect(tables).toEqual({ t: null });
    } finally {
      await driver.close();
    }
  });
});

describe('migrationSql() (pgdrain migrate --print)', () => {
  it('run as one psql-like query on an empty database yields a working schema', async () => {
    const { url } = await emptyDb();
    const script = migrationSql();
    expect(script).toContain('create function jobs.publish');
    await withClient(url, async (c) => {
      await c.query(script); // simple query protocol: the whole text at once
      expect((await c.query('select version, name, checksum from jobs.migration order by version')).rows)
        .toEqual(shipped);
      const { rows: [published] } = await c.query<{ id: string }>(
        `select jobs.publish('print.check', '{"x":1}')::text as id`);
      const { rows: claimed } = await c.query<{ job_id: string; task: string; body: unknown; attempt: number }>(
        'select job_id::text, task, body, attempt from jobs.consume(10)');
      expect(claimed).toEqual([{ job_id: published!.id, task: 'print.check', body: { x: 1 }, attempt: 1 }]);
    });
  });

  it('leaves a database migrate() accepts as up to date', async () => {
    const { url } = await emptyDb();
    await withClient(url, (c) => c.query(migrationSql()));
    const driver = pgDriver(url);
    try {
      expect(await migrate(driver)).toEqual([]);
    } finally {
      await driver.close();
    }
  });
});
