// What pgdrain sends and stores of a value it takes is JSON.stringify's text
// of it, byte for byte: a handler's result (resultJson) and a jsonb
// parameter (jsonParam: bodies, complete's result), over many shapes a
// caller hands it (json-loss.ts jsonForm copies what it reads; the copy
// must be written as the original is). An array
// subclass or another realm's array holding a toJSON value was copied as an
// object: stored {"0":…,"1":…} where JSON.stringify writes […].
import vm from 'node:vm';
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { jsonParam } from '../src/json-text.js';
import { resultJson } from '../src/result-json.js';
import { testDb } from './support/db.js';
import { resultRows } from './support/result-rows.js';

class Decimal { constructor(private readonly text: string) {} toJSON() { return this.text; } }
class WithGetter { a = 1; get b() { return 2; } }
class List<T> extends Array<T> {}
class Money extends Number {}
const keyed = { toJSON: (key: string) => `key ${key}` };

const shapes: [string, unknown][] = [
  ['Dates, an invalid one', { at: new Date(0), bad: new Date(NaN) }],
  ['a Buffer and a Uint8Array', { b: Buffer.from('hi'), u: new Uint8Array([1, 2]), d: new Decimal('1') }],
  ['a class with a getter', { g: Object.assign(new WithGetter(), { d: new Decimal('1') }) }],
  ['a null prototype', Object.assign(Object.create(null) as object, { a: new Decimal('1'), b: 2 })],
  ['an array with extra props', Object.assign([1, new Decimal('2')], { extra: 1 })],
  ['a sparse array', [1, , new Decimal('3')]],
  ['-0, NaN, Infinity', [-0, NaN, Infinity, -Infinity, new Decimal('1')]],
  ['a symbol key, functions, undefined', { [Symbol('s')]: 1, f: () => 1, u: undefined, a: [() => 1, undefined, Symbol('x')] }],
  ['a toJSON returning undefined', { a: { toJSON: () => undefined }, b: [{ toJSON: () => undefined }] }],
  ['toJSON given its key', { x: keyed, arr: [keyed, { y: keyed }], nested: { toJSON: () => ({ inner: keyed }) } }],
  ['toJSON called on its object', { v: { n: 5, toJSON(this: { n: number }) { return this.n; } } }],
  ['boxed primitives', { s: new String('ab'), n: new Number(3), b: new Boolean(false), d: new Decimal('1') }],
  ['a "__proto__" key', Object.assign(JSON.parse('{"__proto__": {"x": 1}}') as object, { d: new Decimal('1') })],
  ['numeric keys', { b: 1, 2: new Decimal('x'), a: 2, 1: 3 }],
  ['an inherited enumerable key', { o: Object.assign(Object.create({ inh: new Decimal('1') }) as object, { own: new Decimal('2') }) }],
  ['an array subclass holding a toJSON value', { l: List.from([new Decimal('1'), 2]) }],
  ["another realm's array holding a toJSON value", { l: (vm.runInNewContext('(d) => [d, 2]') as (d: unknown) => unknown)(new Decimal('4')) }],
  ['a Proxy of an array', { p: new Proxy([new Decimal('1'), 2], {}) }],
  ['a toJSON returning an array subclass', { d: { toJSON: () => List.from([new Decimal('9')]) } }],
  ['a root toJSON value', new Decimal('7')],
  // JSON writes a boxed primitive as its primitive, never its fields: unfixed, these were {"x":"1"}, {"0":"a","1":"b","x":"1"}, and refused (a Map).
  ['a Number object with a toJSON value of its own', { n: Object.assign(new Number(3), { x: new Decimal('1') }) }],
  ['a String object with one, past the plain walk', { s: Object.assign(new String('ab'), { x: new Decimal('1') }), f: () => 1 }],
  ['a Boolean object holding a Map', { b: Object.assign(new Boolean(true), { m: new Map([[1, 2]]) }) }],
  // JSON.stringify calls a function's toJSON as any object's (a class given a static toJSON): unfixed, {} and [null].
  ['a function with a toJSON', { f: Object.assign(() => 1, { toJSON: (key: string) => `f ${key}` }), l: [class { static toJSON() { return 'C'; } }] }],
  // JSON tells a box by its internal slot, not its prototype or Symbol.toStringTag: unfixed, {} where JSON writes null, true, "[object String]", 2, "ab".
  ['boxes given a plain prototype', {
    n: Object.setPrototypeOf(new Number(1), Object.prototype), b: Object.setPrototypeOf(new Boolean(true), Object.prototype),
    s: Object.setPrototypeOf(new String('ab'), Object.prototype), e: Object.setPrototypeOf(new String(''), Object.prototype),
  }],
  ['boxes with a Symbol.toStringTag', [tagged(new Number(2), 'X'), tagged(new String('ab'), 'Number'), tagged(new Boolean(false), 'Object'), new Money(5)]],
  // And the reverse: what says it is a box, or inherits from one, but holds no primitive is written as an object.
  ['objects that say they are boxes', [{ [Symbol.toStringTag]: 'Number' }, Object.assign(Object.create(Number.prototype) as object, { a: 1 }),
    tagged({ a: 1 }, 'String'), Object.assign(Object.create(Boolean.prototype) as object, { toString: () => 'x' })]],
];

