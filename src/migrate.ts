import type { Driver, Queryable } from './db/driver.js';
import { PgDrainError, translateError, ValidationError } from './errors.js';
import { type Migration, migrations } from './generated/sql.js';
import { foreignCheck, record, regrant, rolesRan, schemaCheck } from './migrate-statements.js';
import { refuseUnknownOptions } from './peer-options.js';

// Any fixed number: all pgdrain migrators in one database take this lock.
const LOCK_ID = 7_360_372_011;

/**
 * The highest migration version this build knows. A pure call, so that a
 * bundle that never migrates drops the migrations' SQL (esbuild keeps a
 * property read at the top level).
 */
export const latestVersion: number = /* @__PURE__ */ (() => migrations.length)();

export interface MigrateOptions {
  /**
   * Also create the NOLOGIN roles <prefix>_publisher, _worker and _admin with
   * their grants (jobs.create_roles; needs CREATEROLE). true = prefix 'pgdrain'.
   */
  roles?: boolean | string;
}

/** A roles prefix jobs.create_roles accepts. */
export const ROLE_PREFIX = /^[a-z_][a-z0-9_]{0,40}$/;

/** migrate()'s options. */
const MIGRATE_OPTIONS = new Set(['roles']);

/**
 * Applies pending migrations in one transaction under an advisory lock, so
 * two migrators started together apply each version once. Idempotent.
 * Returns the versions it applied. Refuses, applying nothing, a database
 * whose applied migrations are not this build's (another name or text under
 * the same version): a migration never changes once released, so such a
 * database was migrated by a pre-release build and its functions may differ.
 */
export async function migrate(driver: Driver, options: MigrateOptions = {}): Promise<number[]> {
  refuseUnknownOptions(options, MIGRATE_OPTIONS, 'migrate');
  const roles = options.roles === true ? 'pgdrain' : options.roles === false ? undefined : options.roles;
  // Checked before any work, as jobs.create_roles checks it.
  if (roles !== undefined && (typeof roles !== 'string' || !ROLE_PREFIX.test(roles))) {
    throw new ValidationError('roles', `must be true or a lower-case identifier of at most 41 characters (the roles' prefix), got ${JSON.stringify(roles)}`);
  }
  try {
    return await driver.transaction(async (tx) => {
      // Under a database default of repeatable read or serializable, the lock
      // statement's snapshot would predate the migrator it waited for.
      await tx.query('set transaction isolation level read committed');
      await tx.query('select pg_advisory_xact_lock($1)', [LOCK_ID]);
      // Nothing to do (every migration applied, its checksum recorded, no
      // --roles), for a role that may read the record but not create in the
      // schema or the database (an application's login): done on the record
      // alone, with no ownership check (it changes nothing). A record that is
      // not this build's is refused as below.
      const before = await readRecord(tx);
      if (before !== undefined) {
        checkRecord(before);
        if (roles === undefined && migrations.every((m) => typeof before.get(m.version)?.checksum === 'string')) return [];
      }
      await tx.query(`${schemaCheck}\n${foreignCheck}\n${record}`);
      const { rows } = await tx.query<AppliedRow>('select version, name, checksum from jobs.migration');
      const done = checkRecord(new Map(rows.map((r) => [Number(r.version), r])));
      const unrecorded = migrations.filter((m) => done.get(m.version)?.checksum === null);
      if (unrecorded.length > 0) {
        await tx.query(`update jobs.migration m set checksum = c.checksum
          from unnest($1::integer[], $2::text[]) as c(version, checksum)
          where m.version = c.version and m.checksum is null`,
        [unrecorded.map((m) => m.version), unrecorded.map((m) => m.checksum)]);
      }
      const regrants = migrations.some((m) => !done.has(m.version))
        && (await tx.query<{ ran: boolean | null }>(rolesRan)).rows[0]?.ran === true;
      const applied: number[] = [];
      for (const m of migrations) {
        if (done.has(m.version)) continue;
        await tx.query(m.sql);
        await tx.query('insert into jobs.migration (version, name, checksum) values ($1, $2, $3)',
          [m.version, m.name, m.checksum]);
        applied.push(m.version);
      }
      // An upgrade's new functions are executable by PUBLIC as made: the roles
      // an earlier --roles made get their grants again, --roles given or not.
      if (applied.length > 0 && regrants) await tx.query(regrant);
      // Every run, so functions added by an upgrade get their grants.
      if (roles !== undefined) await tx.query('select jobs.create_roles($1)', [roles]);
      return applied;
    });
  } catch (error) {
    const e = translateError(error);
    if (e instanceof PgDrainError) throw e;
    throw new PgDrainError('migration_failed', `migration failed: ${(error as Error).message}`, { cause: error });
  }
}

export interface AppliedRow { version: number; name: string; checksum: string | null }

