// Each toJSON in a value pgdrain checks and serialises (a handler's result:
// resultJson; a body or complete's result: jsonParam) is called as often as
// JSON.stringify alone calls it: once per place it meets it. Unfixed, a
// sibling that sent the value past the plain walk (a function, an empty Map,
// a BigInt, a Map not empty) had each toJSON called by plainForm, again by
// lossesOf and again by JSON.stringify: up to 3 times, and a toJSON with
// side effects (a counter, a stream's next chunk) wrote what its third call gave.
import { describe, expect, it } from 'vitest';
import { jsonParam } from '../src/json-text.js';
import { resultJson } from '../src/result-json.js';

/** A value made fresh for each run, and the toJSON calls of that run, counted by name. */
type Made = { value: unknown; calls: Map<string, number> };
const counted = (calls: Map<string, number>, name: string, answer: (n: number) => unknown = (n) => `${name}#${n}`) => ({
  toJSON: () => {
    const n = (calls.get(name) ?? 0) + 1;
    calls.set(name, n);
    return answer(n);
  },
});
const make = (build: (c: typeof counted extends (calls: Map<string, number>, ...rest: infer R) => infer T ? (...rest: R) => T : never) => unknown) => (): Made => {
  const calls = new Map<string, number>();
  return { value: build((name, answer) => counted(calls, name, answer)), calls };
};

/** What a call gives (its text, or its error's message) and how often each toJSON ran. */
function run(call: (value: unknown) => string | null, made: Made): { out: string | null; calls: Record<string, number> } {
  let out: string | null;
  try {
    out = call(made.value);
  } catch (error) {
    out = `threw: ${(error as Error).message}`;
  }
  return { out, calls: Object.fromEntries(made.calls) };
}

const fn = () => 1;
const shapes: [string, () => Made][] = [
  ['beside a function', make((c) => ({ d: c('d'), f: fn, list: [c('a'), { b: c('b') }] }))],
  ['beside an empty Map and an Error with fields', make((c) => ({ d: c('d'), m: new Map(), e: Object.assign(new Error('x'), { code: 1 }) }))],
  ['returning plain data holding one, beside a function', make((c) => ({ d: c('d', () => ({ inner: c('inner'), f: fn })) }))],
  ['returning itself, beside a function', make((c) => {
    const self = { n: 1, toJSON(): unknown { c('self').toJSON(); return self; } };
    return { self, f: fn };
  })],
  ['at the root, beside a function', make((c) => ({ ...c('root', () => ({ x: c('x'), f: fn })) }))],
  ['met twice through one holder', make((c) => { const shared = { d: c('d') }; return [shared, shared, fn]; })],
  ['beside a BigInt', make((c) => ({ d: c('d'), f: fn, n: 1n }))],
  ['beside one that throws', make((c) => ({ d: c('d'), t: c('t', () => { throw new Error('no'); }), f: fn }))],
  ['an inherited enumerable key', make((c) => ({ o: Object.assign(Object.create({ inh: c('inh') }) as object, { own: c('own') }) }))],
];

describe('toJSON is called as often as JSON.stringify calls it', () => {
  it.each(shapes)('%s', (_, made) => {
    const stringify = run((v) => JSON.stringify(v) ?? null, made());
    // The counts, and the text: what the first call answered (a counter's 1), as JSON.stringify alone writes.
    expect({ result: run((v) => resultJson(v), made()).calls, body: run((v) => jsonParam(v, 'body'), made()).calls })
      .toEqual({ result: stringify.calls, body: stringify.calls });
    const result = run((v) => resultJson(v), made()).out;
    if (!stringify.out!.startsWith('threw')) expect(result).toBe(stringify.out);
  });

  it('a Map a toJSON returns is refused with that toJSON called once', () => {
    const made = make((c) => ({ d: c('d'), m: c('m', () => new Map([[1, 2]])) }))();
    expect(run((v) => jsonParam(v, 'body'), made)).toEqual({
      out: 'threw: body: must not lose data in JSON: body.m is a Map: store Object.fromEntries(it) or [...it] (JSON would store it as {})',
      calls: { d: 1, m: 1 },
    });
  });
});
