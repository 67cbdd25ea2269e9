// Paths into a JSON value for error messages: `body.a[2]["b.c"]`, cut when long.

/** The longest key a path shows whole, and the most of a path an error message carries (a body may be many MB). */
const MAX_KEY = 80;
const MAX_PATH = 1000;

/**
 * The path of an object's key: `.key` for a plain name, else `["a.b"]` (a
 * dot, a quote, a space or a newline in a key would misplace it), a key past
 * MAX_KEY characters cut to its head: `["kkk…"]`.
 */
export function keyPath(path: string, key: string): string {
  if (key.length <= MAX_KEY && /^[A-Za-z_$][\w$]*$/.test(key)) return `${path}.${key}`;
  return `${path}[${shownKey(key)}]`;
}

/** A key as JSON writes it, its head only past MAX_KEY characters. */
export function shownKey(key: string): string {
  return key.length <= MAX_KEY ? JSON.stringify(key) : `${JSON.stringify(key.slice(0, MAX_KEY)).slice(0, -1)}…"`;
}

/** A path (or what is found there) for a message: past MAX_PATH characters, its head and how much was cut. */
export function cutPath(text: string): string {
  return text.length <= MAX_PATH ? text : `${text.slice(0, MAX_PATH)}… (${text.length - MAX_PATH} characters cut)`;
}
