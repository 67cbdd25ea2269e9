// What JSON.stringify would lose of a value, looked for as it meets each
// value (after its toJSON): one rule for a handler's result (result-json.ts)
// and for what pgdrain sends as jsonb (a body, a result given to complete:
// json-text.ts jsonParam). jsonForm reads the value once, as JSON.stringify
// would, checks it and gives the copy to serialise.
import { cutPath, keyPath } from './json-path.js';
import { NOT_BOXED, unboxed } from './json-box.js';
import { named, onPath, SCAN } from './json-cycle.js';
import { lostKind, lostText, type ThenRead } from './json-lost.js';
import { quietThenables } from './json-quiet.js';

/** Whose value it is, for the advice: a handler's result, a batch answer's item, or a value given to a call. */
export type JsonUse = 'result' | 'item' | 'value';

/**
 * What jsonForm found: the first part lost and the first Promise (retry), as
 * texts; notJson when JSON.stringify would throw, with at saying where (a
 * BigInt, a cycle; bigint: it is a BigInt) or thrown when a toJSON or getter threw (the error to
 * throw in its place, and where: `reading body.a threw`, `body.a's toJSON threw`). form: what to give JSON.stringify for the value's
 * text (undefined: the value has none), a copy of plain objects, arrays and
 * primitives that runs none of the value's code; when notJson, the copy up
 * to where the walk stopped, the BigInt or the cycle in it, so that
 * JSON.stringify of it throws JSON.stringify's own error.
 */
export interface Losses { first?: string; retry?: string; notJson?: true; at?: string; bigint?: true; thrown?: { error: unknown; at: string }; form?: unknown }

/** An object or array being written: its copy, its keys (undefined: an array) and where it is. */
export interface Frame {
  node: object;
  /** Its prototype, read once (undefined: an array, whose is not read: JSON.stringify reads none). */
  proto: object | null | undefined;
  copy: Record<string, unknown> | unknown[];
  keys: string[] | undefined;
  length: number;
  next: number;
  key: string;
  /** Its then is a function (a plain object's own; a class instance's, lostKind), and none of its values yet data: a thenable of no data. */
  then: boolean;
  data: boolean;
  /** Its then as lostKind read it (a class instance's; thenRead: it did): the walk takes it for an own then key, not read twice. */
  thenRead: boolean;
  thenValue: unknown;
}

/** Node's Buffer.prototype.toJSON where there is one, read from the global: the core imports no node:*. */
const BUFFER_TO_JSON = (globalThis as { Buffer?: { prototype: { toJSON: unknown } } }).Buffer?.prototype.toJSON;

/**
 * A value's JSON text's source, checked: each value read once, in
 * JSON.stringify's order (an object's own enumerable keys, then each key's
 * value; an array's length, then each index), each toJSON called once with
 * its key, a Number, String or Boolean object (told by its slot: json-box.ts)
 * converted as JSON.stringify converts it; the form (Losses) is a copy made of what was read, so
 * JSON.stringify of it writes what one JSON.stringify of the value writes
 * and runs none of its getters, Proxy traps or toJSON again. Looked for on
 * the way (lostKind): the first part lost and the first Promise, said at
 * their path under root; every native Promise met gets a no-op catch (one
 * left rejecting unhandled would end the process, with the drain's jobs
 * leased). It stops where JSON.stringify would throw: a BigInt, a cycle, a
 * toJSON or getter that throws, and then reads what JSON.stringify did not
 * reach only to quiet its promises (json-quiet.ts). Iterative: any depth JSON.stringify writes,
 * none of the stack.
 */
