import { resolve } from 'node:path';
import type { Driver } from '../db/driver.js';
import { pgDriver } from '../db/pg.js';
import { PgDrainError } from '../errors.js';

export interface Connection {
  driver: Driver;
  /** Where the embedded database lives, when one is used. */
  embeddedDir?: string;
}

/** The URL connect() uses: the DSN argument, else DATABASE_URL; undefined means the embedded database. */
export function databaseUrl(dsn: string | undefined): string | undefined {
  return dsn || process.env.DATABASE_URL || undefined;
}

/**
 * A DSN argument wins, then DATABASE_URL; with neither, the embedded
 * PostgreSQL (PGlite) in PGDRAIN_DATA_DIR or ./.pgdrain, migrated on open
 * because nobody else manages it.
 */
export async function connect(dsn: string | undefined, log: (line: string) => void): Promise<Connection> {
  const url = databaseUrl(dsn);
  if (url) return { driver: pgDriver(url, { max: 20 }) };
  const dir = resolve(process.env.PGDRAIN_DATA_DIR || '.pgdrain');
  log(`pgdrain: no DSN or DATABASE_URL; using the embedded PostgreSQL (PGlite) in ${dir}`);
  // Loaded only here: PGlite is a large module, and most runs have a DSN.
  const { pgliteDriver } = await import('../db/pglite.js');
  const driver = await pgliteDriver(dir);
  const { migrate } = await import('../migrate.js');
  try {
    await migrate(driver);
  } catch (error) {
    await driver.close();
    // Nobody migrates this database but pgdrain: say where it is to start over.
    if (!(error instanceof PgDrainError) || error.code !== 'migration_failed') throw error;
    throw new PgDrainError('migration_failed',
      `${error.message} (the embedded database is ${dir}: remove that directory to start over)`, { cause: error });
  }
  return { driver, embeddedDir: dir };
}
