import pg from 'pg';
import { pgConnectionString } from '../database-url.js';
import { PgDrainError } from '../errors.js';
import { isPgPool, type Driver, type Queryable, type QueryOptions, type QueryResult, type QueuedListener } from './driver.js';
import { PgJobEvents } from './pg-events.js';
import { cancelOnServer } from './pg-cancel.js';
import { connectTimeoutMs, ownedClient, poolEnder, sharingOnRefusal } from './pg-pool.js';

/** The part of a node-postgres Pool (or pg-compatible pool) that pgdrain uses. */
export interface PgPool {
  query(text: string, params?: unknown[]): Promise<{ rows: unknown[] }>;
  connect(): Promise<PgPoolClient>;
  end(): Promise<void>;
  /** pg-pool's: with both, a refused connection waits for an open one (sharingOnRefusal). */
  readonly totalCount?: number;
  /** pg-pool's, with totalCount: Driver.connections. */
  readonly idleCount?: number;
  readonly waitingCount?: number;
  options?: { max?: number };
}
export interface PgPoolClient {
  query(text: string, params?: unknown[]): Promise<{ rows: unknown[] }>;
  release(destroy?: boolean | Error): void;
  /** pg.Client's: with a query in flight it destroys the socket, failing that query. */
  end?(): Promise<void>;
  on?(event: 'error', listener: (error: Error) => void): unknown;
  off?(event: 'error', listener: (error: Error) => void): unknown;
}

/** The error each client broke with, as its 'error' listener (recordError) heard it. */
const brokenWith = new WeakMap<object, unknown>();

/**
 * A listener for a pooled client's 'error'. A pg.Client emits it when its
 * connection breaks, and the pool listens only while the client is idle: a
 * checked-out client with no listener would take the process down. Its
 * statement in flight fails with that error; one sent later would fail with
 * "Client has encountered a connection error and is not queryable", which
 * wrap() replaces with that error too (a FATAL 57P01: database unavailable).
 */
const recordError = (client: object) => (error: unknown) => void brokenWith.set(client, error);

/**
 * Gives every client of a pool pgdrain owns a listener for 'error' for its
 * whole life. Adding one after pool.connect() resolves is too late: pg-pool
 * drops its own listener as it hands a new client out, the promise resolves
 * a microtask later, and a FATAL that came in the same chunk as the server's
 * first ReadyForQuery (pg_terminate_backend at once) is emitted in between.
 * 'connect' is emitted before pg-pool drops its listener, so there is no gap.
 */
export function catchClientErrors(pool: { on(event: 'connect', listener: (client: PgPoolClient) => void): unknown }): void {
  pool.on('connect', (client) => client.on?.('error', recordError(client)));
}

/** q (a pool or a client) as a Queryable; a client's statement fails with the error the client broke with, if it did. */
function wrap(q: { query(text: string, params?: unknown[]): Promise<{ rows: unknown[] }> }): Queryable {
  return {
    async query<R>(text: string, params?: readonly unknown[]) {
      try {
        return (await q.query(text, params ? [...params] : undefined)) as QueryResult<R>;
      } catch (error) {
        throw brokenWith.get(q) ?? error;
      }
    },
  };
}

/**
 * Resets a client's TCP connection (an RST, where end() sends a FIN). A FIN
 * waits behind the statement the kernel has not yet delivered, and a frozen
 * network that comes back within minutes would still carry that statement
 * to the server, which runs and commits it: a publish given up on would
 * land after its job ran again. A reset drops it. Over TLS, the TCP socket
 * under the TLS stream is reset; a WebSocket (Neon's driver) is only ended.
 */
function reset(client: PgPoolClient): void {
  type Resettable = { resetAndDestroy?(): unknown; _parent?: Resettable };
  const stream = (client as { connection?: { stream?: Resettable } }).connection?.stream;
  // A TLS stream cannot be reset (ERR_INVALID_HANDLE_TYPE), the TCP socket under it can; else end().
  for (const socket of [stream, stream?._parent]) {
    try {
      if (typeof socket?.resetAndDestroy === 'function') return void socket.resetAndDestroy();
    } catch {
      // not a TCP handle: try the socket under it
    }
  }
}

