// `pgdrain serve`'s bounds on what clients may hold: how long a request's
// headers and whole request may take to arrive, how long an idle keep-alive
// socket stays open, and how many sockets may be open at once. Node's own
// defaults allow 60 s for headers (checked every 30 s) and no cap on sockets,
// so a client dribbling headers a byte at a time (slow loris) holds a socket
// for a minute and a half, and as many of them as it likes.
//
// The cap is not Node's server.maxConnections, which refuses the newest
// connection: clients dribbling headers up to the cap would shut everyone
// else out. Past the cap, the socket with no request in progress that has
// been so longest (headers still arriving, or an idle keep-alive) is cut
// instead; a request that is being answered (a drain running for minutes)
// is never cut. Only when every socket holds one is the newcomer refused.
import type { IncomingMessage, Server, ServerOptions, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { ValidationError } from '../errors.js';

/** serve's bound flags, in seconds, as commander gives them (absent: the default). */
export interface BoundFlags {
  headersTimeout?: number;
  requestTimeout?: number;
  keepAliveTimeout?: number;
  maxConnections?: number;
}

export const DEFAULT_HEADERS_TIMEOUT_S = 10;
export const DEFAULT_REQUEST_TIMEOUT_S = 30;
/** Node's own: behind a load balancer that keeps idle sockets longer (an ALB: 60 s), raise it past that. */
export const DEFAULT_KEEP_ALIVE_TIMEOUT_S = 5;
export const DEFAULT_MAX_CONNECTIONS = 1000;

/** Node checks its header and request timeouts this often at most (its default is every 30 s). */
const MAX_CHECK_INTERVAL_MS = 1000;

const ms = (seconds: number) => Math.round(seconds * 1000);

/**
 * The node:http options for the flags. A request timeout shorter than the
 * headers' is refused (the headers are part of the request; Node would throw);
 * without --request-timeout it is the default or the headers', if longer.
 */
export function serverOptions(flags: BoundFlags): ServerOptions {
  const headers = flags.headersTimeout ?? DEFAULT_HEADERS_TIMEOUT_S;
  if (flags.requestTimeout !== undefined && flags.requestTimeout < headers) {
    throw new ValidationError('--request-timeout', `must be at least the headers timeout (${headers} s, --headers-timeout): `
      + 'the headers are part of the request');
  }
  const request = flags.requestTimeout ?? Math.max(DEFAULT_REQUEST_TIMEOUT_S, headers);
  return {
    headersTimeout: ms(headers),
    requestTimeout: ms(request),
    keepAliveTimeout: ms(flags.keepAliveTimeout ?? DEFAULT_KEEP_ALIVE_TIMEOUT_S),
    // A timeout is enforced up to this much late: a quarter of the shortest, at most 1 s.
    connectionsCheckingInterval: Math.min(MAX_CHECK_INTERVAL_MS, Math.ceil(ms(headers) / 4)),
  };
}

/**
 * Holds the server to `max` open sockets: past it, the socket longest without
 * a request in progress is cut; when every one has a request in progress, the
 * new socket is (logged once until the server is below the cap again).
 */
export function capConnections(server: Server, max: number, log: (line: string) => void): void {
  const open = new Set<Socket>();
  /** Sockets with no request in progress, longest so first (a Set keeps insertion order). */
  const idle = new Set<Socket>();
  /** Requests in progress on a socket (HTTP/1.1 pipelining may queue several). */
  const busy = new Map<Socket, number>();
  let refusing = false;
  const forget = (socket: Socket) => {
    open.delete(socket);
    idle.delete(socket);
    busy.delete(socket);
    if (open.size < max) refusing = false;
  };
  server.on('connection', (socket: Socket) => {
    open.add(socket);
    idle.add(socket);
    socket.once('close', () => forget(socket));
    if (open.size <= max) return;
    // The oldest idle socket; the newcomer itself when every other one is busy.
    const victim = idle.values().next().value!;
    if (victim === socket && !refusing) {
      refusing = true;
      log(`pgdrain: ${max} connections (--max-connections), each with a request in progress: refusing new ones until one closes`);
    }
    // Forgotten now, not on its 'close' (a later tick): the next newcomer counts without it.
    forget(victim);
    victim.destroy();
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    if (!open.has(socket)) return;
    busy.set(socket, (busy.get(socket) ?? 0) + 1);
    idle.delete(socket);
    // 'close' comes once the answer is sent or the socket is gone.
    res.once('close', () => {
      const left = (busy.get(socket) ?? 1) - 1;
      if (left > 0) busy.set(socket, left);
      else if (open.has(socket)) {
        busy.delete(socket);
        idle.add(socket); // at the end: idle from now
      }
    });
  });
}
