// Quiets the promises in a value JSON.stringify did not write whole (a
// batch answer of the wrong shape, what is past where jsonForm's walk
// stopped): one left rejecting unhandled would end the process, with the
// drain's jobs leased.

/**
 * Gives every native Promise in value (own enumerable keys, arrays by
 * index, toJSON not followed, as JSON.stringify would reach it) a no-op
 * catch. Reads each value once and only what it needs: no prototype (a
 * Proxy's getPrototypeOf trap), no thenable's fields; a read that throws
 * leaves only what is under it unread. Iterative, so a value
 * as deep as JSON.stringify took cannot overflow the stack here.
 */
export function quietThenables(value: unknown): void {
  const stack: unknown[] = [value];
  const seen = new Set<object>();
  while (stack.length > 0) {
    const node = stack.pop();
    if (typeof node !== 'object' || node === null || seen.has(node)) continue;
    seen.add(node);
    // Each read on its own: a getter that throws, a revoked Proxy, leaves only
    // itself unread, not the promises beside it (popped in any order).
    try {
      if (Object.prototype.toString.call(node) === '[object Promise]') {
        Promise.prototype.then.call(node, undefined, ignore);
        continue;
      }
      if (typeof (node as { toJSON?: unknown }).toJSON === 'function') continue;
      for (const key of Object.keys(node)) {
        try {
          stack.push((node as Record<string, unknown>)[key]);
        } catch {
          // this key's getter threw: its siblings are still read
        }
      }
    } catch {
      // its tag, toJSON or keys could not be read: nothing in it is reached
    }
  }
}

const ignore = () => {};
