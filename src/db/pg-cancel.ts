// Cancelling a statement on the server, as libpq's PQcancel does: what a
// caller that gave up on a statement sends, so that it does not run (or wait
// for a lock) on after the caller left.
import pg from 'pg';
import { CLOSE_WAIT_MS } from './pg-pool.js';

/** What cancelling a node-postgres Client's statement reads of it (Neon's Client has these too, and neonConfig). */
type Cancellable = {
  processID?: number | null; secretKey?: number | null; host?: string; port?: number;
  ssl?: unknown; sslNegotiation?: string; neonConfig?: unknown;
};

/**
 * Asks the server to cancel the statement `client` is running, as libpq's
 * PQcancel does: a CancelRequest (no role right needed; PgBouncer passes it
 * on) on a new connection to where the client connected, its unix socket or
 * host and port, over TLS if the client's was. Ending the client's own
 * connection is not enough: a backend waiting on a lock does not read its
 * socket, and once the lock is released it runs the statement to its commit.
 * Best effort, awaited by nothing: a statement that commits before the
 * cancel arrives has committed. Neon's Client (a WebSocket to Neon's proxy)
 * is only ended.
 */
export function cancelOnServer(client: object): Promise<void> {
  const { processID, secretKey, host, port, ssl, sslNegotiation, neonConfig } = client as Cancellable;
  if (processID == null || secretKey == null || port === undefined || neonConfig !== undefined) return Promise.resolve();
  try {
    return sendCancel(processID, secretKey, host, port, ssl, sslNegotiation);
  } catch {
    return Promise.resolve(); // a runtime with no socket of this kind: the client is ended all the same
  }
}

/** Resolves once the cancel's connection closed (the server has read it), failed, or CLOSE_WAIT_MS passed. */
function sendCancel(processID: number, secretKey: number, host: string | undefined, port: number,
                    ssl: unknown, sslNegotiation: string | undefined): Promise<void> {
  const con = new pg.Connection({ ssl, sslNegotiation } as pg.ConnectionConfig) as pg.Connection & {
    connect(portOrPath: number | string, host?: string): void;
    requestSsl(): void;
    cancel(processID: number, secretKey: number): void;
    stream: { destroy(): void };
  };
  const send = () => con.cancel(processID, secretKey);
  let done!: () => void;
  const closed = new Promise<void>((resolve) => { done = resolve; });
  const timer = setTimeout(() => { // the server closes it once it has read the request
    con.stream.destroy();
    done();
  }, CLOSE_WAIT_MS);
  (timer as { unref?: () => void }).unref?.();
  con.on('error', done);
  con.once('end', () => {
    clearTimeout(timer);
    done();
  });
  con.once('connect', () => {
    if (!ssl) send();
    else if (sslNegotiation !== 'direct') con.requestSsl();
  });
  con.once('sslconnect', send);
  if (host?.startsWith('/')) con.connect(`${host}/.s.PGSQL.${port}`);
  else con.connect(port, host);
  return closed;
}
