// A value refused (not JSON) is read as one JSON.stringify reads it, and said
// where: unfixed, the error path walked the whole value again for its
// promises (a getter ran twice), a throwing getter or toJSON was said
// without where, a Proxy's getPrototypeOf trap ran up to 4 times per object
// (JSON.stringify runs it none), and an Array subclass in a body's cycle
// was named 'Array' in the message.
import { describe, expect, it } from 'vitest';
import { jsonParam } from '../src/json-text.js';
import { resultJson } from '../src/result-json.js';

/** What a call threw (its message) and how often each counted thing ran. */
function refused(call: (value: unknown) => unknown, build: (count: (name: string) => void) => unknown) {
  const calls: Record<string, number> = {};
  const value = build((name) => void (calls[name] = (calls[name] ?? 0) + 1));
  try {
    call(value);
    return { message: 'not thrown', calls };
  } catch (error) {
    return { message: (error as Error).message, calls };
  }
}

const callers: [string, (value: unknown) => unknown][] = [['resultJson', (v) => resultJson(v)], ['jsonParam', (v) => jsonParam(v, 'body')]];

describe.each(callers)('%s: a refused value is read once', (_, call) => {
  it('a getter before a BigInt, a cycle, a throwing getter', () => {
    const before = (count: (name: string) => void, rest: Record<string, unknown>) => Object.assign({ get n() { count('n'); return 1; } }, rest);
    expect(refused(call, (count) => before(count, { b: 1n })).calls).toEqual({ n: 1 });
    expect(refused(call, (count) => { const o = before(count, {}); return Object.assign(o, { self: o }); }).calls).toEqual({ n: 1 });
    expect(refused(call, (count) => ({ a: before(count, {}), get t() { throw new Error('boom'); } })).calls).toEqual({ n: 1 });
  });

  it("a Proxy's getPrototypeOf trap: none for an array, once for an object", () => {
    const trapped = (count: (name: string) => void, name: string, target: object) =>
      new Proxy(target, { getPrototypeOf: (t) => (count(name), Reflect.getPrototypeOf(t)) });
    class Point { x = 1; }
    const value = (count: (name: string) => void) => ({
      list: trapped(count, 'list', [1, { a: 2 }]),
      plain: trapped(count, 'plain', { a: 1 }),
      point: trapped(count, 'point', new Point()),
      map: trapped(count, 'map', new Map()),
      big: 1n, // refused: what is past where it stops is not read for its prototype either
      after: trapped(count, 'after', { a: 1 }),
    });
    expect(refused(call, value).calls).toEqual({ plain: 1, point: 1, map: 1 });
  });
});

describe('past where a refused value stops', () => {
  // Guards the single read: a promise past the BigInt is still caught (a rejection unhandled would end the process).
  it('a promise is caught, nothing else read', async () => {
    for (const call of [(v: unknown) => resultJson(v), (v: unknown) => jsonParam(v, 'body')]) {
      expect(refused(call, () => ({ n: 1n, later: [Promise.reject(new Error('not awaited'))] })).message).toMatch(/BigInt/);
    }
    await new Promise((resolve) => setTimeout(resolve, 20)); // an unhandled rejection fails the run
  });
});

describe('a body refused, said where', () => {
  it('a getter or toJSON that throws is named by its path', () => {
    const getter = { a: { ok: 1, get b(): number { throw new Error('boom'); } } };
    const toJSON = { a: [1, { toJSON: () => { throw new Error('bad date'); } }] };
    expect(() => jsonParam(getter, 'body')).toThrow('body: must be JSON-serialisable (reading body.a.b threw: boom)');
    expect(() => jsonParam(toJSON, 'body')).toThrow("body: must be JSON-serialisable (body.a[1]'s toJSON threw: bad date)");
  });

  it("an Array subclass in a cycle is named as JSON.stringify names it", () => {
    class List<T> extends Array<T> {}
    const make = () => {
      const list = List.from([{ back: undefined as unknown }]);
      list[0]!.back = list;
      return { list };
    };
    let message = '';
    try {
      JSON.stringify(make());
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/constructor 'List'/);
    expect(() => jsonParam(make(), 'body')).toThrow(`body: must be JSON-serialisable (${message})`);
  });
});
