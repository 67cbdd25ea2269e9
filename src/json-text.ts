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
  const { first, notJson, thrown, form } = jsonForm(value, field || 'value', 'value');
  if (!notJson && first !== undefined) throw new ValidationError(field, `must not lose data in JSON: ${first}`);
  let json: string | undefined;
  try {
    if (thrown !== undefined) throw thrown.error; // a toJSON or getter that threw, not called again
    json = value === undefined ? 'null' : JSON.stringify(form);
  } catch (error) {
    quietThenables(value, field || 'value'); // a BigInt beside a promise: the promise must not reject unhandled
    // A stack overflow here is nesting too deep to serialise, not a cycle or a BigInt.
    const message = (error as Error)?.message ?? String(error);
    const reason = /call stack/i.test(message) ? 'nested too deeply' : message;
    throw new ValidationError(field, `must be JSON-serialisable (${reason})`);
  }
  if (json === undefined) throw new ValidationError(field, `must be JSON-serialisable, got ${typeof value}`);
  const bad = unstorableEscape(json);
  if (bad) {
    // Where, as a result's is (notJsonAt): `jobs[3].body: ... at jobs[3].body.a[2]`; the field is still the value's.
    const root = field || 'value';
    const at = notJsonAt(form, root, true); // the copy JSON.stringify wrote: a toJSON's answer in place, nothing read again
    const where = at === undefined || at === root ? '' : at.startsWith('the key ') ? `, in ${cutPath(at)}` : `, at ${cutPath(at)}`;
    throw new ValidationError(field, `must not contain ${bad} (PostgreSQL jsonb cannot store it)${where}`);
  }
  return json;
}

/** How many values notJsonAt looks at before it gives up (a wide graph of shared objects is walked once per path). */
const NOT_JSON_BUDGET = 100_000;

/**
 * Where JSON.stringify failed in a value, first in its order: `result.a.b is a
 * BigInt`, `result.self is result again (a cycle)`; with strings, the path of
 * the first string PostgreSQL cannot store (unstorableEscape), or the key (`the key "a\u0000"
 * of result.x`), looked for in jsonForm's copy (a toJSON's answer in place, no
 * getter read again); undefined when not found (behind a toJSON, a getter,
 * past the budget). Read only after it threw.
 * Iterative, as quietThenables: no stack overflow of its own.
 */
export function notJsonAt(value: unknown, root = 'result', strings = false): string | undefined {
  const onPath = new Map<object, string>(); // the objects from root to here: one met again is a cycle
  // A node, its path, whether this is the walk leaving it, and the object key it is under (with the object's path).
  const stack: [unknown, string, boolean, string?, string?][] = [[value, root, false]];
  let budget = NOT_JSON_BUDGET;
  try {
    while (stack.length > 0 && budget-- > 0) {
      const [node, path, leaving, key, parent] = stack.pop()!;
      if (leaving) {
        onPath.delete(node as object);
        continue;
      }
      if (strings) {
        // A key JSON leaves out (its value undefined, a function or a Symbol) is not stored: not where.
        if (key !== undefined && (node === undefined || typeof node === 'function' || typeof node === 'symbol')) continue;
        // A key is written before its value: `the key "a\u0000" of result.x`, escaped as JSON writes it.
        if (key !== undefined && unstorableEscape(JSON.stringify(key)) !== null) return `the key ${shownKey(key)} of ${parent}`;
        if (typeof node === 'string' && unstorableEscape(JSON.stringify(node)) !== null) return path;
      } else if (typeof node === 'bigint') return `${path} is a BigInt, which JSON has none of: return it as a string`;
      if (typeof node !== 'object' || node === null) continue;
      const again = onPath.get(node);
      if (again !== undefined) return `${path} is ${again} again: JSON cannot hold a cycle`;
      if (typeof (node as { toJSON?: unknown }).toJSON === 'function') continue;
      onPath.set(node, path);
      stack.push([node, path, true]);
      const keys = Object.keys(node);
      for (let i = keys.length - 1; i >= 0; i--) {
        const key = keys[i]!;
        const array = Array.isArray(node);
        stack.push([(node as Record<string, unknown>)[key], array ? `${path}[${key}]` : keyPath(path, key), false, array ? undefined : key, path]);
      }
    }
  } catch {
    // a getter that throws on a second read, a revoked Proxy: JSON.stringify's own reason instead
  }
  return undefined;
}

