import type { Driver } from './db/driver.js';
import { PgDrainError, translateError } from './errors.js';
import { migrations } from './generated/sql.js';

// Any fixed number: all pgdrain migrators in one database take this lock.
const LOCK_ID = 7_360_372_011;

const bootstrap = `create schema if not exists jobs;
create table if not exists jobs.migration (
  version    integer primary key,
  name       text not null,
  applied_at timestamptz not null default now()
);`;

/** The highest migration version this build knows. */
export const latestVersion = migrations.length;

export interface MigrateOptions {
  /**
   * Also create the NOLOGIN roles <prefix>_publisher, _worker and _admin with
   * their grants (jobs.create_roles; needs CREATEROLE). true = prefix 'pgdrain'.
   */
  roles?: boolean | string;
}

/**
 * Applies pending migrations in one transaction under an advisory lock, so
 * two migrators started together apply each version once. Idempotent.
 * Returns the versions it applied.
 */
export async function migrate(driver: Driver, options: MigrateOptions = {}): Promise<number[]> {
  const roles = options.roles === true ? 'pgdrain' : options.roles || undefined;
  try {
    return await driver.transaction(async (tx) => {
      await tx.query('select pg_advisory_xact_lock($1)', [LOCK_ID]);
      await tx.query(bootstrap);
      const { rows } = await tx.query<{ version: number }>('select version from jobs.migration');
      const done = new Set(rows.map((r) => Number(r.version)));
      const newer = [...done].filter((v) => v > latestVersion);
      if (newer.length > 0) {
        throw new PgDrainError('migration_failed',
          `database schema is at version ${Math.max(...newer)}, newer than this pgdrain (${latestVersion}); upgrade pgdrain`);
      }
      const applied: number[] = [];
      for (const m of migrations) {
        if (done.has(m.version)) continue;
        await tx.query(m.sql);
        await tx.query('insert into jobs.migration (version, name) values ($1, $2)', [m.version, m.name]);
        applied.push(m.version);
      }
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

/**
 * The whole schema as one SQL script, for teams that run their own
 * migration tool. Running it on a database pgdrain already migrated fails on
 * the first existing object; use `pgdrain migrate` there.
 */
export function migrationSql(): string {
  const parts = migrations.map((m) =>
    `-- ${String(m.version).padStart(4, '0')}_${m.name}.sql\n${m.sql.trim()}\n` +
    `insert into jobs.migration (version, name) values (${m.version}, '${m.name}');\n`);
  return `begin;\nselect pg_advisory_xact_lock(${LOCK_ID});\n${bootstrap}\n\n${parts.join('\n')}commit;\n`;
}