export function jsonForm(value: unknown, root: string, use: JsonUse): Losses {
  const type = typeof value;
  if (type === 'string' || type === 'number' || type === 'boolean' || value === null) return { form: value }; // nothing to read
  const found: Losses = {};
  const frames: Frame[] = [];
  let deep: Set<object> | undefined;
  let top: unknown;
  const pathTo = (depth: number, key?: string): string => pathOf(frames, root, depth, key);
  let calling = false; // in a toJSON, for where a throw came from
  const read: ThenRead = { read: false, then: undefined }; // lostKind's read of a class instance's then, copied to its frame
  try {
    let raw: unknown = value;
    let key = '';
    for (;;) {
      // One value, as JSON.stringify's SerializeJSONProperty takes it: its toJSON, a box's primitive.
      let v = raw;
      let form: unknown;
      let open: object | undefined;
      let proto: object | null | undefined;
      let bytes = false;
      let thenable = false;
      let thenRead = false;
      let thenValue: unknown;
      let keys: string[] | undefined;
      if ((typeof v === 'object' && v !== null) || typeof v === 'function' || typeof v === 'bigint') { // SerializeJSONProperty's objects and BigInt
        const toJSON = (v as { toJSON?: unknown }).toJSON;
        if (typeof toJSON === 'function') {
          // A Buffer's (a bytea column's): a fresh { type, data } of its bytes, nothing of the value's to read.
          bytes = toJSON === BUFFER_TO_JSON && ArrayBuffer.isView(v);
          calling = true;
          v = toJSON.call(v, key);
          calling = false;
        }
      }
      if (bytes) form = v;
      else if (typeof v === 'object' && v !== null) {
        // An array's prototype is not read (a Proxy's getPrototypeOf trap: JSON.stringify runs none), an object's once.
        proto = Array.isArray(v) ? undefined : Object.getPrototypeOf(v) as object | null;
        const plain = proto === undefined || proto === Object.prototype || proto === null;
        // A plain object's keys read first (JSON's order): only one with none, or '0' first, may be a box given a plain
        // prototype, its tag read (a Proxy's get trap of Symbol.toStringTag); any other object's tag read once.
        if (plain && proto !== undefined) keys = Object.keys(v);
        const tag = proto === undefined || (keys !== undefined && keys.length > 0 && keys[0] !== '0') ? '' : Object.prototype.toString.call(v);
        const primitive = tag === '' ? NOT_BOXED : unboxed(v, tag, proto!);
        if (primitive !== NOT_BOXED) form = primitive;
        else {
          open = v;
          const at = onPath(frames, deep, v);
          if (at >= 0) {
            found.notJson = true;
            found.at = `${pathTo(frames.length, key)} is ${pathTo(at + 1)} again: JSON cannot hold a cycle`;
            for (let i = at; i < frames.length; i++) top = named(frames, i, top);
            put(frames[frames.length - 1], key, frames[at]!.copy);
            quietRest(frames);
            return (found.form = top, found);
          }
          if (!plain) {
            const kind = lostKind(v, proto!, tag, read);
            thenRead = read.read;
            thenValue = read.then;
            read.then = undefined;
            if (kind === 'thenable') thenable = true;
            else if (kind !== undefined) {
              const text = lostText(kind, v, cutPath(pathTo(frames.length, key)), use, frames.length === 0);
              found.first ??= text;
              if (kind === 'promise') found.retry ??= text;
            }
          }
        }
      } else if (typeof v === 'function' || typeof v === 'symbol') form = undefined;
      else form = v;
      const holder = frames.length === 0 ? undefined : frames[frames.length - 1]; // never frames[-1]: a lookup of the key '-1', slow
      if (holder !== undefined && holder.keys !== undefined) {
        if (key === 'then' && typeof raw === 'function') holder.then = true;
        else if (typeof raw !== 'function' && raw !== undefined) holder.data = true;
      }
      if (open === undefined) {
        if (holder === undefined) top = form;
        else put(holder, key, form);
        if (typeof form === 'bigint') {
          found.notJson = found.bigint = true;
          found.at = `${pathTo(frames.length, key)} is a BigInt, which JSON has none of: ${use === 'value' ? 'give' : 'return'} it as a string`;
          quietRest(frames);
          return (found.form = top, found);
        }
      } else {
        const array = Array.isArray(open);
        const copy: Record<string, unknown> | unknown[] = array ? [] : {};
        if (holder === undefined) top = copy;
        else put(holder, key, copy);
        if (!array) keys ??= Object.keys(open);
        const length = array ? lengthOf(open) : keys!.length;
        if (frames.length >= SCAN) (deep ??= new Set()).add(open);
        frames.push({ node: open, proto, copy, keys, length, next: 0, key, then: thenable, data: false, thenRead, thenValue });
      }
      // The next value: the top frame's next key, its frames closed as they end; a string, number, boolean or null copied here.
      let frame = frames.length === 0 ? undefined : frames[frames.length - 1];
      for (;;) {
        while (frame !== undefined && frame.next >= frame.length) {
          if (frame.then && !frame.data && frame.keys !== undefined) {
            const text = lostText('promise', frame.node, cutPath(pathTo(frames.length)), use, frames.length === 1);
            found.first ??= text;
            found.retry ??= text;
          }
          if (frames.length > SCAN) deep!.delete(frame.node);
          frames.pop();
          frame = frames.length === 0 ? undefined : frames[frames.length - 1];
        }
        if (frame === undefined) return (found.form = top, found);
        const at = frame.next++;
        const keys = frame.keys;
        if (keys === undefined) { // an array's index read as a number: its key's text is made only for what is not copied here
          raw = (frame.node as unknown[])[at];
          const type = typeof raw;
          if (type === 'string' || type === 'number' || type === 'boolean' || raw === null) (frame.copy as unknown[]).push(raw);
          else {
            key = String(at);
            break;
          }
        } else {
          key = keys[at]!;
          raw = frame.thenRead && key === 'then' ? frame.thenValue : (frame.node as Record<string, unknown>)[key];
          const type = typeof raw;
          if (!(type === 'string' || type === 'number' || type === 'boolean' || raw === null) || key === '__proto__') break;
          (frame.copy as Record<string, unknown>)[key] = raw;
          frame.data = true;
        }
      }
    }
  } catch (error) {
    // What threw was the value at the top frame's last key read (or the value itself): a toJSON, a getter, a Proxy's trap.
    const frame = frames.length === 0 ? undefined : frames[frames.length - 1]!;
    const path = frame === undefined ? root : pathTo(frames.length, keyAt(frame, frame.next - 1));
    found.notJson = true;
    found.thrown = { error, at: calling ? `${cutPath(path)}'s toJSON threw` : `reading ${cutPath(path)} threw` };
    delete found.form;
    quietRest(frames);
    return found;
  }
}

