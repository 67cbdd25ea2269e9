import type { Driver, Queryable } from './db/driver.js';
import { PgDrainError, translateError, ValidationError } from './errors.js';
import { type Migration, migrations } from './generated/sql.js';

// Any fixed number: all pgdrain migrators in one database take this lock.
const LOCK_ID = 7_360_372_011;

// checksum: the SHA-256 of the migration's text (null in databases migrated
// before pgdrain recorded it; the next migrate() fills it in). The column is
// added only where it is missing: an ALTER on every run would take the
// table's strongest lock and need its owner each time.
// A schema jobs made beforehand by another role (one that may create
// schemas in the database) would stay that role's: as its owner it may drop
// and replace every function made in it, which the application, often a
// superuser, then calls as itself. So the schema must be this role's (a
// member of its owner) or a superuser's (one made by the database's admin).
// The schema is created only where it is missing: create schema if not
// exists needs CREATE on the database even when the schema is there, which
// its owner may lack (an admin made it with create schema jobs authorization
// <role>, or took the database's CREATE back after the install). A role
// that may not use the schema (a superuser made it and granted nothing) is
// told whose it is and what to do, not 'permission denied for schema jobs'.
const schemaCheck = `do $$ begin
  if pg_catalog.to_regnamespace('jobs') is null then
    create schema jobs;
  end if;
exception when insufficient_privilege then
  raise exception 'creating schema jobs needs CREATE on database %: grant it to %, or have an admin run create schema jobs authorization %',
    pg_catalog.current_database(), pg_catalog.quote_ident(current_user), pg_catalog.quote_ident(current_user) using errcode = '42501';
end $$;
do $$
declare
  -- This role and those it is a member of, read from the catalog: pg_has_role says yes to a superuser for any role.
  v_roles oid[] := (with recursive m(id) as (select r.oid from pg_catalog.pg_roles r where r.rolname = current_user
                                             union select a.roleid from pg_catalog.pg_auth_members a join m on a.member = m.id)
                    select pg_catalog.array_agg(m.id) from m);
  v_super boolean := (select r.rolsuper from pg_catalog.pg_roles r where r.rolname = current_user);
  -- Read from the catalog, not with to_regclass: that needs USAGE on the schema, which a role may lack
  -- (a superuser migrated it and granted none), and would answer a bare 'permission denied for schema jobs'.
  v_owner oid := (select c.relowner from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                  where n.nspname = 'jobs' and c.relname = 'migration');
begin
  -- pgdrain's schema, migrated by another role (a worker's login, or a superuser upgrading the application's
  -- install): told whose it is, not that the schema is a stranger's.
  if v_owner is not null and v_owner <> all(v_roles)
     and not (v_super and (select r.rolsuper from pg_catalog.pg_roles r where r.oid = v_owner)) then
    raise exception 'schema jobs was migrated by role %, which % is not a member of: migrate as that role (or a member of it)',
      v_owner::regrole, current_user using errcode = '42501';
  end if;
  if not exists (select 1 from pg_catalog.pg_namespace n join pg_catalog.pg_roles r on r.oid = n.nspowner
                 where n.nspname = 'jobs' and (r.rolsuper or n.nspowner = any(v_roles))) then
    raise exception 'schema jobs belongs to role %, which % is not a member of: that role could replace the functions made in it; have a superuser drop the schema (if it holds nothing of yours), or migrate as its owner',
      (select n.nspowner::regrole from pg_catalog.pg_namespace n where n.nspname = 'jobs'), current_user using errcode = '42501';
  end if;
  -- A superuser's schema (made for this role, or its own install's) that this role may not use or create in.
  if not (pg_catalog.has_schema_privilege('jobs', 'USAGE') and pg_catalog.has_schema_privilege('jobs', 'CREATE')) then
    raise exception 'schema jobs belongs to role %, which gives % no USAGE and CREATE on it: have it grant them (grant usage, create on schema jobs to %) or run alter schema jobs owner to %',
      (select n.nspowner::regrole from pg_catalog.pg_namespace n where n.nspname = 'jobs'), current_user,
      pg_catalog.quote_ident(current_user), pg_catalog.quote_ident(current_user) using errcode = '42501';
  end if;
end $$;`;

