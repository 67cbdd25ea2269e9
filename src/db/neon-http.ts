import { neon, neonConfig } from '@neondatabase/serverless';
import { PgDrainError, ValidationError } from '../errors.js';
import type { Driver, QueryOptions, QueryResult } from './driver.js';

// Which queue operations run over HTTP: every one. Each is one SQL statement
// with parameters (publish, publishBulk, drain's claim_json and settle,
// jobs.ack / nack / release, stats), and one statement needs no session.
// What needs the WebSocket Pool (neonDriver) or pg instead:
// - migrate(): one transaction, an advisory lock, multi-statement scripts;
// - queue.using(tx) inside your own transaction;
// - a text of several statements: Neon's HTTP endpoint prepares each query.
// driver.transaction() therefore refuses, naming the driver to use.

/** Options of the Neon HTTP driver. */
export interface NeonHttpDriverOptions {
  /**
   * Where to POST queries instead of Neon's `https://api.<host>/sql`, e.g. a
   * local endpoint in tests. Sets neonConfig.fetchEndpoint, which is global
   * to the isolate.
   */
  fetchEndpoint?: string | undefined;
}

/**
 * A driver over @neondatabase/serverless's `neon()`: each statement is one
 * HTTPS request, with no connection to open or close. The fastest way from a
 * Worker or a Lambda to Neon for draining and publishing; see the comment at
 * the top of this file for what needs a session instead.
 */
export function neonHttpDriver(connectionString: string, options: NeonHttpDriverOptions = {}): Driver {
  if (typeof connectionString !== 'string' || !/^postgres(ql)?:\/\/[^@/]+@[^/]+\/[^/?]+/.test(connectionString)) {
    throw new ValidationError('connectionString', 'must be a postgres:// URL with a user, a host and a database');
  }
  if (options.fetchEndpoint !== undefined) {
    if (!/^https?:\/\/./.test(options.fetchEndpoint)) throw new ValidationError('fetchEndpoint', 'must be an http(s):// URL');
    neonConfig.fetchEndpoint = options.fetchEndpoint;
  }
  const sql = neon(connectionString);
  let closed = false;
  const refuseClosed = () => {
    if (closed) throw new PgDrainError('database_unavailable', 'database unavailable: the Neon HTTP driver is closed');
  };
  return {
    holdsTransactions: false,
    async query<R>(text: string, params?: readonly unknown[], options?: QueryOptions): Promise<QueryResult<R>> {
      refuseClosed();
      try {
        // A signal that aborts (the caller gave up) cancels the HTTP request.
        const fetchOptions = options?.signal ? { signal: options.signal } : undefined;
        const result = await sql.query(text, params ? [...params] : [], { fullResults: true, fetchOptions });
        return { rows: result.rows as R[] };
      } catch (error) {
        throw unreachable(error) ?? error;
      }
    },
    async transaction() {
      refuseClosed();
      throw new ValidationError('driver',
        'neonHttpDriver sends each statement on its own and cannot hold a transaction; ' +
        'use neonDriver (the WebSocket Pool) or pgDriver for migrate() and queue.using(tx)');
    },
    async close() {
      closed = true;
    },
  };
}

/** A request that never reached PostgreSQL (network, endpoint down) is "database unavailable". */
function unreachable(error: unknown): PgDrainError | undefined {
  const e = error as { sourceError?: unknown; message?: unknown; code?: unknown };
  const message = typeof e?.message === 'string' ? e.message : '';
  if (e?.sourceError !== undefined || (e?.code === undefined && /^Server error \(HTTP status 5\d\d\)/.test(message))) {
    return new PgDrainError('database_unavailable', `database unavailable: ${message}`, { cause: error });
  }
  return undefined;
}
