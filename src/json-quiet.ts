// Quiets the promises in a value JSON.stringify did not write whole (a
// batch answer of the wrong shape, what is past where jsonForm's walk
// stopped): one left rejecting unhandled would end the process, with the
// drain's jobs leased.

/**
 * Gives every native Promise in value (own enumerable keys, arrays by
 * index, toJSON not followed, as JSON.stringify would reach it) a no-op
 * catch. Reads each value once and only what it needs: no prototype (a
 * Proxy's getPrototypeOf trap), no thenable's fields. Iterative, so a value
 * as deep as JSON.stringify took cannot overflow the stack here.
 */
export function quietThenables(value: unknown): void {
  const stack: unknown[] = [value];
  const seen = new Set<object>();
  try {
    while (stack.length > 0) {
      const node = stack.pop();
      if (typeof node !== 'object' || node === null || seen.has(node)) continue;
      seen.add(node);
      if (Object.prototype.toString.call(node) === '[object Promise]') {
        Promise.prototype.then.call(node, undefined, ignore);
        continue;
      }
      if (typeof (node as { toJSON?: unknown }).toJSON === 'function') continue;
      for (const key of Object.keys(node)) stack.push((node as Record<string, unknown>)[key]);
    }
  } catch {
    // A getter that throws, a revoked Proxy: what is past it stays unread, as JSON.stringify leaves it.
  }
}

const ignore = () => {};
