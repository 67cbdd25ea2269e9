// A handler's result as the JSON text its job's history stores (jobs.job.result),
// or a throw saying where JSON cannot hold it, or would lose part of it.
import { isError } from './error-text.js';
import { FailJob, outcomeClassOf } from './job-errors.js';
import { cutPath, keyPath, notJsonAt, quietThenables, unstorableEscape } from './json-text.js';

/**
 * A handler's result as JSON text for the settle statement (null: none).
 * Throws when the result is not JSON or holds what PostgreSQL cannot store,
 * so the job is settled with the error: encoded before settling, one bad
 * result cannot break a batch's settle statement. What JSON cannot hold at
 * all (a BigInt, a cycle, a function or Symbol returned, nesting too deep,
 * a NUL), or would store with data lost (a Map or Set not empty, an Error,
 * a FailJob, RetryJob or SnoozeJob returned), throws a FailJob naming where
 * (unstorable): the same return would come again, and a retry would run the
 * handler's work again for it. A Promise not awaited throws a TypeError,
 * retried as a throw: the work it stands for may not be done; one anywhere
 * in the result wins over the rest.
 *
 * Looked for as JSON.stringify meets each value, after its toJSON (a Map
 * subclass with fields, a Map with own properties, a toJSON returning a
 * Map), through a replacer; a result of plain data (plainGraph: most are)
 * has none of them, told by a walk that costs a fraction of a replacer's
 * call per value (bench/result-json.ts).
 */
export function resultJson(result: unknown): string | null {
  if (result === undefined || result === null) return null;
  let json: string | undefined;
  lostSeen = false;
  try {
    json = isPlain(result) ? JSON.stringify(result) : JSON.stringify(result, seen);
  } catch (error) {
    quietThenables(result); // a BigInt beside a promise: the promise must not reject unhandled
    const at = notJsonAt(result);
    if (at !== undefined) throw unstorable(at);
    // JSON.stringify's own refusals; anything else a toJSON or getter threw: retried as the handler's throw.
    const message = (error as Error)?.message ?? String(error);
    if (/call stack/i.test(message)) throw unstorable('result is nested too deeply for JSON');
    if (/BigInt|circular/i.test(message)) throw unstorable(message);
    throw error;
  }
  if (json === undefined) throw unstorable(`result is a ${typeof result}, which JSON has no value for`);
  if (lostSeen) {
    const { first, retry } = lostParts(result);
    if (retry !== undefined) throw new TypeError(retry);
    throw unstorable(first ?? 'a value in result would lose its data in JSON (a Map, Set or Error, met once only)');
  }
  const bad = unstorableEscape(json);
  if (bad) throw unstorable(`${notJsonAt(result, 'result', true) ?? 'handler returned a string that'} has ${bad}, which PostgreSQL cannot store`);
  return json;
}

/** Whether seen met what JSON would lose: module state, so resultJson makes no closure (no-op results included). */
let lostSeen = false;

/**
 * The replacer of a result that is not plain: JSON.stringify's output unchanged, lostSeen set on a loss.
 * Every object is looked at, past the first loss too: each Promise met (one a toJSON made) gets its catch.
 */
function seen(_key: string, value: unknown): unknown {
  if (typeof value === 'object' && value !== null && lostKind(value) !== undefined) lostSeen = true;
  return value;
}

/** A result that can never be stored: its job fails at once, the reason its text (no pgdrain stack). */
function unstorable(reason: string): FailJob {
  const error = new FailJob(`result not stored: ${reason} (failed without retry: a retry would run the handler again to the same result)`);
  Object.defineProperty(error, 'stack', { value: `${error.name}: ${error.message}`, configurable: true, writable: true });
  return error;
}

/**
 * Whether a value is plain objects, arrays, Dates, class instances of data
 * (dataInstance) and primitives only (no function, so no toJSON and no
 * then): JSON keeps all of it but what it always drops (a class's getters).
 * False when unsure (a cycle or nesting past the stack, a Proxy that
 * throws): the replacer looks. Recursive: the fast walk for small results.
 */
function isPlain(value: unknown): boolean {
  try {
    return plainGraph(value);
  } catch {
    return false;
  }
}

function plainGraph(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return typeof value !== 'function';
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto === Array.prototype) {
    const array = value as unknown[];
    for (let i = 0; i < array.length; i++) if (!plainGraph(array[i])) return false;
    return true;
  }
  if (proto === Date.prototype) return true; // written by its toJSON as its ISO string (a database row's timestamps)
  // A bytea column's Buffer: its toJSON writes { type, data } of its bytes, nothing lost (no replacer over every byte).
  if (BUFFER !== undefined && proto === BUFFER.prototype && (value as { toJSON?: unknown }).toJSON === BUFFER.prototype.toJSON) return true;
  if (proto !== Object.prototype && proto !== null && !dataInstance(value)) return false;
  for (const key in value) if (!plainGraph((value as Record<string, unknown>)[key])) return false;
  return true;
}

