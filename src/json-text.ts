import { ValidationError } from './errors.js';

// An escape PostgreSQL's jsonb rejects, not preceded by an escaped backslash:
// \u0000 (jsonb cannot store NUL) or a surrogate (JSON.stringify writes a
// string's unpaired surrogate as \udXXX and a paired one as itself).
const UNSTORABLE_ESCAPE = /(?:^|[^\\])(?:\\\\)*\\u(0000|d[89a-f][0-9a-f]{2})/i;

/**
 * What JSON text made by JSON.stringify holds that PostgreSQL's jsonb cannot
 * store, described for an error message, or null: one such value would fail
 * the whole statement it travels in.
 */
export function unstorableEscape(json: string): string | null {
  if (!json.includes('\\u')) return null;
  const code = UNSTORABLE_ESCAPE.exec(json)?.[1];
  if (code === undefined) return null;
  return code === '0000' ? '\\u0000' : `an unpaired surrogate (\\u${code})`;
}

/**
 * A value as JSON text for a jsonb parameter. Throws a ValidationError naming
 * field when it is not JSON or holds what PostgreSQL cannot store.
 */
export function jsonParam(value: unknown, field: string): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(value ?? null);
  } catch (error) {
    // A stack overflow here is nesting too deep to serialise, not a cycle or a BigInt.
    const message = (error as Error)?.message ?? String(error);
    const reason = /call stack/i.test(message) ? 'nested too deeply' : message;
    throw new ValidationError(field, `must be JSON-serialisable (${reason})`);
  }
  if (json === undefined) throw new ValidationError(field, `must be JSON-serialisable, got ${typeof value}`);
  const bad = unstorableEscape(json);
  if (bad) throw new ValidationError(field, `must not contain ${bad} (PostgreSQL jsonb cannot store it)`);
  return json;
}

/**
 * A handler's result as JSON text for the settle statement (null: none).
 * Throws a TypeError, so the job is nacked with it, when the result is not
 * JSON or holds what PostgreSQL cannot store: encoded before settling, one
 * bad result cannot break a batch's settle statement.
 */
export function resultJson(result: unknown): string | null {
  const json = result === undefined || result === null ? null : JSON.stringify(result);
  if (json === undefined) throw new TypeError(`handler returned a value that is not JSON (${typeof result})`);
  const bad = json === null ? null : unstorableEscape(json);
  if (bad) throw new TypeError(`handler returned a string with ${bad}, which PostgreSQL cannot store`);
  return json;
}
