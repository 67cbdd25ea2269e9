// A class instance (an object not plain) is read for what JSON would lose of
// it (json-lost.ts lostKind: its Symbol.toStringTag, its then) besides what
// JSON.stringify reads. Unfixed, its then was read there and again by the
// walk when it is an own key (an own then getter ran twice: stored as its
// second answer), and a Proxy's get trap of Symbol.toStringTag ran twice.
import { describe, expect, it } from 'vitest';
import { jsonParam } from '../src/json-text.js';
import { resultJson } from '../src/result-json.js';

const callers: [string, (value: unknown) => unknown][] = [['resultJson', (v) => resultJson(v)], ['jsonParam', (v) => jsonParam(v, 'body')]];

class Step {
  declare then: number;
  constructor(public n: number, count: () => number) {
    Object.defineProperty(this, 'then', { get: count, enumerable: true });
  }
}

describe.each(callers)('%s: a class instance', (_, call) => {
  it('an own then getter runs once, stored as its first answer', () => {
    let reads = 0;
    const make = () => { reads = 0; return { step: new Step(1, () => ++reads) }; };
    const text = JSON.stringify(make());
    expect(text).toBe('{"step":{"n":1,"then":1}}');
    expect(call(make())).toBe(text);
    expect(reads).toBe(1);
  });

  it("a Proxy's get trap: Symbol.toStringTag and then once each", () => {
    class Point { x = 1; }
    const gets: Record<string, number> = {};
    const point = new Proxy(new Point(), { get: (t, k, r) => ((gets[String(k)] = (gets[String(k)] ?? 0) + 1), Reflect.get(t, k, r)) });
    expect(call({ point })).toBe('{"point":{"x":1}}');
    expect(gets).toEqual({ toJSON: 1, 'Symbol(Symbol.toStringTag)': 1, then: 1, x: 1 });
  });
});
