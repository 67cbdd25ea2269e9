// The most of an error's text a job keeps (jobs.job.error, last_error, the
// settle that carries it): a handler's Error can hold megabytes (an HTTP
// client's error with the response body in its message). Cut here, in the
// drain, and again by jobs.settle_arrays for SQL callers (jobs.cut_error, the
// same rule), so a settle never carries more.

/** Characters (code points, as PostgreSQL counts them) an error keeps at most, its cut marker included: 8 KiB of text, as
 *  Sentry keeps of a message. Not more: one batch call's error is sent once per job, so 500 of
 *  them at 64 KiB made a 33 MB settle that outlasted a drain's overrun on a loaded machine. */
export const MAX_ERROR_CHARS = 8_192;

/** What a cut error keeps of its text: room is left for the marker. */
const KEPT = MAX_ERROR_CHARS - 64;

/**
 * The error as stored: past MAX_ERROR_CHARS characters, its first KEPT, then
 * `\n… (N characters cut)`, as jobs.cut_error: characters are code points
 * (an emoji is one, two UTF-16 units here), so the drain keeps what the
 * database would and its marker counts the same. Only a text longer than
 * MAX_ERROR_CHARS units can be over; only it is counted.
 */
export function cutError(text: string): string {
  if (text.length <= MAX_ERROR_CHARS) return text;
  let chars = 0;
  let end = 0; // where the first KEPT characters end, in units
  for (let i = 0; i < text.length; i++, chars++) {
    if (chars === KEPT) end = i;
    // A surrogate pair is one character (a lone half is one too: the database takes it as U+FFFD).
    if (isHigh(text.charCodeAt(i)) && isLow(text.charCodeAt(i + 1))) i++;
  }
  if (chars <= MAX_ERROR_CHARS) return text;
  return `${text.slice(0, end)}\n… (${chars - KEPT} characters cut)`;
}

/** s's first n UTF-16 units, or one less where the nth would split a surrogate pair (an emoji cut in half is not text). */
export function sliceUnits(s: string, n: number): string {
  return s.slice(0, n > 0 && isHigh(s.charCodeAt(n - 1)) && isLow(s.charCodeAt(n)) ? n - 1 : n);
}

const isHigh = (code: number) => code >= 0xd800 && code <= 0xdbff;
const isLow = (code: number) => code >= 0xdc00 && code <= 0xdfff;

/**
 * A thrown value as a job's error: an Error's stack, then its `cause` chain
 * and an AggregateError's `errors` (where Node's fetch puts the reason:
 * `TypeError: fetch failed`, caused by `connect ECONNREFUSED …`), else the
 * value as JSON; no NUL; cut (cutError).
 */
export function describe(error: unknown): string {
  // PostgreSQL text cannot hold NUL: one in an error would fail the whole batch's settle.
  // Then cut to what a job keeps.
  return cutError(describeRaw(error).replaceAll('\0', '\\0'));
}

/** How deep a cause chain (and an AggregateError's errors, how many) the text follows: enough to reach the reason. */
const MAX_CAUSES = 5;
const MAX_AGGREGATED = 10;
/** How many causes and errors[] entries one text shows in all: 10 errors on each of 5 levels are 111,110, seconds of text
 *  building for a text cut to 8 KiB. */
const MAX_NESTED = 50;

function describeRaw(error: unknown): string {
  try {
    if (readsAsError(error)) return withCauses(error, new Set([error]), 0);
    return `non-Error thrown: ${describeEvent(error, new Set([error]), 0) ?? describeValue(error)}`;
  } catch {
    return UNREADABLE; // settled all the same
  }
}

const UNREADABLE = 'thrown a value that cannot be read (a revoked Proxy, a getter that throws)';

/** The Error's own text, then its errors and cause, each read on its own: a getter that throws loses only its part. */
function withCauses(error: Error, seen: Set<unknown>, depth: number): string {
  const stack: unknown = error.stack;
  // A stack set to a non-string (a library's own value) is not text: its name and message instead.
  let text = typeof stack === 'string' ? stack : `${error.name}: ${error.message}`;
  if (depth >= MAX_CAUSES) return text;
  text += readPart(() => {
    const errors: unknown = (error as { errors?: unknown }).errors;
    if (!Array.isArray(errors)) return '';
    let part = '';
    errors.slice(0, MAX_AGGREGATED).forEach((inner, i) => { part += `\n[errors[${i}]] ${nested(inner, seen, depth)}`; });
    if (errors.length > MAX_AGGREGATED) part += `\n[errors] … ${errors.length - MAX_AGGREGATED} more`;
    return part;
  });
  text += readPart(() => {
    const cause: unknown = 'cause' in error ? error.cause : undefined; // read once: a getter may be costly
    return cause === undefined ? '' : `\nCaused by: ${nested(cause, seen, depth)}`;
  });
  return text;
}

