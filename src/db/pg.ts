import pg from 'pg';
import type { Driver, Queryable, QueryResult } from './driver.js';

/** The part of a node-postgres Pool (or pg-compatible pool) that pgdrain uses. */
export interface PgPool {
  query(text: string, params?: unknown[]): Promise<{ rows: unknown[] }>;
  connect(): Promise<PgPoolClient>;
  end(): Promise<void>;
}
export interface PgPoolClient {
  query(text: string, params?: unknown[]): Promise<{ rows: unknown[] }>;
  release(destroy?: boolean | Error): void;
}

function wrap(q: { query(text: string, params?: unknown[]): Promise<{ rows: unknown[] }> }): Queryable {
  return {
    query: async <R>(text: string, params?: readonly unknown[]) =>
      (await q.query(text, params ? [...params] : undefined)) as QueryResult<R>,
  };
}

type ConnectCallback = ((err: Error) => void) | ((err: null, c: pg.Client) => void);

/** A pg.Client class whose clients are in `opening` from connect() until it has finished, either way. */
function trackingOpening(opening: Set<pg.Client>): typeof pg.Client {
  return class extends pg.Client {
    override connect(): Promise<pg.Client>;
    override connect(callback: ConnectCallback): void;
    override connect(callback?: ConnectCallback): Promise<pg.Client> | void {
      opening.add(this);
      if (!callback) return super.connect().finally(() => opening.delete(this));
      super.connect(((...args: unknown[]) => {
        opening.delete(this);
        (callback as (...a: unknown[]) => void)(...args);
      }) as ConnectCallback);
    }
  };
}

/**
 * A driver over a node-postgres Pool. Pass a connection string (the driver
 * owns and closes the pool) or your own pool (closing the driver leaves it open).
 */
export function pgDriver(source: string | PgPool, options: { max?: number } = {}): Driver {
  const owned = typeof source === 'string';
  // Connections the owned pool is still opening: close() ends them, where the
  // pool would wait for a server that may never answer.
  const opening = new Set<pg.Client>();
  const pool: PgPool = owned
    ? new pg.Pool({ connectionString: source, max: options.max ?? 10, Client: trackingOpening(opening) })
    : source;
  if (owned) (pool as pg.Pool).on('error', () => {}); // an idle client lost its server; the next query reconnects
  let closed = false;
  // The connection warm() is opening: until it is open, queries and further
  // warm() calls wait for it rather than have the pool open a second one.
  let warming: Promise<void> | undefined;
  const pooled = wrap(pool);
  return {
    async query<R>(text: string, params?: readonly unknown[]) {
      if (warming) await warming.catch(() => {});
      return pooled.query<R>(text, params);
    },
    async transaction(fn) {
      if (warming) await warming.catch(() => {});
      const client = await pool.connect();
      let broken: unknown;
      try {
        await client.query('begin');
        const result = await fn(wrap(client));
        await client.query('commit');
        return result;
      } catch (error) {
        broken = await client.query('rollback').then(() => undefined, (e: unknown) => e);
        throw error;
      } finally {
        client.release(broken instanceof Error ? broken : undefined);
      }
    },
    warm() {
      warming ??= pool.connect().then((client) => client.release()).finally(() => { warming = undefined; });
      return warming;
    },
    async close() {
      if (closed || !owned) return;
      closed = true;
      for (const client of opening) client.connection.stream.destroy();
      await pool.end();
    },
  };
}