function keyAt(frame: Frame, index: number): string {
  return frame.keys === undefined ? String(index) : frame.keys[index]!;
}

/**
 * Where the walk stopped (a BigInt, a cycle, a throw), JSON.stringify stops
 * too, but a native Promise past it left rejecting unhandled would end the
 * process, with the drain's jobs leased: the values not read yet (each open
 * object's keys past the last read, innermost first: JSON's order) are read
 * once, only to quiet their promises (a read that throws leaves only its
 * value unread); none read before is read again.
 */
function quietRest(frames: Frame[]): void {
  for (let depth = frames.length; depth > 0; depth--) {
    const frame = frames[depth - 1]!;
    for (let i = frame.next; i < frame.length; i++) {
      const key = keyAt(frame, i);
      try {
        quietThenables(frame.thenRead && key === 'then' ? frame.thenValue : (frame.node as Record<string, unknown>)[key]);
      } catch {
        // a getter or trap that throws: only its value stays unread, not the promises past it
      }
    }
  }
}

/** The path, under root, of the value at key in the object of frames[depth - 1] (without key: of that object). */
function pathOf(frames: Frame[], root: string, depth: number, key?: string): string {
  let path = root;
  for (let i = 1; i < depth; i++) path = step(path, frames[i]!.key, frames[i - 1]!.keys === undefined);
  return key === undefined || depth === 0 ? path : step(path, key, frames[depth - 1]!.keys === undefined);
}

function step(path: string, key: string, index: boolean): string {
  return index ? `${path}[${key}]` : keyPath(path, key);
}

/** Puts a value's form in its holder's copy, as JSON writes it: an object leaves out a key whose form is undefined. */
function put(holder: Frame | undefined, key: string, form: unknown): void {
  if (holder === undefined) return;
  if (holder.keys === undefined) (holder.copy as unknown[]).push(form);
  else if (form === undefined) return;
  else if (key === '__proto__') Object.defineProperty(holder.copy, key, { value: form, enumerable: true, writable: true, configurable: true });
  else (holder.copy as Record<string, unknown>)[key] = form;
}

/** An array's length as JSON.stringify reads it (LengthOfArrayLike). */
function lengthOf(array: object): number {
  const length = +(array as { length: number }).length; // ToNumber: a BigInt or Symbol throws, as in JSON.stringify
  return Number.isNaN(length) || length <= 0 ? 0 : Math.min(Math.floor(length), Number.MAX_SAFE_INTEGER);
}
