import { PgDrainError } from '../errors.js';
import type { Driver, Queryable, QueryResult } from './driver.js';

/** The part of a PGlite instance that pgdrain uses. */
interface PGliteSession {
  query<R>(text: string, params?: unknown[], options?: typeof int8AsText): Promise<{ rows: R[] }>;
  exec(text: string, options?: typeof int8AsText): Promise<{ rows: unknown[] }[]>;
}

// int8 (count(*), bigint ids) as a string, as node-postgres and Neon return
// it: PGlite's number would lose digits past 2^53.
const int8AsText = { parsers: { 20: (value: string) => value } };

export interface PGliteLike extends PGliteSession {
  transaction<T>(fn: (tx: PGliteSession) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/**
 * A driver over PGlite, PostgreSQL compiled to WebAssembly: the embedded
 * default. PGlite is one session, so statements queue one after another.
 * Pass a directory to keep the data (the CLI uses ./.pgdrain) or an
 * existing PGlite instance.
 */
export async function pgliteDriver(source: string | PGliteLike = 'memory://'): Promise<Driver> {
  let db: PGliteLike;
  if (typeof source === 'string') {
    const { PGlite } = await import('@electric-sql/pglite');
    db = (await PGlite.create(source)) as unknown as PGliteLike;
  } else {
    db = source;
  }
  const owned = typeof source === 'string';
  // Without parameters a text may hold several statements (migrations), as
  // with node-postgres; PGlite runs those through exec.
  const wrap = (q: PGliteSession): Queryable => ({
    async query<R>(text: string, params?: readonly unknown[]) {
      if (params && params.length > 0) return (await q.query<R>(text, [...params], int8AsText)) as QueryResult<R>;
      const results = await q.exec(text, int8AsText);
      return { rows: (results[results.length - 1]?.rows ?? []) as R[] };
    },
  });
  let closed = false;
  const refuseClosed = () => {
    if (closed) throw new PgDrainError('database_unavailable', 'database unavailable: the driver is closed');
  };
  const session = wrap(db);
  return {
    maxConnections: 1, // one session: a transaction holds the database
    pool: db, // every driver over this instance shares that session
    async query<R>(text: string, params?: readonly unknown[]) {
      refuseClosed();
      return session.query<R>(text, params);
    },
    async transaction(fn) {
      refuseClosed();
      return db.transaction((tx) => fn(wrap(tx)));
    },
    async close() {
      if (closed || !owned) return;
      closed = true;
      await db.close();
    },
  };
}