/**
 * One statement on a client checked out for it, so that when `signal`
 * aborts (the caller gave up on a database that does not answer) that
 * client can be ended rather than left in the pool waiting for a reply that
 * may never come, and the statement cancelled on the server if it runs
 * there. Releases the client.
 */
async function abandonable<R>(client: PgPoolClient, text: string, params: readonly unknown[] | undefined,
                              signal: AbortSignal): Promise<QueryResult<R>> {
  // Given up while waiting for the client: nothing was sent, so it goes back as it came.
  if (signal.aborted) {
    client.release();
    throw signal.reason;
  }
  // The cancel first, the client's own connection ended only once it went
  // out: through PgBouncer, a client that leaves first takes its server
  // connection's identity with it, and the cancel then finds no one to cancel.
  // Once sent, the cancel may land after the statement ended by itself (its reply came
  // first), when the backend runs the next user's statement: the client leaves the pool.
  let cancelSent = false;
  const end = () => {
    cancelSent = true;
    void cancelOnServer(client).then(() => {
      reset(client);
      void client.end?.().catch(() => {});
    });
  };
  signal.addEventListener('abort', end, { once: true });
  const onError = recordError(client);
  client.on?.('error', onError);
  let failed: unknown;
  try {
    return await wrap(client).query<R>(text, params);
  } catch (error) {
    failed = error;
    throw error;
  } finally {
    signal.removeEventListener('abort', end);
    client.off?.('error', onError);
    // As pool.query does: a client whose statement failed leaves the pool; so does one a cancel is on its way to.
    client.release(failed instanceof Error ? failed : failed !== undefined || cancelSent ? true : undefined);
  }
}

/**
 * A driver over a node-postgres Pool. Pass a connection string (the driver
 * owns and closes the pool) or your own pool (closing the driver leaves it open).
 * Your pool's clients are left as they are (no catchClientErrors): a listener
 * for their whole life would also silence the errors of the clients your own
 * code checks out. Give them one yourself (docs/cloudflare.md).
 */
export function pgDriver(source: string | PgPool, options: { max?: number | undefined } = {}): Driver {
  if (typeof source !== 'string') return driverOverPool(source, undefined);
  const url = pgConnectionString(source); // a raw % or space as written, whatever else the URL escapes
  const pool = new pg.Pool({ connectionString: url, max: options.max ?? 10, Client: ownedClient(connectTimeoutMs(url)) });
  pool.on('error', () => {}); // an idle client lost its server; the next query reconnects
  catchClientErrors(pool);
  // NOTICEs the server sends (jobs.redrive says which ids it left, and why) go to onNotice's listeners.
  const noticed = new Set<(message: string) => void>();
  pool.on('connect', (client) => client.on('notice', (n) => { for (const fn of noticed) fn(n.message ?? ''); }));
  return {
    ...driverOverPool(pool, poolEnder(pool)),
    onQueued: (fn) => listenQueued(source, fn),
    onNotice: (fn) => { noticed.add(fn); return () => noticed.delete(fn); },
  };
}

/**
 * Driver.onQueued: a session of its own, outside the pool, per listener
 * (a lingering drain opens it when it first finds its queue empty and
 * closes it when it returns), reopened after a loss as PgJobEvents does.
 */
export function listenQueued(connectionString: string, fn: (queue: string) => void): QueuedListener {
  const events = new PgJobEvents(connectionString, ['pgdrain_queued']);
  const ready = events.subscribe((e) => fn(e.queue ?? '*')).then(() => {});
  ready.catch(() => {}); // the caller may never ask
  return { ready, close: () => events.close() };
}

/**
 * A driver over a pool; with endPool, it owns the pool: close() ends it, fails
 * the statements still waiting for a connection, and refuses later ones.
 * (neonDriver's pool is node-postgres's too.)
 */
