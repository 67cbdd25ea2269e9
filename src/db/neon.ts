import * as neonModule from '@neondatabase/serverless';
import type { Driver } from './driver.js';
import { configureProxy, neonPoolDriver } from './neon-drivers.js';

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

/**
 * Points @neondatabase/serverless at a self-hosted WebSocket proxy. neonConfig
 * is global to the isolate (neon's Pool builds every client from it), so all
 * Neon drivers of one process share these settings.
 */
export function configureNeonProxy(wsProxy: string | undefined, webSocketConstructor?: unknown): void {
  configureProxy(neonModule.neonConfig, wsProxy, webSocketConstructor);
}

/**
 * A driver over @neondatabase/serverless's Pool: node-postgres speaking the
 * PostgreSQL protocol over a WebSocket, so sessions and transactions work
 * (migrate(), queue.using(tx)) where there is no TCP, as in Cloudflare Workers.
 * In a Worker, open one per invocation and close it before the invocation
 * ends: a socket cannot outlive the request that opened it.
 */
export function neonDriver(connectionString: string, options: NeonDriverOptions = {}): Driver {
  return neonPoolDriver(neonModule, connectionString, options);
}
