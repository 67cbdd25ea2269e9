// The fast walk of a value JSON would write whole (plain data, toJSON
// answers of plain data): its form with each toJSON's answer in place, or
// what it found before it gave up, for json-loss.ts lossesOf to go on from.
import { isError } from './error-text.js';

/** How deep the plain walk recurses before it leaves the value to lossesOf (iterative): a drain's own stack is not empty. */
const PLAIN_DEPTH = 1000;

/**
 * What plainForm found before it gave up, for lossesOf to take instead of
 * calling a toJSON again: by the object holding a value and its key (ROOT
 * holds the value itself), the plain form of a value it finished that holds a
 * toJSON's answer (Formed: lossesOf need not walk it), or what a toJSON
 * answered (or threw: Threw) where it gave up; in the order met (Answers,
 * where a holder was met twice). Kept only as plainForm unwinds: the fast
 * path keeps nothing.
 */
export type Kept = Map<object, Map<string, unknown>>;
export const ROOT: object = Object.freeze({});
export class Formed { constructor(readonly form: unknown) {} }
export class Threw { constructor(readonly error: unknown) {} }
class Answers { constructor(readonly list: unknown[]) {} }

/** What the plainForm running keeps (saved and restored around it: a toJSON may call pgdrain again). */
let kept: Kept | undefined;

/** Keeps what was found at a holder's key, after anything found there before. */
function keep(holder: object, key: string, found: unknown): void {
  let byKey = (kept ??= new Map()).get(holder);
  if (byKey === undefined) kept.set(holder, byKey = new Map());
  if (!byKey.has(key)) byKey.set(key, found);
  else {
    const was = byKey.get(key);
    if (was instanceof Answers) was.list.push(found);
    else byKey.set(key, new Answers([was, found]));
  }
}

/** What plainForm kept at a holder's key, taken (the next, where it met it twice), or NOTHING. */
export function take(from: Kept, holder: object, key: string): unknown {
  const byKey = from.get(holder);
  if (byKey === undefined || !byKey.has(key)) return NOTHING;
  const found = byKey.get(key);
  if (!(found instanceof Answers)) {
    byKey.delete(key);
    return found;
  }
  if (found.list.length === 1) byKey.delete(key);
  return found.list.shift();
}
export const NOTHING: unique symbol = Symbol('nothing kept');

/** What plainForm answers for a value it cannot vouch for: lossesOf looks, given what was kept. */
export class NotPlain { constructor(readonly kept: Kept) {} }

/** What plainOf answers up its recursion for a value it cannot vouch for. */
const NOT_PLAIN: unique symbol = Symbol('not plain');

/**
 * A value as JSON.stringify would see it, when it is plain objects, arrays,
 * Dates, Buffers, class instances of data (dataInstance), primitives, and
 * objects whose toJSON returns one of those (Decimal.js, Luxon, bson): JSON
 * keeps all of it but what it always drops (a class's getters). Each toJSON
 * is called once, here: the value comes back with what it returned in its
 * place (the objects holding one copied, the rest shared),
 * so JSON.stringify needs no replacer and calls none again. A NotPlain when
 * unsure (past PLAIN_DEPTH, a cycle, a throw), with what it found (kept):
 * lossesOf looks. Recursive: the fast walk, a fraction of lossesOf's cost.
 */
export function plainForm(value: unknown): unknown {
  const outer = kept;
  kept = undefined;
  try {
    const form = plainOf(value, '', 0, ROOT);
    return form === NOT_PLAIN ? new NotPlain(kept ?? new Map()) : form;
  } catch {
    return new NotPlain(kept ?? new Map()); // a getter that threw: what was kept on the way up, none
  } finally {
    kept = outer;
  }
}