/** Node's Buffer where there is one (Node, workerd's nodejs_compat), read from the global: the core imports no node:*. */
const BUFFER = (globalThis as { Buffer?: { prototype: { toJSON: unknown } } }).Buffer;

/** A class instance JSON writes as its own fields, as it writes a plain object: no toJSON or then, not a Map, Set or Error. */
function dataInstance(value: object): boolean {
  const { toJSON, then } = value as { toJSON?: unknown; then?: unknown };
  return toJSON === undefined && then === undefined && !(value instanceof Map) && !(value instanceof Set) && !isError(value);
}

type LostKind = 'map' | 'set' | 'promise' | 'error' | 'outcome';

/**
 * What JSON would lose of an object it writes (after its toJSON), or
 * undefined: the entries of a Map or Set not empty, a Promise (or a
 * thenable of no data but functions: a native one gets a no-op catch, as
 * one left rejecting unhandled would end the process, with the drain's jobs
 * leased), the message and stack of an Error with no own fields but its
 * name (one with others is stored as those, as any class instance), a
 * FailJob, RetryJob or SnoozeJob whatever its fields. What cannot be read
 * (a Proxy of a Map: its size throws) is undefined, stored as JSON writes it.
 */
function lostKind(node: object): LostKind | undefined {
  try {
    return lostKindOf(node);
  } catch {
    return undefined;
  }
}

function lostKindOf(node: object): LostKind | undefined {
  if (Array.isArray(node)) return undefined;
  if (node instanceof Map) return node.size > 0 ? 'map' : undefined;
  if (node instanceof Set) return node.size > 0 ? 'set' : undefined;
  if (typeof (node as { then?: unknown }).then === 'function') {
    if (Object.prototype.toString.call(node) === '[object Promise]') {
      Promise.prototype.then.call(node, undefined, ignore);
      return 'promise';
    }
    // A thenable with data of its own ({ when, then }) is written with that data: a plain object here.
    const at = (key: string) => (node as Record<string, unknown>)[key];
    if (Object.keys(node).every((key) => typeof at(key) === 'function' || at(key) === undefined)) return 'promise';
  }
  if (!isError(node)) return undefined;
  if (outcomeClassOf(node) !== undefined) return 'outcome';
  return Object.keys(node).every((key) => key === 'name') ? 'error' : undefined;
}

const ignore = () => {};

/** What one lost part is, said at its path: `result.a is a Promise: await it (JSON would store it as {})`. */
function lostText(kind: LostKind, node: object, path: string): string {
  const stored = () => { // the keys JSON writes: not those of undefined, a function or a symbol
    const keys = Object.keys(node).filter((key) => !/^(?:undefined|function|symbol)$/.test(typeof (node as Record<string, unknown>)[key]));
    return keys.length === 0 ? 'it as {}' : `only its own fields (${cutPath(keys.join(', '))})`;
  };
  switch (kind) {
    case 'promise': return `${path} is a Promise: await it (JSON would store it as {})`;
    case 'map': return `${path} is a Map: store Object.fromEntries(it) or [...it] (JSON would store ${stored()})`;
    case 'set': return `${path} is a Set: store [...it] (JSON would store ${stored()})`;
    case 'outcome': return `${path} is a ${outcomeClassOf(node)}${said(node)}: throw it, do not return it (JSON would store ${stored()})`;
    case 'error': return `${path} is an Error${said(node)}: JSON keeps neither its message nor its stack; `
      + `${path === 'result' ? 'throw it, do not return it, or return its message' : 'store its message'} (JSON would store ${stored()})`;
  }
}

/** An Error's message for a lost part's text, its head past 200 characters: ` ("smtp 550")`, or '' for none. */
function said(node: object): string {
  const message: unknown = (node as Error).message;
  if (typeof message !== 'string' || message === '') return '';
  return ` (${JSON.stringify(message.length > 200 ? `${message.slice(0, 200)}…` : message)})`;
}

/**
 * Where JSON loses data in a result (lostKind), JSON.stringify walking it
 * again with a replacer that keeps each object's path: the first part lost
 * and the first Promise (retry). Only once something was lost: a toJSON or
 * getter runs twice then. A throw this time keeps what was found.
 */
function lostParts(result: unknown): { first: string | undefined; retry: string | undefined } {
  let first: string | undefined;
  let retry: string | undefined;
  const paths = new Map<object, string>();
  try {
    JSON.stringify(result, function locate(this: object, key: string, value: unknown) {
      if (typeof value !== 'object' || value === null) return value;
      const at = paths.get(this); // none: the wrapper JSON.stringify puts the result in
      const path = at === undefined ? 'result' : Array.isArray(this) ? `${at}[${key}]` : keyPath(at, key);
      paths.set(value, path);
      const kind = lostKind(value);
      if (kind !== undefined) {
        const text = lostText(kind, value, path);
        first ??= text;
        if (kind === 'promise') retry ??= text;
      }
      return value;
    });
  } catch {
    // a toJSON or getter that throws the second time: what was found so far
  }
  return { first, retry };
}