function readPart(read: () => string): string {
  try {
    return read();
  } catch {
    return `\n(${UNREADABLE})`;
  }
}

function nested(value: unknown, seen: Set<unknown>, depth: number): string {
  if (seen.has(value)) return '(a cause already shown above)';
  if (seen.size > MAX_NESTED) return '(not shown: more causes than a job\'s error keeps)';
  seen.add(value);
  try {
    return readsAsError(value) ? withCauses(value, seen, depth + 1) : describeEvent(value, seen, depth + 1) ?? describeValue(value);
  } catch {
    return `(${UNREADABLE})`; // its siblings in errors[] kept
  }
}

/**
 * Whether a thrown value is written as an Error (isError). A Proxy whose
 * getPrototypeOf trap throws cannot tell by instanceof: one with a string
 * stack is an Error's all the same (its stack read through the Proxy), else
 * it is written as any other value: only what the trap hides is lost.
 */
function readsAsError(value: unknown): value is Error {
  try {
    return isError(value);
  } catch {
    try {
      return typeof (value as { stack?: unknown }).stack === 'string';
    } catch {
      return false;
    }
  }
}

/** The fields of a thrown event that say what happened: a CloseEvent's code, reason and wasClean too (a WebSocket's close). */
const EVENT_FIELDS = ['type', 'message', 'code', 'reason', 'wasClean'] as const;

/**
 * A thrown event, or an object like one (an ErrorEvent, an Event: the Neon
 * driver rejects with its WebSocket's error event, in a Worker too): its
 * `type`, `message` and `error` are getters on its prototype, which JSON
 * leaves out ('{}'). Its class, type and message, then its error as a cause.
 * Undefined for a value with none of them inherited (a plain object is JSON).
 */
function describeEvent(value: unknown, seen: Set<unknown>, depth: number): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  // Each read on its own (a Proxy's trap, a getter that throws): what cannot be read is named once, the rest kept.
  let unreadable = false; // as withCauses names a part it cannot read
  const read = <T>(get: () => T): T | undefined => { try { return get(); } catch { unreadable = true; return undefined; } };
  // A prototype that cannot be read (a Proxy's getPrototypeOf trap) may still be an event's: its fields are read on.
  const proto = read(() => Object.getPrototypeOf(value) as unknown);
  if (proto === null || proto === Object.prototype) return undefined;
  const inherited = (key: string): unknown => read(() => {
    if (!(key in value) || Object.prototype.hasOwnProperty.call(value, key)) return undefined; // own fields are in its JSON
    const field: unknown = (value as Record<string, unknown>)[key];
    return typeof field === 'function' ? undefined : field; // a method of that name says nothing
  });
  const fields = EVENT_FIELDS.map((key) => [key, inherited(key)] as const).filter(([, v]) => v !== undefined);
  const error = inherited('error');
  if (fields.length === 0 && error === undefined) return undefined;
  const name = read(() => (value as { constructor?: { name?: unknown } }).constructor?.name);
  const own = describeValue(value);
  // A field JSON cannot write (a BigInt, a cycle) as describeValue writes it, not the whole text lost.
  const written = fields.map(([key, v]) => `${JSON.stringify(key)}:${read(() => describeValue(v)) ?? '(unreadable)'}`);
  let text = `${typeof name === 'string' && name ? name : 'object'} {${written.join(',')}}${own === '{}' ? '' : ` ${own}`}`;
  if (unreadable) text += `\n(${UNREADABLE})`;
  if (depth < MAX_CAUSES && error !== undefined && error !== null) text += `\nCaused by: ${nested(error, seen, depth)}`;
  return text;
}

/** A value that is not an Error: as JSON, else (undefined from JSON: a symbol, a function; or a throw) as text. */
function describeValue(value: unknown): string {
  try {
    const json = JSON.stringify(value);
    if (json !== undefined) return json;
  } catch { /* a cycle, a BigInt: its text below */ }
  return typeof value === 'function' ? `function ${value.name || '(anonymous)'}` : String(value);
}

/**
 * An Error of this realm or of another (node:vm, an iframe), where instanceof
 * misses it. May throw (a revoked Proxy).
 */
export function isError(value: unknown): value is Error {
  return value instanceof Error || Object.prototype.toString.call(value) === '[object Error]';
}
