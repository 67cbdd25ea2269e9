// `pgdrain migrate --print --pending`: the script of the migrations a
// database has not applied, read from its jobs.migration, for a DBA who
// reviews (or runs by hand) what `pgdrain migrate` would apply to it.
import type { Driver } from './db/driver.js';
import { PgDrainError, translateError } from './errors.js';
import { type AppliedRow, checkRecord, latestVersion, migrationSql } from './migrate.js';
import { foreignCheck, rolesRan } from './migrate-statements.js';

/** The pending versions, and their script (empty when there are none); refuses a record that is not this build's. */
export async function pendingMigrationSql(driver: Driver): Promise<{ pending: number[]; sql: string }> {
  const { rows: [probe] } = await driver.query<{ present: boolean; schema: boolean }>(
    `select pg_catalog.to_regclass('jobs.migration') is not null as present, pg_catalog.to_regnamespace('jobs') is not null as schema`);
  // Another tool's schema jobs: migrate refuses it, so there is nothing it would apply (the check only reads).
  if (probe?.schema) await driver.query(foreignCheck).catch(refused);
  const rows = probe?.present ? (await driver.query<AppliedRow>('select version, name, checksum from jobs.migration')).rows : [];
  const done = checkRecord(new Map(rows.map((r) => [Number(r.version), r])));
  const pending = Array.from({ length: latestVersion }, (_, i) => i + 1).filter((v) => !done.has(v));
  if (pending.length === 0) return { pending, sql: '' };
  // As migrate() reads it before an upgrade: the roles an earlier --roles made get their grants again.
  const regrants = done.size > 0 && (await driver.query<{ ran: boolean | null }>(rolesRan)).rows[0]?.ran === true;
  return { pending, sql: migrationSql({ applied: new Set(done.keys()), regrants }) };
}

function refused(error: unknown): never {
  const e = translateError(error);
  if (e instanceof PgDrainError) throw e;
  throw new PgDrainError('migration_failed', `migration failed: ${(error as Error).message}`, { cause: error });
}
