// The Neon drivers (WebSocket Pool and HTTP) over a @neondatabase/serverless
// module handed in, instead of imported: pgdrain/cloudflare loads the package
// only when a Neon driver is asked for (src/db/neon-load.ts), so a Worker on
// Hyperdrive bundles and runs without it. The imports below are type-only
// and erased: this file loads nothing of the package itself.
// src/db/neon.ts and neon-http.ts are these over their static import.
import type { neon, neonConfig, Pool } from '@neondatabase/serverless';
import { pgConnectionString } from '../database-url.js';
import { PgDrainError, ValidationError } from '../errors.js';
import type { Driver, QueryOptions, QueryResult } from './driver.js';
import type { NeonHttpDriverOptions } from './neon-http.js';
import type { NeonDriverOptions } from './neon.js';
import { poolEnder } from './pg-pool.js';
import { catchClientErrors, driverOverPool, type PgPool } from './pg.js';

/** The parts of @neondatabase/serverless the drivers use. */
export interface NeonModule {
  Pool: typeof Pool;
  neon: typeof neon;
  neonConfig: typeof neonConfig;
}

function checkUrl(connectionString: unknown): string {
  if (typeof connectionString !== 'string' || !/^postgres(ql)?:\/\/[^/]+\/[^/?]+/i.test(connectionString)) {
    throw new ValidationError('connectionString', 'must be a postgres:// URL with a host and a database');
  }
  return connectionString;
}

/**
 * The URL to hand the Neon Pool and neon(): pgConnectionString's, with a raw \
 * written %5C. Both parse it as an http: URL, where a \ ends the host (a
 * password a\b c was an invalid URL; the Pool's encodeURI hid that while the
 * space was raw); pg reads a \ and its %5C alike.
 */
const neonUrl = (url: string) => pgConnectionString(url).replaceAll('\\', '%5C');

/**
 * neonUrl with each % of the path written %25 once more: the Pool's URL parser
 * decodes the path twice (decodeURIComponent, then pg's decodeURI), so
 * my%2541db asked for "myAdb", where pg reads the name my%41db.
 */
const neonPoolUrl = (url: string) => neonUrl(url)
  .replace(/^([^:]+:\/\/[^/?#]*)(\/[^?#]*)/, (_, start: string, path: string) => start + path.replaceAll('%', '%25'));

/** configureNeonProxy (src/db/neon.ts) on the given module's neonConfig, global to the isolate. */
export function configureProxy(config: typeof neonConfig, wsProxy: string | undefined, webSocketConstructor?: unknown): void {
  if (webSocketConstructor !== undefined) {
    if (typeof webSocketConstructor !== 'function') throw new ValidationError('webSocketConstructor', 'must be a WebSocket class');
    config.webSocketConstructor = webSocketConstructor as typeof config.webSocketConstructor;
  }
  if (wsProxy === undefined) return;
  let url: URL;
  try {
    url = new URL(wsProxy);
  } catch {
    throw new ValidationError('wsProxy', `must be a ws:// or wss:// URL, got ${JSON.stringify(wsProxy)}`);
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new ValidationError('wsProxy', `must be a ws:// or wss:// URL, got ${url.protocol}`);
  }
  const base = `${url.host}${url.pathname.replace(/\/$/, '')}`;
  config.wsProxy = (host, port) => `${base}?address=${host}:${port}`;
  config.useSecureWebSocket = url.protocol === 'wss:';
  // Pipelining the password message only works with cleartext password auth,
  // which Neon has and a self-hosted PostgreSQL usually has not.
  config.pipelineConnect = false;
  config.pipelineTLS = false;
}

/** neonDriver (src/db/neon.ts) over the given module. */
export function neonPoolDriver(mod: NeonModule, connectionString: string, options: NeonDriverOptions = {}): Driver {
  const url = checkUrl(connectionString);
  const max = options.max ?? 4;
  if (!Number.isInteger(max) || max < 1) throw new ValidationError('max', 'must be an integer of at least 1');
  configureProxy(mod.neonConfig, options.wsProxy, options.webSocketConstructor);
  // A raw % or space as written (its pg-connection-string re-encodes a URL holding one, as pg's).
  const pool = new mod.Pool({ connectionString: neonPoolUrl(url), max });
  pool.on('error', () => {}); // an idle client lost its server; the next query reconnects
  catchClientErrors(pool);
  return driverOverPool(pool as unknown as PgPool, poolEnder(pool));
}

/** neonHttpDriver (src/db/neon-http.ts) over the given module: one HTTPS request per statement, no session. */
export function neonHttpDriverOf(mod: NeonModule, connectionString: string, options: NeonHttpDriverOptions = {}): Driver {
  if (typeof connectionString !== 'string' || !/^postgres(ql)?:\/\/[^@/]+@[^/]+\/[^/?]+/i.test(connectionString)) {
    throw new ValidationError('connectionString', 'must be a postgres:// URL with a user, a host and a database');
  }
  if (options.fetchEndpoint !== undefined) {
    if (!/^https?:\/\/./.test(options.fetchEndpoint)) throw new ValidationError('fetchEndpoint', 'must be an http(s):// URL');
    mod.neonConfig.fetchEndpoint = options.fetchEndpoint;
  }
  const sql = mod.neon(neonUrl(connectionString)); // only %XX escapes, however Neon's proxy decodes them
  let closed = false;
  const refuseClosed = () => {
    if (closed) throw new PgDrainError('database_unavailable', 'database unavailable: the Neon HTTP driver is closed');
  };
  return {
    holdsTransactions: false,
    autocommit: true, // each statement its own request, and transaction
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