/** value with its own Symbol.toStringTag: Object.prototype.toString says `[object tag]`. */
function tagged<T extends object>(value: T, tag: string): T {
  return Object.defineProperty(value, Symbol.toStringTag, { value: tag });
}

describe('the JSON text sent is JSON.stringify\'s', () => {
  // Unfixed: the array subclass, the other realm's array and the toJSON returning a subclass were {"0":"1","1":2}.
  it.each(shapes)('%s', (_, value) => {
    const text = JSON.stringify(value);
    expect({ result: resultJson(value), body: jsonParam(value, 'body') }).toEqual({ result: text, body: text });
  });
});

/** An array Proxy whose length is what get answers for it. */
const lengthIs = (length: () => unknown) => new Proxy([1, 2], { get: (t, k, r) => (k === 'length' ? length() : Reflect.get(t, k, r)) });
const refused: [string, () => unknown][] = [
  // JSON.stringify reads an array's length with ToLength, which refuses a BigInt: unfixed, pgdrain stored [1,2] (Number(2n)).
  ['an array Proxy whose length is a BigInt', () => ({ a: lengthIs(() => 2n) })],
  ['an array Proxy whose length getter throws', () => ({ a: lengthIs(() => { throw new RangeError('no length'); }) })],
  ['an array Proxy whose length is a Symbol', () => [lengthIs(() => Symbol('n'))]],
  // A box with no valueOf or toString to convert it by: unfixed, stored {}.
  ['a Number object with a null prototype', () => ({ n: Object.setPrototypeOf(new Number(1), null) })],
  ['a BigInt object with a Symbol.toStringTag', () => ({ n: tagged(Object(1n) as object, 'Number') })],
];

describe('refused where JSON.stringify throws', () => {
  it.each(refused)('%s', (_, make) => {
    let message = '';
    try {
      JSON.stringify(make());
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).not.toBe('');
    // A BigInt is said where it is (result.n is a BigInt…); what else JSON.stringify threw, in its words.
    const said = /BigInt/.test(message) ? 'BigInt' : message;
    expect(() => resultJson(make())).toThrow(said);
    expect(() => jsonParam(make(), 'body')).toThrow(/^body: must be JSON-serialisable \(/);
    expect(() => jsonParam(make(), 'body')).toThrow(said);
  });
});

class Node { next: unknown = null; }
class Item extends Node {}
const cycles: [string, () => unknown][] = [
  ['a class instance', () => { const a = new Node(); const b = new Item(); a.next = b; b.next = a; return { a }; }],
  ['the value itself', () => { const a = new Node(); a.next = [a]; return a; }],
  ['a toJSON answer', () => { const a = new Node(); a.next = a; return { t: { toJSON: () => a } }; }],
  ['plain objects', () => { const a: Record<string, unknown> = { x: {} }; (a.x as Record<string, unknown>).y = a; return a; }],
  ['a null prototype, past 64 levels', () => {
    const top: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
    let at = top;
    for (let i = 0; i < 70; i++) at = (at.c = new Node()) as unknown as Record<string, unknown>;
    at.back = top;
    return top;
  }],
];

describe("a body's cycle is refused with JSON.stringify's own message", () => {
  // Unfixed: each object in the message was "with constructor 'Object'" (the walk's plain copy), not 'Node' or 'Item'.
  it.each(cycles)('%s', (_, make) => {
    let message = '';
    try {
      JSON.stringify(make());
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/circular/);
    expect(() => jsonParam(make(), 'body')).toThrow(`body: must be JSON-serialisable (${message})`);
  });
});

const db = await testDb();
const { driver, drainOf, rows } = resultRows(db);

describe('stored', () => {
  beforeEach(async () => {
    await db.sql('truncate jobs.job_queue, jobs.job');
  });

  it('an array subclass holding a toJSON value is stored as an array, as a body and as a result', async () => {
    const value = { ids: List.from([new Decimal('1'), new Decimal('2')]) };
    await createQueue({ driver, tasks: {} }).publish('list', value);
    expect((await db.sql<{ body: unknown }>('select body from jobs.job_queue')).map((r) => r.body)).toEqual([{ ids: ['1', '2'] }]);
    expect(await drainOf({ list: async () => value })).toMatchObject({ succeeded: 1 });
    expect((await rows()).map((r) => r.result)).toEqual([{ ids: ['1', '2'] }]);
  });
});
