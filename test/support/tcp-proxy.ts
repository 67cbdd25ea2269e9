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
  close(): Promise<void>;
}

/** Forwards 127.0.0.1:<port> to target host:port. */
export async function tcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  let cut = false;
  let frozen = false;
  const server = createServer((client) => {
    if (cut) return void client.destroy();
    if (frozen) return void sockets.add(client);
    const upstream = connect(targetPort, targetHost);
    for (const [a, b] of [[client, upstream], [upstream, client]] as const) {
      sockets.add(a);
      a.pipe(b);
      a.on('error', () => b.destroy());
      a.on('close', () => {
        sockets.delete(a);
        b.destroy();
      });
    }
  });
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
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      if (!server.listening) return resolve();
      server.close(() => resolve());
    }),
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