/**
 * What JSON would write as {} with data lost, first in a value as
 * JSON.stringify walks it (own enumerable keys, arrays by index, toJSON
 * not followed): a Promise, a thenable of no own data but functions, a Map
 * or Set that is not empty, an Error of no own enumerable fields (its
 * message and stack are not); said with its path (`body.a[2].b is a
 * Promise: await it`); undefined when none. Every native promise found gets
 * a no-op catch: left rejecting unhandled, it would end the process, with
 * the drain's jobs leased. Iterative, so a value as deep as JSON.stringify
 * took cannot overflow the stack here. (A handler's result is looked at as
 * JSON.stringify meets it, toJSON followed: result-json.ts.)
 */
export function quietThenables(value: unknown, root = 'result'): string | undefined {
  const stack: [unknown, string][] = [[value, root]];
  const seen = new Set<object>();
  let found: string | undefined;
  try {
    while (stack.length > 0) {
      const [node, path] = stack.pop()!;
      if (typeof node !== 'object' || node === null || seen.has(node)) continue;
      seen.add(node);
      const keys = Object.keys(node);
      const at = (key: string) => (node as Record<string, unknown>)[key];
      if (typeof (node as { then?: unknown }).then === 'function') {
        if (Object.prototype.toString.call(node) === '[object Promise]') {
          Promise.prototype.then.call(node, undefined, ignore);
          found ??= `${path} is a Promise: await it`;
          continue;
        }
        // A thenable with data of its own ({ when, then }) is written with that data: a plain object here.
        if (keys.every((key) => typeof at(key) === 'function' || at(key) === undefined)) {
          found ??= `${path} is a Promise: await it`;
          continue;
        }
      }
      if (typeof (node as { toJSON?: unknown }).toJSON === 'function') continue;
      // An Error of this realm or another (node:vm), as error-text.ts isError tells it.
      if (keys.length === 0 && (node instanceof Error || Object.prototype.toString.call(node) === '[object Error]')) {
        found ??= `${path} is an Error: JSON keeps neither its message nor its stack; store its message`;
        continue;
      }
      if (node instanceof Map && node.size > 0) found ??= `${path} is a Map: store Object.fromEntries(it) or [...it]`;
      if (node instanceof Set && node.size > 0) found ??= `${path} is a Set: store [...it]`;
      // Pushed in reverse, so the first in JSON order is found first.
      for (let i = keys.length - 1; i >= 0; i--) {
        const key = keys[i]!;
        stack.push([at(key), Array.isArray(node) ? `${path}[${key}]` : keyPath(path, key)]);
      }
    }
  } catch {
    // A getter that throws on a second read, a revoked Proxy: JSON.stringify read it once; keep its text.
  }
  return found;
}

const ignore = () => {};

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
 * 1e400 as null), so such a number is refused, never changed.
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
  // The numbers of the text, its strings blanked out (valid JSON by now).
  for (const [token] of text.replace(/"(?:[^"\\]|\\.)*"/g, '""').matchAll(/-?\d+(\.\d+)?([eE][+-]?\d+)?/g)) {
    const n = Number(token);
    if (!Number.isFinite(n) || (/^-?\d+$/.test(token) && !Number.isSafeInteger(n))) {
      throw new ValidationError(field, `the number ${token.slice(0, 40)} cannot be kept exactly (JSON numbers here are `
        + '64-bit floats, integers up to 2^53): send it as a string');
    }
  }
  return value;
}
