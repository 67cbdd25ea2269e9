// Past where a refused value stops (a BigInt), its promises are still caught
// (one rejecting unhandled ends the process, the drain's jobs leased), even
// beside a getter that throws. Unfixed, the first throwing getter read past
// the stop ended the whole search: a promise after it in an outer object, or
// before it in the same one (searched last to first), rejected unhandled.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { jsonParam } from '../src/json-text.js';
import { resultJson } from '../src/result-json.js';

const throwing = () => ({ get bad(): number { throw new Error('boom'); } });
const shapes: [string, (reject: () => Promise<never>) => unknown][] = [
  ['a throwing getter beside the BigInt, a promise in an outer object', (reject) => ({ x: { a: 1n, get bad(): number { throw new Error('boom'); } }, p: reject() })],
  ['a promise before a throwing getter, both past the BigInt', (reject) => ({ a: 1n, later: [{ p: reject(), q: throwing() }] })],
];
const callers: [string, (value: unknown) => unknown][] = [['resultJson', (v) => resultJson(v)], ['jsonParam', (v) => jsonParam(v, 'body')]];

let unhandled: string[] = [];
const record = (error: unknown) => void unhandled.push((error as Error).message);
beforeEach(() => { unhandled = []; process.prependListener('unhandledRejection', record); });
afterEach(() => void process.off('unhandledRejection', record));

describe.each(callers)('%s: past a BigInt', (_, call) => {
  it.each(shapes)('%s: refused, the promise caught', async (name, make) => {
    expect(() => call(make(() => Promise.reject(new Error(`unhandled: ${name}`))))).toThrow(/BigInt/);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(unhandled).toEqual([]);
  });
});