// Another tool's schema jobs: pgdrain would make its tables beside theirs,
// or take their jobs.migration for its own record (adding a column to it,
// writing its versions in it). One without pgdrain's record must be empty;
// a record must have pgdrain's columns. migrate() and --print --pending only: a team's own tool
// running migrationSql() may keep its history in the schema it migrates.
export const foreignCheck = `do $$
declare
  v_found text;
begin
  if pg_catalog.to_regclass('jobs.migration') is null then
    select coalesce((select 'relation jobs.' || c.relname from pg_catalog.pg_class c
                     where c.relnamespace = 'jobs'::regnamespace order by c.relname limit 1),
                    (select 'routine ' || p.oid::regprocedure::text from pg_catalog.pg_proc p
                     where p.pronamespace = 'jobs'::regnamespace limit 1),
                    (select 'type jobs.' || t.typname from pg_catalog.pg_type t
                     where t.typnamespace = 'jobs'::regnamespace limit 1))
    into v_found;
  elsif (select count(*) from pg_catalog.pg_attribute a
         where a.attrelid = pg_catalog.to_regclass('jobs.migration') and not a.attisdropped
           and (a.attname, a.atttypid) in (('version', 'integer'::regtype), ('name', 'text'::regtype),
                                           ('applied_at', 'timestamptz'::regtype))) < 3 then
    v_found := 'a table jobs.migration without pgdrain''s columns (version integer, name text, applied_at timestamptz)';
  end if;
  if v_found is not null then
    raise exception 'schema jobs holds % that pgdrain did not make (another tool''s?): pgdrain needs schema jobs to itself; move that tool''s schema (alter schema jobs rename to ...) or install pgdrain in another database',
      v_found using errcode = '42P07';
  end if;
end $$;`;

// Readable by PUBLIC (a role still needs USAGE on the schema): versions,
// names and checksums, no job; so a role that may not create in the schema
// (an application's login running migrate on every start) can see that
// there is nothing to do (readRecord, below).
const record = `create table if not exists jobs.migration (
  version    integer primary key,
  name       text not null,
  applied_at timestamptz not null default now(),
  checksum   text
);
grant select on jobs.migration to public;
do $$ begin
  if not exists (select 1 from pg_attribute
                 where attrelid = 'jobs.migration'::regclass and attname = 'checksum' and not attisdropped) then
    alter table jobs.migration add column checksum text;
  end if;
end $$;`;

// The prefixes jobs.create_roles ran with in this database: its three roles
// exist and each was granted USAGE on schema jobs (roles of the same prefix
// made for another database of the cluster have none on this one). Run
// again for each: new routines lose PUBLIC's EXECUTE and get the roles'.
// Only where it ran (rolesRan), and only for the prefixes it ran with: its
// worker has its column grant on jobs.job_queue (select (job_id), which it
// alone makes). Roles a team made and granted by hand under such names are
// not create_roles' to change (their _admin would get DML on every table).
const regrant = `select jobs.create_roles(p.prefix)
from (select pg_catalog.left(r.rolname, -6) as prefix from pg_catalog.pg_roles r where r.rolname like '%\\_admin') p
where p.prefix ~ '^[a-z_][a-z0-9_]{0,40}$'
  and (select count(distinct g.rolname) from pg_catalog.pg_namespace n
         cross join pg_catalog.aclexplode(n.nspacl) a join pg_catalog.pg_roles g on g.oid = a.grantee
       where n.nspname = 'jobs' and a.privilege_type = 'USAGE'
         and g.rolname in (p.prefix || '_publisher', p.prefix || '_worker', p.prefix || '_admin')) = 3
  and exists (select 1 from pg_catalog.pg_attribute a, pg_catalog.aclexplode(a.attacl) x, pg_catalog.pg_roles w
              where a.attrelid = 'jobs.job_queue'::regclass and a.attname = 'job_id' and x.privilege_type = 'SELECT'
                and w.rolname = p.prefix || '_worker' and x.grantee = w.oid)`;

// Whether jobs.create_roles ran in this database, read before an upgrade:
// it takes PUBLIC's EXECUTE on every routine of the schema, its own
// included, which no migration takes.
export const rolesRan = `select not pg_catalog.has_function_privilege('public', p, 'EXECUTE') as ran
from pg_catalog.to_regprocedure('jobs.create_roles(text)') p`;

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

/**
 * Applies pending migrations in one transaction under an advisory lock, so
 * two migrators started together apply each version once. Idempotent.
 * Returns the versions it applied. Refuses, applying nothing, a database
 * whose applied migrations are not this build's (another name or text under
 * the same version): a migration never changes once released, so such a
 * database was migrated by a pre-release build and its functions may differ.
 */
export async function migrate(driver: Driver, options: MigrateOptions = {}): Promise<number[]> {
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
