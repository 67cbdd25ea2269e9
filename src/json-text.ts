import { ValidationError } from './errors.js';
import { jsonForm } from './json-loss.js';
import { cutPath, keyPath, shownKey } from './json-path.js';

export { cutPath, keyPath } from './json-path.js';

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
 * field when it is not JSON, holds what PostgreSQL cannot store, or would
 * lose data in JSON by the rule a handler's result is held to
 * (json-loss.ts: a Map or Set not empty, a Promise, an Error, a FailJob,
 * RetryJob or SnoozeJob, wherever JSON.stringify meets it, after toJSON),
 * said at its path under field (`body.user.roles is a Map: …`).
 */
export function jsonParam(value: unknown, field: string): string {
  const { first, notJson, at, bigint, thrown, form } = jsonForm(value, field || 'value', 'value');
  if (!notJson && first !== undefined) throw new ValidationError(field, `must not lose data in JSON: ${first}`);
  let json: string | undefined;
  try {
    if (thrown !== undefined) throw thrown.error; // a toJSON or getter that threw, not called again
    json = value === undefined ? 'null' : JSON.stringify(form);
  } catch (error) {
    // The promises past where the walk stopped were quieted by it (a BigInt beside a promise), nothing read again.
    // A stack overflow here is nesting too deep to serialise, not a cycle or a BigInt.
    const message = (error as Error)?.message ?? String(error);
    // A BigInt said where, as a result's is; a cycle in JSON.stringify's own words, which name its constructors and keys.
    const reason = thrown !== undefined ? `${thrown.at}: ${message}` : bigint ? at : /call stack/i.test(message) ? 'nested too deeply' : message;
    throw new ValidationError(field, `must be JSON-serialisable (${reason})`);
  }
  if (json === undefined) throw new ValidationError(field, `must be JSON-serialisable, got ${typeof value}`);
  const bad = unstorableEscape(json);
  if (bad) {
    // Where, as a result's is (notJsonAt): `jobs[3].body: ... at jobs[3].body.a[2]`; the field is still the value's.
    const root = field || 'value';
    const at = notJsonAt(form, root); // the copy JSON.stringify wrote: a toJSON's answer in place, nothing read again
    const where = at === undefined || at === root ? '' : at.startsWith('the key ') ? `, in ${cutPath(at)}` : `, at ${cutPath(at)}`;
    throw new ValidationError(field, `must not contain ${bad} (PostgreSQL jsonb cannot store it)${where}`);
  }
  return json;
}

/** How many values notJsonAt looks at before it gives up (a wide graph of shared objects is walked once per path). */
const NOT_JSON_BUDGET = 100_000;

/**
 * Where, in jsonForm's copy of a value (a toJSON's answer in place, no
 * getter read again), JSON.stringify wrote what PostgreSQL cannot store
 * (unstorableEscape), first in its order: the path of the string
 * (`result.a[2]`), or the key (`the key "a\u0000" of result.x`);
 * undefined when not found (past the budget). The copy holds no BigInt, no
 * cycle, no toJSON (jsonForm stopped at those). Iterative: no stack
 * overflow of its own.
 */
export function notJsonAt(value: unknown, root = 'result'): string | undefined {
  // A node, its path, and the object key it is under (with the object's path).
  const stack: [unknown, string, string?, string?][] = [[value, root]];
  let budget = NOT_JSON_BUDGET;
  while (stack.length > 0 && budget-- > 0) {
    const [node, path, key, parent] = stack.pop()!;
    // A key JSON leaves out (its value undefined, a function or a Symbol) is not stored: not where.
    if (key !== undefined && (node === undefined || typeof node === 'function' || typeof node === 'symbol')) continue;
    // A key is written before its value: `the key "a\u0000" of result.x`, escaped as JSON writes it.
    if (key !== undefined && unstorableEscape(JSON.stringify(key)) !== null) return `the key ${shownKey(key)} of ${parent}`;
    if (typeof node === 'string' && unstorableEscape(JSON.stringify(node)) !== null) return path;
    if (typeof node !== 'object' || node === null) continue;
    const keys = Object.keys(node);
    const array = Array.isArray(node);
    for (let i = keys.length - 1; i >= 0; i--) {
      const key = keys[i]!;
      stack.push([(node as Record<string, unknown>)[key], array ? `${path}[${key}]` : keyPath(path, key), array ? undefined : key, path]);
    }
  }
  return undefined;
}

/**
 * Where a JSON.parse error says the text went wrong, without the text: the
 * parser's message quotes it (`Unexpected token 'h', "hello" is not valid JSON`).
 */
function syntaxErrorAt(message: string): string {
  const position = / at position (\d+)/.exec(message)?.[1];
  if (position !== undefined) return ` (the first error is at position ${position})`;
  return /^Unexpected end of JSON input/.test(message) ? ' (the text ends too soon)' : '';
}

/**
 * Parses a JSON text (field names it in errors); an empty one is undefined.
 * Bad JSON is refused with where it went wrong, not the parser's message,
 * which quotes the text back (to an HTTP caller, anything it sent); the CLI,
 * whose user typed the text, asks for the parser's message (parserText).
 * JSON.parse reads numbers as doubles: an integer past 2^53 or a number past
 * the double's range would be stored altered (12345678901234567890 as 12345678901234567000,
 * 1e400 as null, 1e-400 as 0), so such a number is refused, never changed.
 */
export function parseJson(text: string, field = 'body', { parserText = false } = {}): unknown {
  if (text.trim() === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch (error) {
    const message = (error as Error).message;
    throw new ValidationError(field, `must be valid JSON${parserText ? ` (${message})` : syntaxErrorAt(message)}`);
  }
  numbersKept(text, field);
  return value;
}

/**
 * Refuses (a ValidationError naming field) a number of `text`, JSON that
 * JSON.parse has read, that the parse did not keep exactly: past 2^53, or
 * past the double's range. parseJson's check, for a caller that parsed the
 * text itself (the CLI's json(), which words bad JSON its own way).
 */
export function numbersKept(text: string, field: string): void {
  // The numbers of the text, its strings blanked out (valid JSON by now).
  for (const [token] of text.replace(/"(?:[^"\\]|\\.)*"/g, '""').matchAll(/-?\d+(\.\d+)?([eE][+-]?\d+)?/g)) {
    const n = Number(token);
    // A number past the double's range either way: 1e400 (Infinity) or 1e-400 (0, though not written as one).
    const underflow = n === 0 && /[1-9]/.test(token.replace(/[eE].*/, ''));
    if (!Number.isFinite(n) || underflow || (/^-?\d+$/.test(token) && !Number.isSafeInteger(n))) {
      throw new ValidationError(field, `the number ${token.slice(0, 40)} cannot be kept exactly (JSON numbers here are `
        + '64-bit floats, integers up to 2^53): send it as a string');
    }
  }
}
