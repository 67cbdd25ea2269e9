// A TCP proxy in front of PostgreSQL that loses one answer: the connection
// drops just as the server answers a chosen statement. The statement ran (a
// settle or a COMMIT landed), but the client never hears it. Both ends are
// real sockets and the server is real; only the lost reply is staged.
import { connect, createServer, type Socket } from 'node:net';

export interface ReplyDropProxy {
  /** url with its host and port replaced by the proxy's. */
  url: string;
  /**
   * Arms the proxy once: on the first connection that sends a statement
   * holding `text` (after one holding `after`, on that same connection, when
   * given), the server's reply to it is swallowed and both sockets are cut.
   * Resolves when that happened.
   */
  dropReplyTo(text: string, after?: string): Promise<void>;
  /**
   * Arms the proxy once: resolves, once a connection sent a statement holding
   * `text`, with a function that cuts that connection (both sockets): the
   * client's statement fails at once, as on a client-side timeout, while a
   * server still running it (waiting on a lock) runs it on to its commit.
   */
  connectionSending(text: string): Promise<() => void>;
  close(): Promise<void>;
}

/** Forwards a proxy port on 127.0.0.1 to the server of `url`. */
export async function replyDropProxy(url: string): Promise<ReplyDropProxy> {
  const target = new URL(url);
  const sockets = new Set<Socket>();
  let wanted: { text: string; after: string | undefined; dropped: () => void } | undefined;
  let sending: { text: string; sent: (cut: () => void) => void } | undefined;
  const server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    let sawAfter = false;
    let dropNext: (() => void) | undefined;
    // node-postgres sends one statement at a time and the server answers only
    // at its Sync: the first bytes back after the statement's are its reply.
    client.on('data', (chunk: Buffer) => {
      if (sending && chunk.toString('latin1').includes(sending.text)) {
        const { sent } = sending;
        sending = undefined;
        upstream.write(chunk, () => sent(() => client.destroy())); // 'close' below cuts upstream too
        return;
      }
      const want = wanted;
      if (want) {
        const text = chunk.toString('latin1');
        if (want.after !== undefined && text.includes(want.after)) sawAfter = true;
        if ((want.after === undefined || sawAfter) && text.includes(want.text)) {
          wanted = undefined;
          dropNext = want.dropped;
        }
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!dropNext) return void client.write(chunk);
      client.destroy();
      upstream.destroy();
      dropNext();
      dropNext = undefined;
    });
    for (const [a, b] of [[client, upstream], [upstream, client]] as const) {
      sockets.add(a);
      a.on('error', () => b.destroy());
      a.on('close', () => {
        sockets.delete(a);
        b.destroy();
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const proxied = new URL(url);
  proxied.hostname = '127.0.0.1';
  proxied.port = String((server.address() as { port: number }).port);
  return {
    url: proxied.href,
    dropReplyTo: (text, after) => new Promise<void>((resolve) => (wanted = { text, after, dropped: resolve })),
    connectionSending: (text) => new Promise<() => void>((resolve) => (sending = { text, sent: resolve })),
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}