function plainOf(value: unknown, key: string | number, depth: number, holder: object): unknown {
  if (typeof value !== 'object' || value === null) return typeof value === 'function' ? NOT_PLAIN : value;
  if (depth > PLAIN_DEPTH) return NOT_PLAIN;
  const proto: unknown = Object.getPrototypeOf(value);
  // Written by Date's toJSON as its ISO string (a database row's timestamps); one with a toJSON of its own is called below.
  if (proto === Date.prototype && (value as { toJSON?: unknown }).toJSON === DATE_TO_JSON) return value;
  // A bytea column's Buffer: its toJSON writes { type, data } of its bytes, nothing lost (no walk over every byte).
  if (BUFFER !== undefined && proto === BUFFER.prototype && (value as { toJSON?: unknown }).toJSON === BUFFER.prototype.toJSON) return value;
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') {
    let json: unknown;
    try {
      json = toJSON.call(value, String(key));
    } catch (error) {
      keep(holder, String(key), new Threw(error));
      return NOT_PLAIN;
    }
    const form = jsonOf(json, key, depth, holder);
    if (form === NOT_PLAIN) keep(holder, String(key), json);
    return form;
  }
  // Any array JSON writes as one (IsArray): a subclass (class List extends Array), another realm's, a Proxy of one.
  if (Array.isArray(value)) {
    const array = value as unknown[];
    let copy: unknown[] | undefined;
    let changed: number[] | undefined;
    for (let i = 0; i < array.length; i++) {
      const item = array[i];
      const form = plainOf(item, i, depth + 1, array);
      if (form === NOT_PLAIN) {
        for (const j of changed ?? []) keep(array, String(j), new Formed(copy![j]));
        return NOT_PLAIN;
      }
      if (form !== item) {
        (copy ??= Array.from({ length: array.length }, (_, j) => array[j]))[i] = form; // a plain array: no subclass's species
        (changed ??= []).push(i);
      }
    }
    return copy ?? value;
  }
  const instance = proto !== Object.prototype && proto !== null;
  if (instance && boxed(value)) return value; // JSON writes its primitive, never its fields
  if (instance && !dataInstance(value)) return NOT_PLAIN;
  let changed: [string, unknown][] | undefined;
  for (const k in value) {
    if (instance && !Object.prototype.hasOwnProperty.call(value, k)) continue; // its prototype's: JSON writes own keys only
    const item = (value as Record<string, unknown>)[k];
    const form = plainOf(item, k, depth + 1, value);
    if (form === NOT_PLAIN) {
      for (const [at, formed] of changed ?? []) keep(value, at, new Formed(formed));
      return NOT_PLAIN;
    }
    if (form !== item) (changed ??= []).push([k, form]);
  }
  return changed === undefined ? value : copyWith(value, changed);
}

/** What a toJSON returned, which JSON.stringify writes without calling its own toJSON. */
function jsonOf(json: unknown, key: string | number, depth: number, holder: object): unknown {
  if (typeof json !== 'object' || json === null) return typeof json === 'function' || typeof json === 'bigint' ? NOT_PLAIN : json;
  if (typeof (json as { toJSON?: unknown }).toJSON === 'function') return NOT_PLAIN;
  if (Object.prototype.toString.call(json) === '[object Promise]') {
    Promise.prototype.then.call(json, undefined, ignore); // lossesOf looks at it: it must not reject unhandled
    return NOT_PLAIN;
  }
  return plainOf(json, key, depth + 1, holder);
}

/**
 * An object's own fields as JSON writes them, changed ones replaced (a plain
 * object: JSON.stringify's fast case). A toJSON of its own that is a function
 * is left out (JSON leaves out a function): the copy of what a toJSON
 * returned, whose own toJSON JSON.stringify does not call, must not have one.
 */
export function copyWith(value: object, changed: [string, unknown][]): object {
  const copy: Record<string, unknown> = {};
  const put = (k: string, v: unknown) => {
    if (k === '__proto__') Object.defineProperty(copy, k, { value: v, enumerable: true, writable: true, configurable: true });
    else if (k !== 'toJSON' || typeof v !== 'function') copy[k] = v;
    else delete copy[k]; // a toJSON's result's own toJSON: JSON.stringify does not call it
  };
  for (const k of Object.keys(value)) put(k, (value as Record<string, unknown>)[k]);
  for (const [k, form] of changed) if (Object.prototype.hasOwnProperty.call(copy, k)) put(k, form); // not an inherited key (for-in's)
  return copy;
}

/** Node's Buffer where there is one (Node, workerd's nodejs_compat), read from the global: the core imports no node:*. */
const BUFFER = (globalThis as { Buffer?: { prototype: { toJSON: unknown } } }).Buffer;

/** Date's own toJSON, as it was at load: a Date whose toJSON is another (its own, or patched) is walked as any toJSON value. */
const DATE_TO_JSON: unknown = Date.prototype.toJSON;

/** A class instance JSON writes as its own fields, as it writes a plain object: no toJSON or then, not a Map, Set or Error. */
function dataInstance(value: object): boolean {
  const { toJSON, then } = value as { toJSON?: unknown; then?: unknown };
  return toJSON === undefined && then === undefined && !(value instanceof Map) && !(value instanceof Set) && !isError(value);
}

const ignore = () => {};

/** The valueOf that tells each box by its slot (throws on any other object). */
const UNBOX: Record<string, (this: unknown) => unknown> = {
  '[object Number]': Number.prototype.valueOf,
  '[object String]': String.prototype.valueOf,
  '[object Boolean]': Boolean.prototype.valueOf,
  '[object BigInt]': BigInt.prototype.valueOf,
};

/**
 * A Number, String, Boolean or BigInt object (new Number(3), Object(1n)), of
 * any realm: JSON writes it as its primitive (3), never its own fields, so
 * a field of one is neither walked nor copied (a copy would be an object).
 */
export function boxed(value: object): boolean {
  const unbox = UNBOX[Object.prototype.toString.call(value)];
  if (unbox === undefined) return false;
  try {
    unbox.call(value);
    return true;
  } catch {
    return false; // a Symbol.toStringTag that says so, of another object
  }
}

