// What JSON.stringify would lose of a value, looked for as it meets each
// value (after its toJSON): one rule for a handler's result (result-json.ts)
// and for what pgdrain sends as jsonb (a body, a result given to complete:
// json-text.ts jsonParam).
import { isError } from './error-text.js';
import { outcomeClassOf } from './job-errors.js';
import { cutPath, keyPath } from './json-path.js';

/** Whose value it is, for the advice: a handler's result, a batch answer's item, or a value given to a call. */
export type JsonUse = 'result' | 'item' | 'value';

/** What lossesOf found: the first part lost and the first Promise (retry), as texts; notJson when JSON.stringify would throw. */
export interface Losses { first?: string; retry?: string; notJson?: true }

/** How deep the plain walk recurses before it leaves the value to lossesOf (iterative): a drain's own stack is not empty. */
const PLAIN_DEPTH = 1000;

/** What plainForm answers for a value it cannot vouch for: lossesOf looks. */
export const NOT_PLAIN: unique symbol = Symbol('not plain');

/**
 * A value as JSON.stringify would see it, when it is plain objects, arrays,
 * Dates, Buffers, class instances of data (dataInstance), primitives, and
 * objects whose toJSON returns one of those (Decimal.js, Luxon, bson): JSON
 * keeps all of it but what it always drops (a class's getters). Each toJSON
 * is called once, here: the value comes back with what it returned in its
 * place (the objects holding one copied, the rest shared),
 * so JSON.stringify needs no replacer and calls none again. NOT_PLAIN when
 * unsure (past PLAIN_DEPTH, a cycle, a throw): lossesOf looks. Recursive:
 * the fast walk, a fraction of lossesOf's cost.
 */
export function plainForm(value: unknown): unknown {
  try {
    return plainOf(value, '', 0);
  } catch {
    return NOT_PLAIN;
  }
}

function plainOf(value: unknown, key: string | number, depth: number): unknown {
  if (typeof value !== 'object' || value === null) return typeof value === 'function' ? NOT_PLAIN : value;
  if (depth > PLAIN_DEPTH) return NOT_PLAIN;
  const proto: unknown = Object.getPrototypeOf(value);
  // Written by Date's toJSON as its ISO string (a database row's timestamps); one with a toJSON of its own is called below.
  if (proto === Date.prototype && (value as { toJSON?: unknown }).toJSON === DATE_TO_JSON) return value;
  // A bytea column's Buffer: its toJSON writes { type, data } of its bytes, nothing lost (no walk over every byte).
  if (BUFFER !== undefined && proto === BUFFER.prototype && (value as { toJSON?: unknown }).toJSON === BUFFER.prototype.toJSON) return value;
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') return jsonOf(toJSON.call(value, String(key)), key, depth);
  // Any array JSON writes as one (IsArray): a subclass (class List extends Array), another realm's, a Proxy of one.
  if (Array.isArray(value)) {
    const array = value as unknown[];
    let copy: unknown[] | undefined;
    for (let i = 0; i < array.length; i++) {
      const item = array[i];
      const form = plainOf(item, i, depth + 1);
      if (form === NOT_PLAIN) return NOT_PLAIN;
      if (form !== item) (copy ??= Array.from({ length: array.length }, (_, j) => array[j]))[i] = form; // a plain array: no subclass's species
    }
    return copy ?? value;
  }
  if (proto !== Object.prototype && proto !== null && !dataInstance(value)) return NOT_PLAIN;
  let changed: [string, unknown][] | undefined;
  for (const k in value) {
    const item = (value as Record<string, unknown>)[k];
    const form = plainOf(item, k, depth + 1);
    if (form === NOT_PLAIN) return NOT_PLAIN;
    if (form !== item) (changed ??= []).push([k, form]);
  }
  return changed === undefined ? value : copyWith(value, changed);
}

/** What a toJSON returned, which JSON.stringify writes without calling its own toJSON. */
function jsonOf(json: unknown, key: string | number, depth: number): unknown {
  if (typeof json !== 'object' || json === null) return typeof json === 'function' || typeof json === 'bigint' ? NOT_PLAIN : json;
  if (typeof (json as { toJSON?: unknown }).toJSON === 'function') return NOT_PLAIN;
  if (Object.prototype.toString.call(json) === '[object Promise]') {
    Promise.prototype.then.call(json, undefined, ignore); // lossesOf calls the toJSON again: this one must not reject unhandled
    return NOT_PLAIN;
  }
  return plainOf(json, key, depth + 1);
}

/** An object's own fields as JSON writes them, changed ones replaced (a plain object: JSON.stringify's fast case). */
function copyWith(value: object, changed: [string, unknown][]): object {
  const copy: Record<string, unknown> = {};
  const put = (k: string, v: unknown) => {
    if (k === '__proto__') Object.defineProperty(copy, k, { value: v, enumerable: true, writable: true, configurable: true });
    else copy[k] = v;
  };
  for (const k of Object.keys(value)) put(k, (value as Record<string, unknown>)[k]);
  for (const [k, form] of changed) if (Object.prototype.hasOwnProperty.call(copy, k)) put(k, form); // not an inherited key (for-in's)
  return copy;
}

/** Date's own toJSON, as it was at load: a Date whose toJSON is another (its own, or patched) is walked as any toJSON value. */
const DATE_TO_JSON: unknown = Date.prototype.toJSON;

/** Node's Buffer where there is one (Node, workerd's nodejs_compat), read from the global: the core imports no node:*. */
const BUFFER = (globalThis as { Buffer?: { prototype: { toJSON: unknown } } }).Buffer;

