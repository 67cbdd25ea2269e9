/**
 * The driver seam: everything pgdrain needs from a PostgreSQL client.
 * Each queue operation is one `query` (one round trip); `transaction` is used
 * by migrations and by callers that publish inside their own transaction.
 */
export interface QueryResult<R> {
  rows: R[];
}

/** Per-statement options a driver may honour. */
export interface QueryOptions {
  /**
   * Fires when the caller has given up waiting for the reply (a database
   * that stopped answering). A driver that honours it frees the connection
   * the statement holds (pgDriver ends it; in a transaction it cancels the
   * statement on the server, which fails it); one that does not may ignore it.
   */
  signal?: AbortSignal | undefined;
  /**
   * Called once the statement has a connection to go on (a pool's client
   * checked out for it): a caller that gives it up before can tell the pool
   * was full, not the database silent. Optional: pgDriver calls it.
   */
  onConnected?: (() => void) | undefined;
}

/** A pool's connections now (Driver.connections): open ones, idle ones, and statements waiting for one. */
export interface PoolCounts {
  open: number;
  idle: number;
  waiting: number;
}

/** Something that runs one statement: a pool, a client, a transaction. */
export interface Queryable {
  /** Runs one statement; a text with no params may hold several (migrations). */
  query<R = Record<string, unknown>>(text: string, params?: readonly unknown[],
                                     options?: QueryOptions): Promise<QueryResult<R>>;
}

/** A connection source the queue owns or borrows. */
export interface Driver extends Queryable {
  /** Runs fn inside BEGIN … COMMIT on one session; ROLLBACK when fn throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Releases the driver's connections. Safe to call twice. */
  close(): Promise<void>;
  /**
   * Opens a connection now, for the first query to use: a caller with other
   * work before that query (loading a module) overlaps the two. Optional.
   */
  warm?(): Promise<void>;
  /**
   * The most connections it opens at once, when it has a bound. A
   * transactional handler holds one while it runs, so drain() runs no more
   * jobs at once than this when any task is transactional (unless told its
   * concurrency): more would wait for a connection with their timeout running.
   */
  readonly maxConnections?: number | undefined;
  /**
   * What holds those connections (pgDriver's pg.Pool, pgliteDriver's PGlite),
   * left opaque: drains on drivers with the same one keep their transactional
   * handlers under its bound together, so a copy of a driver ({ ...driver })
   * or a second driver over the same pool counts as the same pool. Optional:
   * without it, each driver object counts as a pool of its own.
   */
  readonly pool?: object | undefined;
  /**
   * Its pool's connections now (pg-pool's totalCount, idleCount,
   * waitingCount): what a drain whose statements waited for one until its
   * overrun passed says of the pool. Optional: pgDriver and neonDriver have it.
   */
  connections?(): PoolCounts | undefined;
  /**
   * False when transaction() always refuses (neonHttpDriver: each statement
   * is a request of its own). drain() then refuses a transactional task up
   * front, instead of failing each of its jobs until their retries are spent.
   */
  readonly holdsTransactions?: boolean | undefined;
  /**
   * True when query() runs each statement as a transaction of its own, never
   * inside one a caller opened (a pool checks a connection out for it, an
   * HTTP driver sends it alone). A statement PostgreSQL rolls back whole
   * for another's sake (a deadlock victim, 40P01; a serialization failure,
   * 40001) left nothing behind, so publish, publishBulk, publishEvent and the
   * admin calls send it again, up to 3 times (src/send.ts). pgDriver (over
   * a pool, not a client a JavaScript caller gave it), neonDriver and
   * neonHttpDriver set it; leave it unset on a driver whose query() may run
   * inside its caller's transaction.
   */
  readonly autocommit?: boolean | undefined;
  /**
   * Listens for pgdrain_queued NOTIFYs (one per publishing statement; the
   * payload is the queue name, '*' after a redrive of several queues) on a
   * session of its own, calling fn with each payload until close(). A
   * lingering drain (DrainOptions.lingerMs) wakes on them. Optional: pgDriver
   * over a connection string has it; drivers with no session to LISTEN on
   * (neonHttpDriver, PGlite, a pool passed in) do not, and a drain polls.
   */
  onQueued?(fn: (queue: string) => void): QueuedListener;
  /**
   * Calls fn with the text of each NOTICE the server sends on this driver's
   * connections (jobs.redrive names the ids it left and why) until the
   * returned function is called. Optional: pgDriver over a connection string has it.
   */
  onNotice?(fn: (message: string) => void): () => void;
}

/** What Driver.onQueued returns. */
export interface QueuedListener {
  /** Resolves once NOTIFYs sent from now on are heard; rejects when the session could not be opened. */
  readonly ready: Promise<void>;
  /**
   * Stops listening and ends the session, even one still opening. A session
   * lost before that is reopened about once a second; what was sent
   * meanwhile is not heard, so once it is back fn is called with '*'.
   */
  close(): Promise<void>;
}

/**
 * Whether db is a node-postgres Pool (Neon's Pool is one: pg-pool's counts,
 * connect() and no release()), whose query() checks out an idle connection
 * for the one statement: never a pg.Client or a PoolClient, which run it in
 * whatever transaction their session has open.
 */
export function isPgPool(db: unknown): boolean {
  const pool = db as { connect?: unknown; release?: unknown; totalCount?: unknown; idleCount?: unknown; waitingCount?: unknown };
  return typeof pool.connect === 'function' && typeof pool.release !== 'function' && typeof pool.totalCount === 'number'
    && typeof pool.idleCount === 'number' && typeof pool.waitingCount === 'number';
}
