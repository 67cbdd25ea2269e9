// A PostgreSQL URL's user name or password with a raw / ? or #: the URL ends
// its host there, as libpq and pg read it. Checked where a URL comes in (the
// CLI's --dsn and DATABASE_URL, the Lambda's and the Worker's DATABASE_URL),
// each naming its own field. No node:* here: the Worker imports it.
import * as z from 'zod/mini';

/** The rule said of such a URL, after the field's name; the value is never echoed (it holds a password). */
export const UNENCODED_CREDENTIALS_RULE = 'has a / ? or # before its @, which ends the host there: percent-encode them in the '
  + 'user name and password (/ as %2F, ? as %3F, # as %23; encodeURIComponent does it)';

/**
 * Whether a raw / ? or # in the user name or password cut the URL short, as
 * libpq reads it too: postgres://app:pa/ss@db/app is host "app", port "pa"
 * (not a URL), postgres://app:12/34@db/app host "app", port 12. @, :, % and
 * spaces there are read as meant. An @ only in the query
 * (?application_name=a@b) or in a database name without a / after it is none.
 */
export function unencodedCredentials(value: string): boolean {
  const rest = /^postgres(?:ql)?:\/\/(.*)$/is.exec(value)?.[1];
  if (rest === undefined) return false;
  const end = rest.search(/[/?#]/);
  if (end < 0 || rest.slice(0, end).includes('@') || !rest.includes('@', end)) return false;
  let pathname: string;
  try {
    pathname = new URL(value).pathname;
  } catch {
    return true;
  }
  return /@[^/]*\//.test(pathname);
}

/** The adapters' DATABASE_URL check: a postgres:// URL whose user name and password hold no raw / ? or #. */
export const postgresUrlChecks = [
  z.regex(/^postgres(ql)?:\/\//i, 'must be a postgres:// URL'), // a URL's scheme is case-insensitive, as pg reads it
  z.refine<string>((value) => !unencodedCredentials(value), UNENCODED_CREDENTIALS_RULE),
] as const;