/** A class instance JSON writes as its own fields, as it writes a plain object: no toJSON or then, not a Map, Set or Error. */
function dataInstance(value: object): boolean {
  const { toJSON, then } = value as { toJSON?: unknown; then?: unknown };
  return toJSON === undefined && then === undefined && !(value instanceof Map) && !(value instanceof Set) && !isError(value);
}

/** Where a value is: its key under its holder (null for the root), built into a path only for a message. */
interface At { up: At | null; key: string; index: boolean }

function pathOf(at: At | null, root: string): string {
  const keys: At[] = [];
  for (let a = at; a !== null && a.up !== null; a = a.up) keys.push(a);
  let path = root;
  for (let i = keys.length - 1; i >= 0; i--) path = keys[i]!.index ? `${path}[${keys[i]!.key}]` : keyPath(path, keys[i]!.key);
  return path;
}

/**
 * What JSON would lose of a value (lostKind), walked as JSON.stringify walks
 * it: each value's toJSON called with its key, arrays by index, objects by
 * own enumerable keys. The first part lost and the first Promise, said at
 * their path under root; every native Promise met gets a no-op catch (one
 * left rejecting unhandled would end the process, with the drain's jobs
 * leased). A BigInt or a cycle is notJson (JSON.stringify says what); a
 * toJSON or getter that throws ends the walk as notJson too (JSON.stringify
 * throws it). Iterative: any depth JSON.stringify writes, none of the stack.
 */
export function lossesOf(value: unknown, root: string, use: JsonUse): Losses {
  const found: Losses = {};
  const onPath = new Set<object>(); // the objects from the root to here: one met again is a cycle
  // A value, where it is, and whether this is the walk leaving it.
  const stack: [unknown, At, boolean][] = [[value, { up: null, key: '', index: false }, false]];
  try {
    while (stack.length > 0) {
      const [held, at, leaving] = stack.pop()!;
      if (leaving) {
        onPath.delete(held as object);
        continue;
      }
      let node = held;
      if ((typeof node === 'object' && node !== null) || typeof node === 'bigint') {
        const toJSON = (node as { toJSON?: unknown }).toJSON;
        if (typeof toJSON === 'function') node = toJSON.call(node, at.key);
      }
      if (typeof node === 'bigint') return { ...found, notJson: true };
      if (typeof node !== 'object' || node === null) continue;
      if (onPath.has(node)) return { ...found, notJson: true };
      const kind = lostKind(node);
      if (kind !== undefined) {
        const text = lostText(kind, node, cutPath(pathOf(at, root)), use, at.up === null);
        found.first ??= text;
        if (kind === 'promise') found.retry ??= text;
      }
      onPath.add(node);
      stack.push([node, at, true]);
      if (Array.isArray(node)) {
        for (let i = node.length - 1; i >= 0; i--) stack.push([(node as unknown[])[i], { up: at, key: String(i), index: true }, false]);
      } else {
        const keys = Object.keys(node);
        for (let i = keys.length - 1; i >= 0; i--) stack.push([(node as Record<string, unknown>)[keys[i]!], { up: at, key: keys[i]!, index: false }, false]);
      }
    }
  } catch {
    return { ...found, notJson: true };
  }
  return found;
}

type LostKind = 'map' | 'set' | 'promise' | 'error' | 'outcome';

/**
 * What JSON would lose of an object it writes (after its toJSON), or
 * undefined: the entries of a Map or Set not empty, a Promise (or a
 * thenable of no data but functions: a native one gets a no-op catch), the
 * message and stack of an Error with no own fields but its name (one with
 * others is stored as those, as any class instance), a FailJob, RetryJob or
 * SnoozeJob whatever its fields. What cannot be read (a Proxy of a Map: its
 * size throws) is undefined, stored as JSON writes it.
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
function lostText(kind: LostKind, node: object, path: string, use: JsonUse, root: boolean): string {
  const stored = () => { // the keys JSON writes: not those of undefined, a function or a symbol
    const keys = Object.keys(node).filter((key) => !/^(?:undefined|function|symbol)$/.test(typeof (node as Record<string, unknown>)[key]));
    return keys.length === 0 ? 'it as {}' : `only its own fields (${cutPath(keys.join(', '))})`;
  };
  switch (kind) {
    case 'promise': return `${path} is a Promise: await it (JSON would store it as {})`;
    case 'map': return `${path} is a Map: store Object.fromEntries(it) or [...it] (JSON would store ${stored()})`;
    case 'set': return `${path} is a Set: store [...it] (JSON would store ${stored()})`;
    case 'outcome': return `${path} is a ${outcomeClassOf(node)}${said(node)}: ${outcomeAdvice(use)} (JSON would store ${stored()})`;
    case 'error': return `${path} is an Error${said(node)}: JSON keeps neither its message nor its stack; `
      + `${use === 'result' && root ? 'throw it, do not return it, or return its message' : 'store its message'}`
      + ` (JSON would store ${stored()})`;
  }
}

/** What to do with a FailJob, RetryJob or SnoozeJob found where a result is: a batch answer takes it as a job's item. */
function outcomeAdvice(use: JsonUse): string {
  switch (use) {
    case 'result': return 'throw it, do not return it';
    case 'item': return "answer it as the job's item, not inside its result (an Error item settles its job as if thrown)";
    case 'value': return 'JSON keeps neither its message nor its stack; store its message';
  }
}

/** An Error's message for a lost part's text, its head past 200 characters: ` ("smtp 550")`, or '' for none. */
function said(node: object): string {
  const message: unknown = (node as Error).message;
  if (typeof message !== 'string' || message === '') return '';
  return ` (${JSON.stringify(message.length > 200 ? `${message.slice(0, 200)}…` : message)})`;
}
