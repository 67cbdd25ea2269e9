// A TCP proxy in front of PostgreSQL whose "network" a test can cut: it
// stands in for the network between a drain and its database (cables cannot
// be pulled in a test); both ends are real sockets and the server is real.
import { connect, createServer, type Socket } from 'node:net';

export interface TcpProxy {
  /** The proxy's port on 127.0.0.1. */
  port: number;
  /** Drops every open connection and refuses new ones. */
  cut(): void;
  /**
   * Stops forwarding, leaving every connection open: a network that drops
   * packets, or a server that hangs. New connections are accepted and left
   * unanswered.
   */
  freeze(): void;
  /** Stops forwarding on the connections open now; new ones are forwarded (a failover, a lost NAT entry). */
  freezeOpen(): void;
  /**
   * New connections are accepted and held, unforwarded, until the function
   * returned is called (a connection slow to reach the server, as a cancel
   * request's can be); those open now keep forwarding.
   */
  holdNew(): () => void;
  close(): Promise<void>;
}

export interface TcpProxyOptions {
  /**
   * Every new connection is terminated as soon as it is open: the server's
   * answers are forwarded up to its first ReadyForQuery, and that one goes in
   * the same write as a FATAL 57P01 (what pg_terminate_backend sends), then
   * the connection ends. The client reads both in one chunk.
   */
  terminateWhenReady?: boolean;
}

/** A proxy to the database at url, and url itself rewritten to go through it. */
export async function proxiedUrl(url: string, options: TcpProxyOptions = {}): Promise<{ proxy: TcpProxy; url: string }> {
  const target = new URL(url);
  const proxy = await tcpProxy(target.hostname, Number(target.port), options);
  target.port = String(proxy.port);
  return { proxy, url: target.href };
}

/** Forwards 127.0.0.1:<port> to target host:port. */
export async function tcpProxy(targetHost: string, targetPort: number, options: TcpProxyOptions = {}): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  let cut = false;
  let frozen = false;
  let held: Socket[] | undefined;
  const forward = (client: Socket) => {
    if (cut) return void client.destroy();
    if (frozen) return void sockets.add(client);
    if (held) {
      sockets.add(client);
      return void held.push(client);
    }
    const upstream = connect(targetPort, targetHost);
    for (const [a, b] of [[client, upstream], [upstream, client]] as const) {
      sockets.add(a);
      if (a === upstream && options.terminateWhenReady) a.on('data', terminatingAtReady(client));
      else a.pipe(b);
      a.on('error', () => b.destroy());
      a.on('close', () => {
        sockets.delete(a);
        b.destroy();
      });
    }
  };
  const server = createServer(forward);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const freezeOpen = () => {
    for (const s of sockets) {
      s.unpipe();
      s.pause();
    }
  };
  return {
    port: (server.address() as { port: number }).port,
    cut() {
      cut = true;
      server.close(); // refuse new connections
      for (const s of sockets) s.destroy();
    },
    freeze() {
      frozen = true;
      freezeOpen();
    },
    freezeOpen,
    holdNew() {
      const mine: Socket[] = [];
      held = mine;
      return () => {
        if (held === mine) held = undefined;
        for (const client of mine.splice(0)) if (!client.destroyed) forward(client);
      };
    },
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      if (!server.listening) return resolve();
      server.close(() => resolve());
    }),
  };
}

/** An ErrorResponse as PostgreSQL sends it to a backend it terminates. */
function fatalTerminated(): Buffer {
  const fields = ['SFATAL', 'VFATAL', 'C57P01', 'Mterminating connection due to administrator command']
    .map((f) => `${f}\0`).join('') + '\0';
  const body = Buffer.from(fields, 'utf8');
  const head = Buffer.alloc(5);
  head.write('E', 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

/**
 * The server-to-client side of terminateWhenReady: whole messages are passed
 * on as they come (an authentication exchange needs its answers), until the
 * first ReadyForQuery ('Z'): it and the FATAL go in one write, and the
 * connection ends. What the server says after that is dropped.
 */
function terminatingAtReady(client: Socket): (chunk: Buffer) => void {
  let pending = Buffer.alloc(0);
  let done = false;
  return (chunk) => {
    if (done) return;
    pending = Buffer.concat([pending, chunk]);
    let at = 0;
    while (pending.length >= at + 5) {
      const end = at + 1 + pending.readInt32BE(at + 1);
      if (pending.length < end) break;
      const type = String.fromCharCode(pending[at]!);
      at = end;
      if (type === 'Z') {
        done = true;
        client.end(Buffer.concat([pending.subarray(0, at), fatalTerminated()]));
        return;
      }
    }
    if (at > 0) client.write(pending.subarray(0, at));
    pending = pending.subarray(at);
  };
}

/**
 * A server on 127.0.0.1 that accepts connections and never sends a byte:
 * a database that stopped answering. node-postgres has no connect timeout
 * by default, so a client of it waits until it is ended.
 */
export async function silentServer(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => void sockets.add(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `postgres://nobody@127.0.0.1:${(server.address() as { port: number }).port}/none`,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}
