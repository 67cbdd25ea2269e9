import type { MiddlewareHandler } from 'hono';
import { timingSafeEqual } from 'hono/utils/buffer';
import { ValidationError } from '../errors.js';
import { HttpError } from './errors.js';

/**
 * Request authentication for every route but /healthz. Two ways in:
 *
 * - `Authorization: Bearer <token>`, compared in constant time.
 * - A signed request, for callers that should not hold a bearer token (a
 *   scheduler, a CI job; pg_net's jobs.run_http_drain sends the bearer): headers
 *     X-Pgdrain-Timestamp: <unix seconds, with up to 6 decimals>
 *     X-Pgdrain-Signature: sha256=<hex HMAC-SHA256(secret, message)>
 *   where message = timestamp + "\n" + METHOD + "\n" + path?query + "\n" + raw body.
 *   Binding the method and path stops a signed POST /jobs from being replayed
 *   against POST /drain. A timestamp outside ±toleranceSeconds is refused, and
 *   a signature already seen inside the window is refused too (per process).
 *
 * GET /dashboard, a page for browsers, also takes HTTP Basic with the token
 * as the password (checkDashboard).
 *
 * Everything here runs before the body is parsed and before any database work.
 */
export const TIMESTAMP_HEADER = 'x-pgdrain-timestamp';
export const SIGNATURE_HEADER = 'x-pgdrain-signature';

export interface AuthOptions {
  token?: string;
  hmacSecret?: string;
  toleranceSeconds: number;
}

/** What the header check found, for the signature check after the body is read. */
export interface PendingSignature {
  timestamp: string;
  signature: Uint8Array;
}

export type AuthVariables = { pendingSignature?: PendingSignature };

const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;
const BASIC = /^Basic[ \t]+(\S+)[ \t]*$/i;
const SIGNATURE = /^sha256=([0-9a-f]{64})$/i;
const encoder = new TextEncoder();

/**
 * The rule a credential breaks, or null. A bearer token travels as one word
 * of the Authorization header, so whitespace in it (a secret file's trailing
 * newline) would make every request fail. A blank one (empty or only
 * whitespace) is refused as such; the adapters and `pgdrain serve` take an
 * empty variable as unset (a template's optional secret), a blank one not.
 */
export function credentialRule(kind: 'token' | 'hmacSecret', value: unknown): string | null {
  // Said as such: a secret left blank is a mistake, and its length would mislead (20 spaces are 16+ characters).
  if (typeof value === 'string' && value.trim() === '') {
    return `is set but ${value === '' ? 'empty' : 'blank (only whitespace)'}: give a secret of at least 16 characters, or unset it`;
  }
  if (typeof value !== 'string' || value.length < 16) return 'must be a string of at least 16 characters';
  if (kind === 'token' && /\s/.test(value)) return 'must not contain whitespace (a trailing newline from a secret file?)';
  // An HTTP header carries bytes: clients send other characters differently (or not at all), so no bearer could match.
  if (kind === 'token' && !/^[\x21-\x7e]+$/.test(value)) return 'must be visible ASCII characters only (an Authorization header carries no others reliably)';
  return null;
}

/** Why these credentials cannot guard the API (createApp refuses them: then no one gets in), or null. */
export function credentialsError(credentials: { token?: unknown; hmacSecret?: unknown }): ValidationError | null {
  for (const field of ['token', 'hmacSecret'] as const) {
    const rule = credentials[field] === undefined ? null : credentialRule(field, credentials[field]);
    if (rule) return new ValidationError(field, rule);
  }
  if (credentials.token === undefined && credentials.hmacSecret === undefined) {
    return new ValidationError('token', 'give a token, an hmacSecret or both: the API does not run without authentication');
  }
  return null;
}

function unauthorized(message: string, field: string | null): HttpError {
  return new HttpError(401, 'unauthorized', message, field, { 'WWW-Authenticate': 'Bearer realm="pgdrain"' });
}

/** A 401 that makes a browser ask for a user name and password (GET /dashboard). */
function basicUnauthorized(message: string, field: string | null): HttpError {
  return new HttpError(401, 'unauthorized', message, field, { 'WWW-Authenticate': 'Basic realm="pgdrain"' });
}

