/**
 * Whether JSON text holds a \u0000 escape (an escaped backslash followed by
 * "u0000" does not count): PostgreSQL's jsonb cannot store NUL, and one such
 * value would fail the whole statement it travels in.
 */
export function hasNulEscape(json: string): boolean {
  return json.includes('\\u0000') && /(?:^|[^\\])(?:\\\\)*\\u0000/.test(json);
}
