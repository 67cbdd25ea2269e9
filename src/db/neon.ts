import { neonConfig, Pool } from '@neondatabase/serverless';
import { ValidationError } from '../errors.js';
import type { Driver } from './driver.js';
import { poolEnder } from './pg-pool.js';
import { driverOverPool, type PgPool } from './pg.js';

/** Options of the Neon WebSocket driver. */
export interface NeonDriverOptions {
  /** Connections in the pool (default 4: a Worker may hold 6 connections at once). */
  max?: number | undefined;
  /**
   * A self-hosted WebSocket proxy in front of a PostgreSQL that is not Neon,
   * as a URL: `wss://proxy.example.com/v2` (or `ws://127.0.0.1:8080/v2` on
   * your own machine). Omit it for a Neon database.
   */
  wsProxy?: string | undefined;
  /** The WebSocket class where there is no global one (Node 20: the `ws` package). */
  webSocketConstructor?: unknown | undefined;
}

function checkUrl(connectionString: unknown): string {
  if (typeof connectionString !== 'string' || !/^postgres(ql)?:\/\/[^/]+\/[^/?]+/.test(connectionString)) {
    throw new ValidationError('connectionString', 'must be a postgres:// URL with a host and a database');
  }
  return connectionString;
}

/**
 * Points @neondatabase/serverless at a self-hosted WebSocket proxy. neonConfig
 * is global to the isolate (neon's Pool builds every client from it), so all
 * Neon drivers of one process share these settings.
 */
export function configureNeonProxy(wsProxy: string | undefined, webSocketConstructor?: unknown): void {
  if (webSocketConstructor !== undefined) {
    if (typeof webSocketConstructor !== 'function') throw new ValidationError('webSocketConstructor', 'must be a WebSocket class');
    neonConfig.webSocketConstructor = webSocketConstructor as typeof neonConfig.webSocketConstructor;
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
  neonConfig.wsProxy = (host, port) => `${base}?address=${host}:${port}`;
  neonConfig.useSecureWebSocket = url.protocol === 'wss:';
  // Pipelining the password message only works with cleartext password auth,
  // which Neon has and a self-hosted PostgreSQL usually has not.
  neonConfig.pipelineConnect = false;
  neonConfig.pipelineTLS = false;
}

/**
 * A driver over @neondatabase/serverless's Pool: node-postgres speaking the
 * PostgreSQL protocol over a WebSocket, so sessions and transactions work
 * (migrate(), queue.using(tx)) where there is no TCP, as in Cloudflare Workers.
 * In a Worker, open one per invocation and close it before the invocation
 * ends: a socket cannot outlive the request that opened it.
 */
export function neonDriver(connectionString: string, options: NeonDriverOptions = {}): Driver {
  const url = checkUrl(connectionString);
  const max = options.max ?? 4;
  if (!Number.isInteger(max) || max < 1) throw new ValidationError('max', 'must be an integer of at least 1');
  configureNeonProxy(options.wsProxy, options.webSocketConstructor);
  const pool = new Pool({ connectionString: url, max });
  pool.on('error', () => {}); // an idle client lost its server; the next query reconnects
  return driverOverPool(pool as unknown as PgPool, poolEnder(pool));
}
