// An upgrade migrated without --roles: the functions it makes are
// executable by PUBLIC as made, so migrate gives the roles an earlier
// --roles made in this database their grants again (jobs.create_roles for
// each prefix whose three roles have USAGE on schema jobs), not those of a
// prefix made for another database of the cluster.
import { describe, expect, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { migrations } from '../src/generated/sql.js';
import { migrate } from '../src/migrate.js';
import { publish } from '../src/publish.js';
import { emptyDb, withClient } from './support/db.js';

const latest = migrations[migrations.length - 1]!;
// Roles are cluster-wide: prefixes of this run's own.
const run = Date.now().toString(36);

async function migrateAt(url: string, options: { roles?: string } = {}): Promise<number[]> {
  const driver = pgDriver(url);
  try {
    return await migrate(driver, options);
  } finally {
    await driver.close();
  }
}

/** Who may execute the latest migration's functions: PUBLIC, and each role given. */
const executable = (url: string, roles: string[]) => withClient(url, async (c) => (await c.query<{ who: string; ok: boolean }>(
  `select w.who, bool_and(has_function_privilege(w.who, p.oid, 'execute')) as ok
   from unnest($1::text[]) w(who), pg_proc p where p.pronamespace = 'jobs'::regnamespace and p.proname = any($2::text[])
   group by w.who order by w.who`,
  [['public', ...roles], [...latest.sql.matchAll(/create function jobs\.(\w+)/g)].map((m) => m[1])])).rows);

describe('migrate without --roles after an upgrade', () => {
  it('takes EXECUTE on the new functions from PUBLIC and grants the existing roles theirs', async () => {
    const { url } = await emptyDb();
    const mine = `ug${run}`;
    const other = `uo${run}`;
    const roles = (p: string) => [`${p}_admin`, `${p}_publisher`, `${p}_worker`];
    await migrateAt(url, { roles: mine });
    // Another database's roles: they exist in the cluster, with no USAGE on this schema.
    await withClient(url, (c) => c.query(roles(other).map((r) => `create role ${r} nologin;`).join('')));
    try {
      // The latest migration not applied yet (its functions dropped, its record taken out): an upgrade.
      await withClient(url, async (c) => {
        const { rows } = await c.query<{ f: string }>(`select p.oid::regprocedure::text as f from pg_proc p
          where p.pronamespace = 'jobs'::regnamespace and p.proname = any($1::text[])`,
        [[...latest.sql.matchAll(/create function jobs\.(\w+)/g)].map((m) => m[1])]);
        expect(rows.length).toBeGreaterThan(0);
        await c.query(`${rows.map((r) => `drop function ${r.f};`).join('')} delete from jobs.migration where version = ${latest.version}`);
      });
      expect(await migrateAt(url)).toEqual([latest.version]);
      expect(await executable(url, [...roles(mine), ...roles(other)])).toEqual([
        { who: `${mine}_admin`, ok: true }, { who: `${mine}_publisher`, ok: false }, { who: `${mine}_worker`, ok: false },
        { who: 'public', ok: false },
        { who: `${other}_admin`, ok: false }, { who: `${other}_publisher`, ok: false }, { who: `${other}_worker`, ok: false },
      ].sort((a, b) => a.who.localeCompare(b.who)));
      // The other prefix was not made into roles of this database: no USAGE given.
      expect(await withClient(url, async (c) => (await c.query(
        `select has_schema_privilege($1, 'jobs', 'usage') as u`, [`${other}_worker`])).rows)).toEqual([{ u: false }]);
    } finally {
      await withClient(url, (c) => c.query(`drop schema jobs cascade; drop owned by ${roles(mine).join(', ')};
        drop role ${[...roles(mine), ...roles(other)].join(', ')}`));
    }
  });
});

describe('migrate without --roles after an upgrade, where --roles never ran', () => {
  it("leaves roles a team made by hand under such names, and PUBLIC's EXECUTE, as they were", async () => {
    const { url } = await emptyDb();
    const hand = `uh${run}`;
    const roles = [`${hand}_admin`, `${hand}_publisher`, `${hand}_worker`];
    await migrateAt(url);
    // A team's own roles (a read-only admin among them) and a login that publishes through PUBLIC's EXECUTE.
    await withClient(url, (c) => c.query(`${roles.map((r) => `create role ${r} nologin;`).join('')}
      create role ${hand}_api login; grant usage on schema jobs to ${[...roles, `${hand}_api`].join(', ')};
      grant select on jobs.job to ${hand}_admin`));
    try {
      await withClient(url, async (c) => {
        const { rows } = await c.query<{ f: string }>(`select p.oid::regprocedure::text as f from pg_proc p
          where p.pronamespace = 'jobs'::regnamespace and p.proname = any($1::text[])`,
        [[...latest.sql.matchAll(/create function jobs\.(\w+)/g)].map((m) => m[1])]);
        await c.query(`${rows.map((r) => `drop function ${r.f};`).join('')} delete from jobs.migration where version = ${latest.version}`);
      });
      expect(await migrateAt(url)).toEqual([latest.version]);
      const api = new URL(url);
      api.username = `${hand}_api`;
      const driver = pgDriver(api.href);
      try {
        expect(await publish(driver, 'uh.one', null, { delaySeconds: 60 })).toMatch(/^\d+$/);
      } finally {
        await driver.close();
      }
      expect(await withClient(url, async (c) => (await c.query(
        `select has_table_privilege($1, 'jobs.job', 'delete') as d, has_function_privilege('public', 'jobs.create_roles(text)', 'execute') as p`,
        [`${hand}_admin`])).rows)).toEqual([{ d: false, p: true }]);
    } finally {
      await withClient(url, (c) => c.query(`drop schema jobs cascade; drop owned by ${roles.join(', ')}, ${hand}_api;
        drop role ${[...roles, `${hand}_api`].join(', ')}`));
    }
  });
});

describe('migrate without --roles after an upgrade, where --roles ran for another prefix', () => {
  it("leaves a team's hand-made roles of their own prefix as they were", async () => {
    const { url } = await emptyDb();
    const mine = `um${run}`;
    const hand = `un${run}`;
    const made = [`${mine}_admin`, `${mine}_publisher`, `${mine}_worker`];
    const roles = [`${hand}_admin`, `${hand}_publisher`, `${hand}_worker`];
    await migrateAt(url, { roles: mine });
    // Beside the roles --roles made, a team's own three (a read-only admin among them).
    await withClient(url, (c) => c.query(`${roles.map((r) => `create role ${r} nologin;`).join('')}
      grant usage on schema jobs to ${roles.join(', ')}; grant select on jobs.job to ${hand}_admin`));
    try {
      await withClient(url, async (c) => {
        const { rows } = await c.query<{ f: string }>(`select p.oid::regprocedure::text as f from pg_proc p
          where p.pronamespace = 'jobs'::regnamespace and p.proname = any($1::text[])`,
        [[...latest.sql.matchAll(/create function jobs\.(\w+)/g)].map((m) => m[1])]);
        await c.query(`${rows.map((r) => `drop function ${r.f};`).join('')} delete from jobs.migration where version = ${latest.version}`);
      });
      expect(await migrateAt(url)).toEqual([latest.version]);
      // --roles' own prefix got its grants again; the hand-made admin got no DML.
      expect(await withClient(url, async (c) => (await c.query(
        `select has_table_privilege($1, 'jobs.job', 'delete') as hand, has_table_privilege($2, 'jobs.job', 'delete') as made`,
        [`${hand}_admin`, `${mine}_admin`])).rows)).toEqual([{ hand: false, made: true }]);
      expect(await executable(url, [`${mine}_admin`])).toEqual([{ who: 'public', ok: false }, { who: `${mine}_admin`, ok: true }]);
    } finally {
      await withClient(url, (c) => c.query(`drop schema jobs cascade; drop owned by ${[...made, ...roles].join(', ')};
        drop role ${[...made, ...roles].join(', ')}`));
    }
  });
});