/** The password of `Authorization: Basic <base64 of user:password>` (UTF-8), or null when it is not that. */
function basicPassword(encoded: string): string | null {
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(atob(encoded), (ch) => ch.charCodeAt(0)));
    const colon = text.indexOf(':');
    return colon < 0 ? null : text.slice(colon + 1);
  } catch {
    return null; // not base64, or not UTF-8
  }
}

/**
 * Returns the two middlewares: one before the body limit (headers only), one
 * after it (the signature); and checkDashboard, both in one for GET /dashboard.
 */
export function authentication(options: AuthOptions): {
  checkHeaders: MiddlewareHandler<{ Variables: AuthVariables }>;
  verifySignature: MiddlewareHandler<{ Variables: AuthVariables }>;
  checkDashboard: MiddlewareHandler<{ Variables: AuthVariables }>;
} {
  const key = options.hmacSecret === undefined ? undefined
    : crypto.subtle.importKey('raw', encoder.encode(options.hmacSecret), { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']);
  const replays = new ReplayGuard(options.toleranceSeconds * 2000);

  const checkHeaders: MiddlewareHandler<{ Variables: AuthVariables }> = async (c, next) => {
    const authorization = c.req.header('authorization');
    const timestamp = c.req.header(TIMESTAMP_HEADER);
    const signature = c.req.header(SIGNATURE_HEADER);
    if (authorization !== undefined) {
      const match = BEARER.exec(authorization);
      if (!match) throw unauthorized('authorization: expected "Bearer <token>"', 'authorization');
      if (options.token === undefined) throw unauthorized('bearer tokens are not accepted here: sign the request', 'authorization');
      if (!(await timingSafeEqual(match[1]!, options.token))) throw unauthorized('invalid bearer token', 'authorization');
      return next();
    }
    if (timestamp === undefined && signature === undefined) {
      throw unauthorized(`missing credentials: send "Authorization: Bearer <token>" or a signed request (${TIMESTAMP_HEADER}, ${SIGNATURE_HEADER})`, null);
    }
    if (key === undefined) throw unauthorized('signed requests are not accepted here: send a bearer token', SIGNATURE_HEADER);
    // A fraction (1733356800.123) lets identical requests sent in one second sign differently.
    if (timestamp === undefined || !/^\d{1,12}(\.\d{1,6})?$/.test(timestamp)) {
      throw unauthorized(`${TIMESTAMP_HEADER}: must be the signing time in unix seconds, with up to 6 decimals`, TIMESTAMP_HEADER);
    }
    const skew = Math.abs(Date.now() / 1000 - Number(timestamp));
    if (skew > options.toleranceSeconds) {
      throw unauthorized(`${TIMESTAMP_HEADER}: more than ${options.toleranceSeconds} s from the server's clock (stale or replayed request)`,
        TIMESTAMP_HEADER);
    }
    const hex = signature === undefined ? null : SIGNATURE.exec(signature)?.[1];
    if (!hex) throw unauthorized(`${SIGNATURE_HEADER}: must be "sha256=<64 hex digits>"`, SIGNATURE_HEADER);
    c.set('pendingSignature', { timestamp, signature: hexBytes(hex) });
    return next();
  };

  const verifySignature: MiddlewareHandler<{ Variables: AuthVariables }> = async (c, next) => {
    const pending = c.get('pendingSignature');
    if (!pending) return next(); // a bearer request
    const url = new URL(c.req.url);
    const head = encoder.encode(`${pending.timestamp}\n${c.req.method}\n${url.pathname}${url.search}\n`);
    const body = new Uint8Array(await c.req.arrayBuffer());
    const message = new Uint8Array(head.length + body.length);
    message.set(head);
    message.set(body, head.length);
    // crypto.subtle.verify compares in constant time.
    if (!(await crypto.subtle.verify('HMAC', await key!, pending.signature, message))) {
      throw unauthorized('invalid signature', SIGNATURE_HEADER);
    }
    const use = replays.use(bytesHex(pending.signature));
    if (use === 'replay') {
      throw unauthorized('signature already used (replay): identical requests need distinct timestamps, such as '
        + 'milliseconds as a fraction (1733356800.123)', SIGNATURE_HEADER);
    }
    if (typeof use === 'number') {
      throw new HttpError(429, 'rate_limited', `more than ${replays.max} signed requests within ${replays.keepMs / 1000} s: ` +
        'try again later, or use a bearer token', null, { 'Retry-After': String(use) });
    }
    return next();
  };

  /**
   * GET /dashboard: what every route takes, and HTTP Basic with the token as
   * the password (any user name), since a browser cannot send a bearer token
   * when it navigates; its 401s ask for Basic. Without a token, as every
   * route: signed requests only. A signed request's body is read whole here:
   * the route bounds it first (limitBody), as the API's bodyLimit does.
   */
  const checkDashboard: MiddlewareHandler<{ Variables: AuthVariables }> = async (c, next) => {
    const authorization = c.req.header('authorization');
    const basic = authorization === undefined ? null : BASIC.exec(authorization);
    if (options.token === undefined) {
      if (basic) throw unauthorized('basic auth takes the bearer token as its password, and this server has none: sign the request', 'authorization');
      await checkHeaders(c, async () => {});
      await verifySignature(c, async () => {});
      return next();
    }
    if (basic) {
      const password = basicPassword(basic[1]!);
      if (password === null) throw basicUnauthorized('authorization: expected "Basic <base64 of user:password>"', 'authorization');
      if (!(await timingSafeEqual(password, options.token))) {
        throw basicUnauthorized('invalid password: it is the bearer token (PGDRAIN_TOKEN), with any user name', 'authorization');
      }
      return next();
    }
    if (authorization === undefined && c.req.header(TIMESTAMP_HEADER) === undefined && c.req.header(SIGNATURE_HEADER) === undefined) {
      throw basicUnauthorized('missing credentials: log in with any user name and the bearer token as the password, '
        + 'or send "Authorization: Bearer <token>"', null);
    }
    try {
      await checkHeaders(c, async () => {});
      await verifySignature(c, async () => {});
    } catch (error) {
      if (error instanceof HttpError && error.status === 401) throw basicUnauthorized(error.message, error.field);
      throw error;
    }
    return next();
  };

  return { checkHeaders, verifySignature, checkDashboard };
}

/**
 * Remembers signatures for as long as their timestamp is acceptable, so an
 * exact replay inside the window is refused. Per process and bounded: with
 * several instances, a replay inside the window can reach another one. When
 * full of signatures still in their window, it refuses new ones rather than
 * forget one, which would let that one be replayed.
 */
export class ReplayGuard {
  private readonly seen = new Map<string, number>(); // in insertion order, so in expiry order
  constructor(readonly keepMs: number, readonly max = 100_000) {}

  /** 'fresh' (now remembered), 'replay', or when full, the seconds until a place frees up. */
  use(signature: string): 'fresh' | 'replay' | number {
    const now = Date.now();
    for (const [s, until] of this.seen) {
      if (until > now) break;
      this.seen.delete(s);
    }
    if (this.seen.has(signature)) return 'replay';
    if (this.seen.size >= this.max) {
      const [oldest] = this.seen.values();
      return Math.max(1, Math.ceil((oldest! - now) / 1000));
    }
    this.seen.set(signature, now + this.keepMs);
    return 'fresh';
  }
}

function hexBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

function bytesHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Signs a request the way the server checks it; returns the two headers. For clients and tests. */
export async function signRequest(secret: string, method: string, pathAndQuery: string, body: string,
                                  timestamp: number | string = nextTimestamp()): Promise<Record<string, string>> {
  const key = await crypto.subtle.importKey('raw', encoder.encode(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  const mac = await crypto.subtle.sign('HMAC', key, encoder.encode(`${timestamp}\n${method.toUpperCase()}\n${pathAndQuery}\n${body}`));
  return { [TIMESTAMP_HEADER]: String(timestamp), [SIGNATURE_HEADER]: `sha256=${bytesHex(new Uint8Array(mac))}` };
}

let lastTimestamp = 0;
/** Now in unix seconds with microseconds, never the same twice in this process: identical requests sign differently. */
function nextTimestamp(): string {
  lastTimestamp = Math.max(Math.round(Date.now() * 1000), lastTimestamp + 1);
  return (lastTimestamp / 1e6).toFixed(6);
}