/**
 * jobs.migration's rows, or undefined when this role cannot read them: no
 * such table with pgdrain's columns (foreignCheck's and checksum), or no
 * USAGE on the schema or SELECT on it (the checks of the full path then say
 * what is wrong). Undefined too for a role that may create in the database
 * or the schema (an owner, an installer, a superuser): the full path's
 * ownership checks are for it, or a stranger who made schema jobs (or
 * jobs.migration in it) first, its record faking every version, would pass
 * for an install, its functions then called as that role. From the catalog
 * first, as schemaCheck: to_regclass would need USAGE on the schema.
 */
async function readRecord(tx: Queryable): Promise<Map<number, AppliedRow> | undefined> {
  const { rows: [probe] } = await tx.query<{ readable: boolean }>(
    `select pg_catalog.has_schema_privilege(n.oid, 'USAGE') and pg_catalog.has_table_privilege(c.oid, 'SELECT')
            and not pg_catalog.has_schema_privilege(n.oid, 'CREATE')
            and not pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE')
            and (select count(*) from pg_catalog.pg_attribute a
                 where a.attrelid = c.oid and not a.attisdropped
                   and (a.attname, a.atttypid) in (('version', 'integer'::regtype), ('name', 'text'::regtype),
                                                   ('applied_at', 'timestamptz'::regtype),
                                                   ('checksum', 'text'::regtype))) = 4 as readable
     from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
     where n.nspname = 'jobs' and c.relname = 'migration' and c.relkind = 'r'`);
  if (probe?.readable !== true) return undefined;
  const { rows } = await tx.query<AppliedRow>('select version, name, checksum from jobs.migration');
  return new Map(rows.map((r) => [Number(r.version), r]));
}

/** The record, refused when it is not this build's: a newer version, or another name or text under one. */
export function checkRecord(done: Map<number, AppliedRow>): Map<number, AppliedRow> {
  const newer = [...done.keys()].filter((v) => v > latestVersion);
  if (newer.length > 0) {
    throw new PgDrainError('migration_failed',
      `database schema is at version ${Math.max(...newer)}, newer than this pgdrain (${latestVersion}); upgrade pgdrain`);
  }
  for (const m of migrations) {
    const row = done.get(m.version);
    if (row) checkApplied(row, m);
  }
  return done;
}

function checkApplied(row: AppliedRow, m: Migration): void {
  const differs = row.name !== m.name ? `name ${row.name}`
    : row.checksum !== null && row.checksum !== m.checksum ? `checksum ${row.checksum.slice(0, 12)}`
    : undefined;
  if (differs === undefined) return;
  throw new PgDrainError('migration_failed',
    `database has migration ${m.version} with ${differs}, not this pgdrain's ${m.file} ` +
    `(checksum ${m.checksum.slice(0, 12)}): it was migrated by a build whose ${m.file} differed (a pre-release ` +
    `pgdrain, or the file edited after it was applied), which this one cannot upgrade; migrate a new database, ` +
    `or drop schema jobs (losing every job and schedule in it) and migrate again`);
}

/**
 * The whole schema as one SQL script, for teams that run their own
 * migration tool. Running it on a database pgdrain already migrated fails on
 * the first existing object; use `pgdrain migrate` there, or give `applied`
 * (migrate-pending.ts): the script then holds the others only, and the roles'
 * grants again with `regrants`, as migrate() would run them.
 */
export function migrationSql(plan: { applied?: ReadonlySet<number>; regrants?: boolean } = {}): string {
  const parts = migrations.filter((m) => !plan.applied?.has(m.version)).map((m) =>
    `-- ${m.file}\n${m.sql.trim()}\n` +
    `insert into jobs.migration (version, name, checksum) values (${m.version}, '${m.name}', '${m.checksum}');\n`);
  return `begin;\nset transaction isolation level read committed;\nselect pg_advisory_xact_lock(${LOCK_ID});\n${schemaCheck}\n${record}\n${appliedGuard(plan.applied)}\n`
    + `${parts.join('\n')}${plan.regrants ? `${regrant};\n` : ''}commit;\n`;
}

// A script printed for a database with some migrations applied (--pending)
// holds only the rest: run on one whose jobs.migration has others, it would
// skip some (no insert conflicts) or fail halfway. It stops first instead.
function appliedGuard(applied: ReadonlySet<number> | undefined): string {
  if (!applied?.size) return '';
  const versions = [...applied].sort((a, b) => a - b);
  return `do $$ begin
  if (select pg_catalog.array_agg(version order by version) from jobs.migration) is distinct from '{${versions.join(',')}}'::integer[] then
    raise exception 'this script was printed for a database with migrations ${versions.length === versions.at(-1) ? `1-${versions.length}` : versions.join(', ')} applied, not this one: print it again, pgdrain migrate --print --pending' using errcode = '55000';
  end if;
end $$;
`;
}
