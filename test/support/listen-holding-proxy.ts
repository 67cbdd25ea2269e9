// A proxy in front of the test database that keeps the first LISTEN sent
// (and everything after it on that connection) from reaching the server:
// a slow network, holding open the window in which a job-events session has
// connected but not yet listened. What ends that session is the test's
// (a real pg_terminate_backend).
import { connect, createServer, type Socket } from 'node:net';
import { afterAll } from 'vitest';

export interface ListenHoldingProxy {
  url: string;
  /** The first LISTEN has arrived (and is held). */
  held(): boolean;
  /** LISTENs that arrived, the held one included. */
  listens(): number;
  /** Connections accepted, and those whose client side closed. */
  connections(): number;
  closed(): number;
}

/** Forwards to the database at dbUrl; closed after the file's tests. */
export async function listenHoldingProxy(dbUrl: string): Promise<ListenHoldingProxy> {
  const target = new URL(dbUrl);
  const sockets = new Set<Socket>();
  let listens = 0;
  let connections = 0;
  let closed = 0;
  let held = false;
  const server = createServer((client) => {
    connections++;
    let holding = false;
    const upstream = connect(Number(target.port), target.hostname);
    client.once('close', () => closed++);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
    client.on('data', (chunk: Buffer) => {
      if (chunk.includes('listen pgdrain') && listens++ === 0) held = holding = true;
      if (!holding) upstream.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  afterAll(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  const url = new URL(dbUrl);
  url.host = `127.0.0.1:${(server.address() as { port: number }).port}`;
  return { url: url.href, held: () => held, listens: () => listens, connections: () => connections, closed: () => closed };
}
