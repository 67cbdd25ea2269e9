// A PostgreSQL URL's user name or password with a raw / ? or #: the URL ends
// its host there, as pg reads it, and an @ after it is ambiguous. Checked where a URL comes in (the
// CLI's --dsn and DATABASE_URL, the Lambda's and the Worker's DATABASE_URL),
// each naming its own field. No node:* here: the Worker imports it.
import * as z from 'zod/mini';

/** The rule said of such a URL, after the field's name; the value is never echoed (it holds a password). */
export const UNENCODED_CREDENTIALS_RULE = 'has a / ? or # before an @, which ends the host there: percent-encode them in the '
  + 'user name and password (/ as %2F, ? as %3F, # as %23; encodeURIComponent does it), and an @ in the query (%40)';

/**
 * Whether the URL may hold a raw / ? or # in its user name or password: the
 * URL ends its host at the first of them, as pg reads it, so an @ after it
 * leaves two readings. postgres://app:12/34@db/x is host "app", port 12 to
 * pg, and postgres://u:a@b/c@host/db host "b", database "c@host/db": refused.
 * With no user before the host (postgres://h:5432/a@b/c), any later @ is
 * refused: "h:5432/a" reads as a user and password as well. With one, an @
 * in the query (?application_name=a@b) or in a database name with no / after
 * it (postgres://u@h/a@b; pg decodes no %40 there) is read as written.
 * @, :, % and spaces in the user name and password work as given.
 */
export function unencodedCredentials(value: string): boolean {
  const rest = /^postgres(?:ql)?:\/\/(.*)$/is.exec(value)?.[1];
  if (rest === undefined) return false;
  const end = rest.search(/[/?#]/);
  if (end < 0 || !rest.includes('@', end)) return false;
  if (!rest.slice(0, end).includes('@')) return true;
  // A ? or # straight after the host: postgres://u:a@b?c@db/x is host "b" to pg, as app:12?34@db is host "app".
  if (rest[end] !== '/') return true;
  const path = /^\/[^?#]*/.exec(rest.slice(end))?.[0] ?? '';
  return /@.*\//s.test(path);
}

/**
 * The URL to hand pg: a % that starts no escape written %25, a space %20.
 * pg-connection-string re-encodes a URL holding either (encodeURI, then %25
 * put back before two digits only), so every other escape with a letter in it
 * came out as its text: password 50%off%2Fx reached the server as
 * "50%off%2Fx", not "50%off/x" (a %2F in ?host= too, an IPv6 host broke).
 * Encoded here, pg never re-encodes: each %XX is an escape, the stray % and
 * the space are read as written, as pg read them in a URL with no other
 * escape. Unchanged: a URL with neither, and a Unix-socket path
 * (/run/postgresql db), which pg splits at its space. Applied twice, the same.
 */
export function pgConnectionString(value: string): string {
  if (value.startsWith('/')) return value;
  return value.replace(/%(?![0-9a-f]{2})/gi, '%25').replaceAll(' ', '%20');
}

/**
 * The URL as pg-connection-string reads it (after pgConnectionString): a user name with no host after it
 * (postgres://app:pw@/db?host=/cloudsql/p:r:i, libpq's and Cloud SQL's Unix
 * socket form) is no WHATWG URL, and pg parses it again with a host put in.
 * Undefined where pg cannot parse it either.
 */
export function pgUrl(value: string): URL | undefined {
  const url = pgConnectionString(value);
  for (const text of [url, url.replace('@/', '@___DUMMY___/')]) {
    try {
      return new URL(text);
    } catch {
      // the next reading, as pg's
    }
  }
  return undefined;
}

/** The adapters' DATABASE_URL check: a postgres:// URL whose user name and password hold no raw / ? or #. */
export const postgresUrlChecks = [
  z.regex(/^postgres(ql)?:\/\//i, 'must be a postgres:// URL'), // a URL's scheme is case-insensitive, as pg reads it
  z.refine<string>((value) => !unencodedCredentials(value), UNENCODED_CREDENTIALS_RULE),
] as const;
