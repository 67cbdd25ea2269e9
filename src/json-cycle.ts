// A cycle in the value json-loss.ts jsonForm walks: where it closes, and
// its objects' constructors given to the copy, for JSON.stringify's message.
import type { Frame } from './json-loss.js';

/** Objects on the path past this depth are also kept in a Set: the cycle check stays cheap at any depth. */
export const SCAN = 64;

/**
 * Gives the copy of frames[i] (an object in a cycle) its object's
 * constructor, for JSON.stringify's message (`starting at object with
 * constructor 'Node'`): V8 names an object by the first constructor data
 * property on its prototype chain. The copy's prototype is a null-prototype
 * object holding only that (no toJSON). An array copy (V8 names one made by
 * [] 'Array' whatever its prototype) of an Array subclass is made again by
 * Reflect.construct with such a prototype, put in its holder's copy in the
 * old one's place: answers top, the walk's root copy, replaced if it was it.
 */
export function named(frames: Frame[], i: number, top: unknown): unknown {
  const frame = frames[i]!;
  try {
    const array = frame.keys === undefined;
    // An array's prototype read here only: a cycle, JSON.stringify's error to come.
    for (let proto = array ? Object.getPrototypeOf(frame.node) as object | null : frame.proto!; proto !== null; proto = Object.getPrototypeOf(proto) as object | null) {
      const constructor: unknown = Object.getOwnPropertyDescriptor(proto, 'constructor')?.value;
      if (typeof constructor !== 'function') continue;
      if (constructor === (array ? Array : Object)) return top;
      const prototype = Object.create(null, { constructor: { value: constructor } }) as object;
      if (!array) Object.setPrototypeOf(frame.copy, prototype);
      else {
        const like = function () {} as unknown as new () => unknown[];
        like.prototype = prototype as unknown[];
        const copy = Reflect.construct(Array, [], like) as unknown[];
        (frame.copy as unknown[]).forEach((item, index) => (copy[index] = item));
        const holder = frames[i - 1];
        if (holder === undefined) top = copy;
        else if (holder.keys === undefined) (holder.copy as unknown[])[holder.copy.length as number - 1] = copy;
        else Object.defineProperty(holder.copy, frame.key, { value: copy, enumerable: true, writable: true, configurable: true });
        frame.copy = copy;
      }
      return top;
    }
  } catch {
    // a Proxy's trap that throws: named 'Object' or 'Array', the cycle still said
  }
  return top;
}

/** Where node is on the path from the root (its frame's index), or -1. */
export function onPath(frames: Frame[], deep: Set<object> | undefined, node: object): number {
  const scan = frames.length < SCAN ? frames.length : SCAN;
  for (let i = 0; i < scan; i++) if (frames[i]!.node === node) return i;
  return deep !== undefined && deep.has(node) ? frames.findIndex((f) => f.node === node) : -1;
}
