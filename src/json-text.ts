/**
 * Whether JSON text holds a \u0000 escape (an escaped backslash followed by
 * "u0000" does not count): PostgreSQL's jsonb cannot store NUL, and one such
 * value would fail the whole statement it travels in.
 */
export function hasNulEscape(json: string): boolean {
  return json.includes('\\u0000') && /(?:^|[^\\])(?:\\\\)*\\u0000/.test(json);
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
  if (json !== null && hasNulEscape(json)) throw new TypeError('handler returned a string with \\u0000, which PostgreSQL cannot store');
  return json;
}