export function driverOverPool(pool: PgPool, endPool: (() => Promise<void>) | undefined): Driver {
  const owned = endPool !== undefined;
  let closed = false;
  const refuseClosed = () => {
    if (closed) throw new PgDrainError('database_unavailable', 'database unavailable: the driver is closed');
  };
  // The connection warm() is opening: until it is open, queries and further
  // warm() calls wait for it rather than have the pool open a second one. If
  // it fails, the statements that waited fail with its error rather than each
  // try again at once (a second wait as long against an unreachable server).
  let warming: Promise<void> | undefined;
  // pg-pool's end() never answers the statements still waiting for a client:
  // close() fails them once the pool has ended.
  const waiting = new Set<(error: Error) => void>();
  const refusing = sharingOnRefusal(pool);
  const share = <T>(acquire: () => Promise<T>): Promise<T> => owned ? new Promise<T>((resolve, reject) => {
    waiting.add(reject);
    refusing(acquire).then(resolve, reject).finally(() => waiting.delete(reject));
  }) : refusing(acquire);
  const connect = () => share(() => pool.connect());
  const pooled = wrap(pool);
  return {
    maxConnections: pool.options?.max,
    pool, // drains on one pool through several drivers share its connections (pool-share.ts)
    connections: () => pool.totalCount === undefined || pool.idleCount === undefined || pool.waitingCount === undefined
      ? undefined : { open: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount },
    // A statement is sent alone on a client of the pool (query, abandonable); not through
    // pgDriver(client) of a JavaScript caller's, whose session may be in its transaction.
    autocommit: isPgPool(pool),
    async query<R>(text: string, params?: readonly unknown[], options?: QueryOptions) {
      refuseClosed();
      if (warming) await warming;
      if (!options?.signal) return share(() => pooled.query<R>(text, params));
      const client = await connect();
      options.onConnected?.();
      return abandonable<R>(client, text, params, options.signal);
    },
    async transaction(fn) {
      refuseClosed();
      if (warming) await warming;
      const client = await connect();
      const onError = recordError(client);
      client.on?.('error', onError);
      let broken: unknown;
      // A cancel sent may reach the server late, after the commit: the client then leaves
      // the pool, so that it cannot cancel the next user's statement on that backend.
      let cancelSent = false;
      // A statement the callback sends after it settled (a promise it did not await) would run
      // after the commit or rollback, outside the transaction or in the next: it is refused.
      let open = true;
      const session = wrap(client);
      const tx: Queryable = {
        async query<R>(text: string, params?: readonly unknown[], options?: QueryOptions) {
          if (!open) throw new Error('this transaction has ended: a statement came after its callback returned or threw');
          const signal = options?.signal;
          if (!signal) return session.query<R>(text, params);
          // Given up (a caller's bound): cancelled on the server, where a backend waiting on
          // a lock would otherwise keep its place in the lock's queue after its client left;
          // the statement then fails, and the transaction rolls back and releases its client.
          signal.throwIfAborted();
          const cancel = () => {
            cancelSent = true;
            void cancelOnServer(client);
          };
          signal.addEventListener('abort', cancel, { once: true });
          try {
            return await session.query<R>(text, params);
          } finally {
            signal.removeEventListener('abort', cancel);
          }
        },
      };
      try {
        await session.query('begin');
        let result: Awaited<ReturnType<typeof fn>>;
        try {
          result = await fn(tx);
        } finally {
          open = false;
        }
        await session.query('commit');
        return result;
      } catch (error) {
        broken = await session.query('rollback').then(() => undefined, (e: unknown) => e);
        throw error;
      } finally {
        client.off?.('error', onError);
        client.release(broken instanceof Error ? broken : cancelSent ? true : undefined);
      }
    },
    warm() {
      warming ??= connect().then((client) => client.release()).finally(() => { warming = undefined; });
      return warming;
    },
    async close() {
      if (closed || !owned) return;
      closed = true;
      await endPool!();
      const closedError = new PgDrainError('database_unavailable', 'database unavailable: the driver was closed before this statement got a connection');
      for (const reject of waiting) reject(closedError);
    },
  };
}
