// A Map or Set that JSON.stringify meets where the text shows no {}: a Map
// subclass with fields ({"kind":"registry"}), a Map given own properties,
// a Set a toJSON returns (or one inside what it returns). JSON keeps the
// fields and drops the entries, and the job succeeded with them lost. Each
// fails its job at once naming where, as a plain Map does
// (result-unstorable.test.ts): the replacer of result-json.ts sees every
// value as JSON.stringify meets it, after toJSON.
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, type TaskMap } from '../src/index.js';
import { testDb } from './support/db.js';
import { resultRows } from './support/result-rows.js';

const db = await testDb();
const { driver, drainOf, rows } = resultRows(db);

beforeEach(async () => {
  await db.sql('truncate jobs.job_queue, jobs.job');
});

class Registry<K, V> extends Map<K, V> { kind = 'registry'; }
class Box { items = new Map([['a', 1]]); }
const noRetry = ' (failed without retry: a retry would run the handler again to the same result)';

describe('a Map or Set JSON writes without a {}', () => {
  it('fails its job at once naming where: a subclass with fields, own properties, from a toJSON', async () => {
    let runs = 0;
    const tasks = {
      subclass: async () => (runs++, { users: new Registry([['ada', 1]]) }),
      own: async () => (runs++, [Object.assign(new Set(['x']), { label: 'tags' })]),
      toJson: async () => (runs++, { at: { toJSON: () => new Map([['a', 1]]) } }),
      inside: async () => (runs++, { order: { id: 7, toJSON: () => ({ id: 7, lines: Object.assign(new Map([[1, 'a']]), { n: 1 }) }) } }),
      // A Date and a class instance of data are walked as plain data: what they hold is looked at all the same.
      held: async () => (runs++, { at: new Date(0), box: new Box() }),
    } as TaskMap;
    await createQueue({ driver, tasks: {} }).publishBulk(Object.keys(tasks).map((task) => ({ task, maxRetries: 5 })));
    // Unfixed: { succeeded: 4 }, results { users: { kind: 'registry' } }, [{ label: 'tags' }], { at: {} }, { order: { id: 7, lines: { n: 1 } } }.
    expect(await drainOf(tasks)).toMatchObject({ claimed: 5, succeeded: 0, failed: 5, retried: 0 });
    expect(runs).toBe(5);
    const map = 'is a Map: store Object.fromEntries(it) or [...it]';
    expect((await rows()).map((r) => [r.task, r.state, r.error])).toEqual([
      ['subclass', 'failure', `FailJob: result not stored: result.users ${map} (JSON would store only its own fields (kind))${noRetry}`],
      ['own', 'failure', `FailJob: result not stored: result[0] is a Set: store [...it] (JSON would store only its own fields (label))${noRetry}`],
      ['toJson', 'failure', `FailJob: result not stored: result.at ${map} (JSON would store it as {})${noRetry}`],
      ['inside', 'failure', `FailJob: result not stored: result.order.lines ${map} (JSON would store only its own fields (n))${noRetry}`],
      ['held', 'failure', `FailJob: result not stored: result.box.items ${map} (JSON would store it as {})${noRetry}`],
    ]);
  });

  it('an empty one, a class instance, a Date and a toJSON returning data are stored as JSON writes them', async () => {
    class Point { constructor(readonly x: number, readonly y: number) {} }
    const result = { none: new Registry(), at: new Date('2030-01-01T00:00:00Z'), p: new Point(1, 2), money: { toJSON: () => '1.50' } };
    await createQueue({ driver, tasks: {} }).publish('fine');
    expect(await drainOf({ fine: async () => result })).toMatchObject({ succeeded: 1 });
    expect((await rows()).map((r) => r.result)).toEqual([
      { none: { kind: 'registry' }, at: '2030-01-01T00:00:00.000Z', p: { x: 1, y: 2 }, money: '1.50' }]);
  });

  it('a Buffer (a bytea column) is walked as plain data, not sent through the replacer with every byte', async () => {
    // The replacer (lostKind) reads each object's then; the walk does not: a then getter counts which ran.
    // Unfixed, a Buffer's toJSON took the replacer: per byte a call, 3-6x the encoding before 02c4674 at 0.6 MB.
    let thenReads = 0;
    const meta = Object.defineProperty({ n: 1 }, 'then', { get: () => (thenReads++, undefined) });
    await createQueue({ driver, tasks: {} }).publish('bytes');
    expect(await drainOf({ bytes: async () => ({ file: Buffer.from('abc'), meta }) })).toMatchObject({ succeeded: 1 });
    expect((await rows()).map((r) => r.result)).toEqual([{ file: { type: 'Buffer', data: [97, 98, 99] }, meta: { n: 1 } }]);
    expect(thenReads).toBe(0);
  });

  it('a Proxy of a Map or Set, whose size cannot be read through it, is stored as JSON writes it, not retried', async () => {
    // Map.prototype.size throws on a Proxy ('incompatible receiver'): the check threw it, and the job was
    // retried with pgdrain's TypeError to the same result, where JSON.stringify writes {}.
    const tasks = {
      proxied: async () => ({ tags: new Proxy(new Set<string>(), {}), at: new Date(0), byId: new Proxy(new Map(), {}) }),
    } as TaskMap;
    await createQueue({ driver, tasks: {} }).publish('proxied', {}, { maxRetries: 5 });
    // Unfixed: { succeeded: 0, retried: 1 }, 'TypeError: Method get Set.prototype.size called on incompatible receiver…'.
    expect(await drainOf(tasks)).toMatchObject({ succeeded: 1, retried: 0 });
    expect((await rows()).map((r) => [r.state, r.result])).toEqual([['success', { tags: {}, at: '1970-01-01T00:00:00.000Z', byId: {} }]]);
  });
});
