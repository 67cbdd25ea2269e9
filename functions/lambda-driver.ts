// The Lambda function's database: a pg pool that survives the freeze and
// thaw of a warm instance (reconnectingDriver below).
import pg from 'pg';
import { pgConnectionString } from '../src/database-url.js';
import type { Driver } from '../src/db/driver.js';
import { ownedClient, poolEnder } from '../src/db/pg-pool.js';
import { listenQueued, pgDriver } from '../src/db/pg.js';

export interface ReconnectingDriver extends Driver {
  /** Marks the start of an invocation: the pool's connections are not yet proven alive. */
  beginInvocation(): void;
}

// Errors that mean the connection was dead before the statement could run.
const LOST = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', '57P01', '57P02', '57P03', '08003', '08006']);
function connectionLost(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown } | null;
  return (typeof e?.code === 'string' && LOST.has(e.code))
    || (typeof e?.message === 'string' && /Connection terminated|not queryable|Client was closed/i.test(e.message));
}

/**
 * A pg pool that survives freeze/thaw. Between invocations Lambda freezes the
 * process; the database, a proxy or a NAT may drop its idle connections
 * meanwhile without the pool noticing, and the first statement after the
 * thaw fails on a dead socket. So each invocation first proves the pool with
 * `select 1`; if that finds the connection dead, the pool is replaced (the
 * old one ended in the background) and the invocation's statements run on
 * the fresh one. Only the probe is ever sent twice: a statement whose reply
 * was lost may have committed (a publish would then exist twice).
 */
export function reconnectingDriver(url: string, max: number): ReconnectingDriver {
  const newPool = () => {
    // 10 s to open a connection, set on the client: as the pool's
    // connectionTimeoutMillis it would also fail a statement that waits
    // longer for a connection a handler holds (a transactional one).
    const pool = new pg.Pool({ connectionString: pgConnectionString(url), max, keepAlive: true, Client: ownedClient(10_000),
                               application_name: 'pgdrain-lambda' });
    pool.on('error', () => {}); // an idle client lost its server; the pool drops it
    return { pool, end: poolEnder(pool) };
  };
  let { pool, end } = newPool();
  let driver = pgDriver(pool);
  let proven = false;
  let proving: Promise<void> | undefined;
  const replacePool = () => {
    const old = end;
    ({ pool, end } = newPool());
    driver = pgDriver(pool);
    void old().catch(() => {});
  };
  const probe = async (signal?: AbortSignal): Promise<void> => {
    try {
      await driver.query('select 1', [], signal ? { signal } : undefined);
    } catch (error) {
      // A statement given up on (signal) was ended on purpose: not a stale pool.
      if (!connectionLost(error) || signal?.aborted) throw error;
      console.warn(`pgdrain: a pooled connection died while the function was idle (${(error as Error).message}); reconnecting`);
      replacePool();
    }
    proven = true;
  };
  /** Resolves once this invocation's pool is proven (one probe, shared by the statements that wait for it). */
  const proved = (signal?: AbortSignal): Promise<void> | undefined => {
    if (proven) return undefined;
    proving ??= probe(signal).finally(() => { proving = undefined; });
    return proving;
  };
  return {
    maxConnections: max, // drain() runs fewer transactional handlers at once
    autocommit: true, // query() is pgDriver's
    query: async (text, params, options) => {
      await proved(options?.signal);
      return driver.query(text, params, options);
    },
    transaction: async (fn) => {
      await proved();
      return driver.transaction(fn);
    },
    close: () => end(),
    beginInvocation: () => { proven = false; },
    // A lingering drain's LISTEN session, outside the pool: opened when it first idles, closed before it returns
    // (so never frozen with the function), as pgDriver(url) does.
    onQueued: (fn) => listenQueued(url, fn),
  };
}
