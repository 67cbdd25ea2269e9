// The most of an error's text a job keeps (jobs.job.error, last_error, the
// settle that carries it): a handler's Error can hold megabytes (an HTTP
// client's error with the response body in its message). Cut here, in the
// drain, and again by jobs.settle_arrays for SQL callers (jobs.cut_error, the
// same rule), so a settle never carries more.

/** Characters (UTF-16 code units here, characters in SQL) an error keeps at most, its cut marker included: 8 KiB of text, as
 *  Sentry keeps of a message. Not more: one batch call's error is sent once per job, so 500 of
 *  them at 64 KiB made a 33 MB settle that outlasted a drain's overrun on a loaded machine. */
export const MAX_ERROR_CHARS = 8_192;

/** What a cut error keeps of its text: room is left for the marker. */
const KEPT = MAX_ERROR_CHARS - 64;

/** The error as stored: past MAX_ERROR_CHARS, its head, then `\n… (N characters cut)`. */
export function cutError(text: string): string {
  if (text.length <= MAX_ERROR_CHARS) return text;
  // Not half of a surrogate pair: the database would take a lone one as U+FFFD.
  const code = text.charCodeAt(KEPT - 1);
  const end = code >= 0xd800 && code <= 0xdbff ? KEPT - 1 : KEPT;
  return `${text.slice(0, end)}\n… (${text.length - end} characters cut)`;
}

/** A thrown value as a job's error: an Error's stack, else the value as JSON; no NUL; cut (cutError). */
export function describe(error: unknown): string {
  // PostgreSQL text cannot hold NUL: one in an error would fail the whole batch's settle.
  // Then cut to what a job keeps.
  return cutError(describeRaw(error).replaceAll('\0', '\\0'));
}

function describeRaw(error: unknown): string {
  try {
    if (isError(error)) return error.stack ?? `${error.name}: ${error.message}`;
    try {
      return `non-Error thrown: ${JSON.stringify(error)}`;
    } catch {
      return `non-Error thrown: ${String(error)}`;
    }
  } catch {
    return 'thrown a value that cannot be read (a revoked Proxy, a getter that throws)'; // settled all the same
  }
}

/**
 * An Error of this realm or of another (node:vm, an iframe), where instanceof
 * misses it. May throw (a revoked Proxy).
 */
export function isError(value: unknown): value is Error {
  return value instanceof Error || Object.prototype.toString.call(value) === '[object Error]';
}
