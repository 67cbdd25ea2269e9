// The node-postgres pool a driver owns: what opens its clients, and what
// ends it without waiting forever for a server that has gone silent.
import pg from 'pg';
import { ValidationError } from '../errors.js';

/** How long closing a pool lets statements in flight finish before it ends their connections. */
export const CLOSE_WAIT_MS = 2000;

/** The part of a pg-pool (node-postgres's or Neon's) that poolEnder uses. */
interface EndablePool {
  on(event: 'connect' | 'remove', listener: (client: never) => void): unknown;
  end(): Promise<void>;
}
type SocketHolder = { connection?: { stream?: { destroy(): void } } };

/**
 * What ends `pool`. pool.end() waits for every checked-out client, and one
 * whose statement never gets a reply (a database that stopped answering; a
 * handler's statement after its drain gave up on it) would hold it forever:
 * after CLOSE_WAIT_MS the sockets of the clients still open are destroyed.
 */
export function poolEnder(pool: EndablePool): () => Promise<void> {
  const open = new Set<SocketHolder>();
  pool.on('connect', (client: SocketHolder) => open.add(client));
  pool.on('remove', (client: SocketHolder) => open.delete(client));
  return async () => {
    const ended = pool.end().then(() => true);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const waited = new Promise<boolean>((resolve) => (timer = setTimeout(resolve, CLOSE_WAIT_MS, false)));
    const endedInTime = await Promise.race([ended, waited]);
    clearTimeout(timer);
    if (endedInTime) return;
    // The pool's end is not awaited after this: the older pg inside Neon's
    // driver never calls back for a client whose connection ended while it
    // was checked out, so that pool never ends. The sockets are what would
    // hold a process, and they are closed.
    for (const client of open) client.connection?.stream?.destroy();
  };
}

type ConnectCallback = ((err: Error) => void) | ((err: null, c: pg.Client) => void);

/**
 * libpq's connect_timeout URL parameter in milliseconds (undefined: wait
 * indefinitely). node-postgres reads it only in its native binding, so a URL
 * that works with psql would otherwise wait forever for a silent server.
 * As in libpq: whole seconds; zero or less means no limit; 1 means 2.
 */
export function connectTimeoutMs(url: string): number | undefined {
  let value: string | null;
  try {
    value = new URL(url).searchParams.get('connect_timeout');
  } catch {
    return undefined; // not a URL pg can parse either: it reports that itself
  }
  if (value === null) return undefined;
  if (!/^\s*-?\d+\s*$/.test(value)) {
    throw new ValidationError('connect_timeout', `must be a whole number of seconds, got ${JSON.stringify(value)}`);
  }
  const seconds = Number(value);
  return seconds <= 0 ? undefined : Math.max(seconds, 2) * 1000;
}

/**
 * The pg.Client class of a driver's own pool. Its clients are in `opening`
 * from connect() until it has finished, either way; they give up connecting
 * after timeoutMs. (Given to the pool as its connectionTimeoutMillis, that
 * would also fail statements that wait longer for a free client.)
 */
export function ownedClient(opening: Set<pg.Client>, timeoutMs: number | undefined): typeof pg.Client {
  return class extends pg.Client {
    constructor(config?: string | pg.ClientConfig) {
      super(timeoutMs === undefined || typeof config !== 'object'
        ? config : { ...config, connectionTimeoutMillis: timeoutMs });
    }

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
