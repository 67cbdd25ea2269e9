// A WebSocket-to-TCP proxy like Neon's wsproxy: `ws://127.0.0.1:P/v2?address=host:port`
// pipes the socket's binary frames to a TCP connection to host:port. It lets
// @neondatabase/serverless (in Node or in workerd) reach the test PostgreSQL.
// It only forwards to loopback addresses: it is a test fixture.
import { connect, type Socket } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';

export interface WsProxy {
  /** The proxy as a neonDriver wsProxy option: `ws://127.0.0.1:P/v2`. */
  url: string;
  port: number;
  /** WebSocket connections accepted so far. */
  readonly accepted: number;
  /** Connections open now. */
  readonly open: number;
  close(): Promise<void>;
}

export async function startWsProxy(): Promise<WsProxy> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const port = (server.address() as { port: number }).port;
  const pairs = new Set<{ ws: WebSocket; tcp: Socket }>();
  let accepted = 0;

  server.on('connection', (ws, request) => {
    const address = new URL(request.url ?? '/', 'http://x').searchParams.get('address') ?? '';
    const match = /^(127\.0\.0\.1|localhost|\[::1\]):(\d+)$/.exec(address);
    if (!match) {
      ws.close(1008, `address must be a loopback host:port, got ${address}`);
      return;
    }
    accepted++;
    const tcp = connect(Number(match[2]), match[1] === '[::1]' ? '::1' : match[1]!);
    const pair = { ws, tcp };
    pairs.add(pair);
    const pending: Buffer[] = [];
    tcp.on('connect', () => {
      for (const chunk of pending.splice(0)) tcp.write(chunk);
    });
    ws.on('message', (data: Buffer) => {
      if (tcp.connecting) pending.push(data);
      else tcp.write(data);
    });
    tcp.on('data', (chunk) => ws.send(chunk));
    const end = () => {
      pairs.delete(pair);
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close();
      tcp.destroy();
    };
    ws.on('close', end);
    ws.on('error', end);
    tcp.on('close', end);
    tcp.on('error', end);
  });

  return {
    url: `ws://127.0.0.1:${port}/v2`,
    port,
    get accepted() {
      return accepted;
    },
    get open() {
      return pairs.size;
    },
    async close() {
      for (const { ws, tcp } of pairs) {
        ws.terminate();
        tcp.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
