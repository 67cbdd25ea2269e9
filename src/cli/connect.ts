import { resolve } from 'node:path';
import { pgUrl, UNENCODED_CREDENTIALS_RULE, unencodedCredentials } from '../database-url.js';
import type { Driver } from '../db/driver.js';
import { wholeSeconds } from '../db/pg-pool.js';
import { pgDriver } from '../db/pg.js';
import { PgDrainError, ValidationError } from '../errors.js';
import { lockEmbedded } from './embedded-lock.js';

/** The pool the CLI opens on a database URL (a drain runs up to --concurrency handlers, each may query). */
const openPg = (url: string): Driver => pgDriver(withConnectTimeout(url), { max: 20 });

/**
 * The URL with libpq's PGCONNECT_TIMEOUT as its connect_timeout, when it has
 * none of its own (as psql reads them): pgDriver reads only the URL.
 */
export function withConnectTimeout(url: string): string {
  const seconds = process.env.PGCONNECT_TIMEOUT;
  if (seconds === undefined || seconds === '') return url;
  wholeSeconds('PGCONNECT_TIMEOUT', seconds);
  const parsed = pgUrl(url);
  if (!parsed) return url; // not a URL pg can parse either: it reports that itself
  if (parsed.searchParams.has('connect_timeout')) return url;
  // Appended to the text, not set on parsed: its href percent-encodes the
  // password again (: as %3A, @ as %40), which pg reads otherwise when the
  // password also holds a raw % that starts no escape (50%off;x came out as 50%off%3Bx).
  const hash = url.indexOf('#');
  const [head, fragment] = hash < 0 ? [url, ''] : [url.slice(0, hash), url.slice(hash)];
  const joint = !head.includes('?') ? '?' : /[?&]$/.test(head) ? '' : '&';
  return `${head}${joint}connect_timeout=${encodeURIComponent(seconds.trim())}${fragment}`;
}

/** A connection opened before the CLI parsed its arguments: see connectEarly. */
let early: { url: string; driver: Driver } | undefined;

/**
 * Starts opening the first connection of `pgdrain drain` or `publish` with a
 * database URL before the rest of the CLI loads (commander, zod and the queue:
 * ~40 ms of compiling and evaluating here), so the server starts a backend and
 * authenticates meanwhile. It reads argv as commander will; a wrong guess
 * costs one unused connection: connect() takes it only for the very URL the
 * parsed options name, and closeEarly() closes it otherwise.
 */
export function connectEarly(argv: readonly string[]): void {
  if (argv[2] !== 'drain' && argv[2] !== 'publish') return;
  let dsn: string | undefined;
  for (let i = 3; i < argv.length && argv[i] !== '--'; i++) {
    if (argv[i] === '--dsn') dsn = argv[++i];
    else if (argv[i]!.startsWith('--dsn=')) dsn = argv[i]!.slice('--dsn='.length);
  }
  let url: string | undefined;
  try {
    url = databaseUrl(dsn);
  } catch {
    return; // the command reports it
  }
  if (!url) return;
  try {
    const driver = openPg(url);
    // A drain's warm() joins this attempt while it is in flight (pgDriver.warm).
    driver.warm!().catch(() => {});
    early = { url, driver };
  } catch {
    // A URL pg cannot parse: the command reports it with its own error.
  }
}

/** Closes the early connection if no command took it. */
export async function closeEarly(): Promise<void> {
  const unused = early;
  early = undefined;
  await unused?.driver.close().catch(() => {});
}

export interface Connection {
  driver: Driver;
  /** Where the embedded database lives, when one is used. */
  embeddedDir?: string;
}

/**
 * The URL connect() uses: the DSN argument, else DATABASE_URL; undefined (both
 * unset) means the embedded database. One that is set but empty, or not a
 * PostgreSQL URL, is an error naming it: a CronJob whose secret came out
 * empty must fail, not drain an embedded database in its pod and exit 0.
 */
export function databaseUrl(dsn: string | undefined): string | undefined {
  if (dsn !== undefined) return checkedUrl('--dsn', dsn);
  const env = process.env.DATABASE_URL;
  return env === undefined ? undefined : checkedUrl('DATABASE_URL', env);
}

function checkedUrl(field: string, value: string): string {
  if (value.trim() === '') {
    throw new ValidationError(field, 'is set but empty: give a postgres:// URL (unset, the embedded database is used)');
  }
  // pg encodes a space into the URL, and a leading one makes it a path: ' postgres://u@h/db' went to host "base".
  if (/^\s| $/.test(value)) {
    throw new ValidationError(field, 'has a space or line break before it, or a space after it: remove them (pg reads them as part of the URL)');
  }
  const parsed = pgUrl(value); // undefined: not a URL; the value is not echoed, as it may hold a password
  if (unencodedCredentials(value)) throw new ValidationError(field, UNENCODED_CREDENTIALS_RULE);
  const protocol = parsed?.protocol;
  if (protocol !== 'postgres:' && protocol !== 'postgresql:' && protocol !== 'socket:') {
    throw new ValidationError(field, 'must be a postgres:// or postgresql:// URL, such as postgres://user:password@host:5432/db');
  }
  return value;
}

/**
 * A DSN argument wins, then DATABASE_URL; with neither, the embedded
 * PostgreSQL (PGlite) in PGDRAIN_DATA_DIR or ./.pgdrain, migrated on open
 * because nobody else manages it.
 */
export async function connect(dsn: string | undefined, log: (line: string) => void): Promise<Connection> {
  const url = databaseUrl(dsn);
  if (url && early?.url === url) {
    const { driver } = early;
    early = undefined;
    return { driver };
  }
  if (url) return { driver: openPg(url) };
  const dir = resolve(process.env.PGDRAIN_DATA_DIR || '.pgdrain');
  log(`pgdrain: no DSN or DATABASE_URL; using the embedded PostgreSQL (PGlite) in ${dir}`);
  // Loaded only here: PGlite is a large module, and most runs have a DSN.
  const { pgliteDriver } = await import('../db/pglite.js');
  const release = lockEmbedded(dir);
  let embedded: Driver;
  try {
    embedded = await pgliteDriver(dir);
  } catch (error) {
    release();
    throw error;
  }
  const driver: Driver = { ...embedded, close: () => embedded.close().finally(release) };
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
