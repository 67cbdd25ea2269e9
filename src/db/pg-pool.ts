// The node-postgres pool a driver owns: what opens its clients, and what
// ends it without waiting forever for a server that has gone silent.
import pg from 'pg';
import { pgUrl } from '../database-url.js';
import { ValidationError } from '../errors.js';

/** How long closing a pool lets statements in flight finish before it ends their connections. */
export const CLOSE_WAIT_MS = 2000;

/** A client's socket: what ending it at once takes (node-postgres's and Neon's clients alike). */
export type Socketed = { connection?: { stream?: { destroy(): void } } };

/** The part of a pg-pool (node-postgres's or Neon's) that poolEnder uses. */
interface EndablePool {
  on(event: 'connect' | 'remove', listener: (client: never) => void): unknown;
  end(): Promise<void>;
  /**
   * Every client of the pool: connecting, idle or checked out. Not public
   * API, but in pg-pool since its version 2; no event tells of a client that
   * is still connecting, and Neon's Pool takes no Client class of ours.
   */
  _clients?: Socketed[];
}

/**
 * What ends a pool a driver owns. pool.end() waits for every client it is
 * still opening and every checked-out one, and a server that has gone silent
 * would hold it forever. So clients still connecting are ended at once;
 * statements in flight get CLOSE_WAIT_MS, then the sockets of the clients
 * still open are destroyed.
 */
export function poolEnder(pool: EndablePool): () => Promise<void> {
  const open = new Set<Socketed>(); // connected: pg-pool emits 'connect' once a client has
  pool.on('connect', (client: Socketed) => open.add(client));
  pool.on('remove', (client: Socketed) => open.delete(client));
  return async () => {
    for (const client of pool._clients ?? []) if (!open.has(client)) client.connection?.stream?.destroy();
    if (await settlesInTime(pool.end())) return;
    // The pool's end is not awaited after this: the older pg inside Neon's
    // driver never calls back for a client whose connection ended while it
    // was checked out, so that pool never ends. The sockets are what would
    // hold a process, and they are closed.
    for (const client of open) client.connection?.stream?.destroy();
  };
}

/**
 * Ends one connected client as poolEnder ends a pool: its socket is destroyed
 * if the server has not answered within CLOSE_WAIT_MS (a silent server would
 * hold client.end() forever).
 */
export async function endClient(client: { end(): Promise<void> } & Socketed): Promise<void> {
  if (!await settlesInTime(client.end().catch(() => {}))) client.connection?.stream?.destroy();
}

/** Whether `ending` settles within CLOSE_WAIT_MS (its rejection is passed on). */
async function settlesInTime(ending: Promise<unknown>): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const waited = new Promise<boolean>((resolve) => (timer = setTimeout(resolve, CLOSE_WAIT_MS, false)));
  try {
    return await Promise.race([ending.then(() => true), waited]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * libpq's connect_timeout URL parameter in milliseconds (undefined: wait
 * indefinitely). node-postgres reads it only in its native binding, so a URL
 * that works with psql would otherwise wait forever for a silent server.
 * As in libpq: whole seconds; zero or less means no limit; 1 means 2.
 */
export function connectTimeoutMs(url: string): number | undefined {
  const parsed = pgUrl(url);
  if (!parsed) return undefined; // not a URL pg can parse either: it reports that itself
  const value = parsed.searchParams.get('connect_timeout');
  if (value === null) return undefined;
  const seconds = wholeSeconds('connect_timeout', value);
  return seconds <= 0 ? undefined : Math.max(seconds, 2) * 1000;
}

/** A connect timeout as libpq reads one (the URL's connect_timeout, PGCONNECT_TIMEOUT): whole seconds. */
export function wholeSeconds(field: string, value: string): number {
  if (!/^\s*-?\d+\s*$/.test(value)) {
    throw new ValidationError(field, `must be a whole number of seconds, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}

/**
 * The pg.Client class of a pool a driver owns: its clients give up
 * connecting after timeoutMs. (As the pool's connectionTimeoutMillis, the
 * timeout would also fail statements that wait longer for a free client.)
 */
export function ownedClient(timeoutMs: number | undefined): typeof pg.Client {
  if (timeoutMs === undefined) return pg.Client;
  return class extends pg.Client {
    constructor(config?: string | pg.ClientConfig) {
      super(typeof config === 'object' ? { ...config, connectionTimeoutMillis: timeoutMs } : config);
    }
  };
}

/** too_many_connections: max_connections, or a role's or database's CONNECTION LIMIT, refused one more. */
const TOO_MANY_CONNECTIONS = '53300';

/** How long a pool the server refused a connection keeps to the ones it has before it tries to open another. */
export const REFUSED_HOLD_MS = 5000;

/** The part of a pg-pool (node-postgres's or Neon's) that sharing on refusal uses. */
interface CappablePool {
  readonly totalCount?: number;
  /** pg-pool reads options.max each time it decides whether to open a client or queue for one. */
  options?: { max?: number };
}

/** Pools whose max is lowered: their own max, and the timer that gives it back (shared by every driver on a pool). */
const lowered = new WeakMap<CappablePool, { max: number; timer: ReturnType<typeof setTimeout> }>();

/**
 * Runs `acquire` (anything that checks out a client of `pool`), so that a
 * server refusing the pool one more connection while the pool has others
 * open is not the caller's error: the pool keeps to the connections it has
 * for REFUSED_HOLD_MS (its max lowered to them, as if it were full), and
 * `acquire` runs again, waiting for one of them. A drain whose handlers
 * publish shares its connection rather than fail their jobs against a
 * connection limit. With no connection open the refusal is the caller's.
 */
export function sharingOnRefusal(pool: CappablePool): <T>(acquire: () => Promise<T>) => Promise<T> {
  return async (acquire) => {
    for (;;) {
      try {
        return await acquire();
      } catch (error) {
        const open = pool.totalCount ?? 0;
        const options = pool.options;
        if ((error as { code?: unknown }).code !== TOO_MANY_CONNECTIONS || open === 0
            || typeof options?.max !== 'number') throw error;
        const before = lowered.get(pool);
        clearTimeout(before?.timer);
        const max = before?.max ?? options.max;
        options.max = Math.min(options.max, open);
        const timer = setTimeout(() => {
          options.max = max;
          lowered.delete(pool);
        }, REFUSED_HOLD_MS);
        (timer as { unref?: () => void }).unref?.();
        lowered.set(pool, { max, timer });
      }
    }
  };
}
