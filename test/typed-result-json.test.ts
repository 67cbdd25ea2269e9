// A handler's result is stored as JSON (jobs.job.result, read back by
// waitFor and getJob), so defineTask refuses a result type JSON would
// change, as it refuses such a body type (typed-body-json.test.ts): a
// `{ at: Date }` is read back as a string, a non-empty Map fails the job
// (result-unstorable.test.ts). The refusals are `@ts-expect-error` lines:
// `npx tsc -p tsconfig.test.json` fails when one of them typechecks.
// Returning nothing (void, undefined) is fine: stored as null.
import { describe, expect, expectTypeOf, it } from 'vitest';
import { createQueue, defineTask, FailJob, RetryJob, SnoozeJob, type BatchItem, type Handler, type Json, type JsonBody,
  type JsonResult, type NotJson } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const queue = () => createQueue({ driver: { ...db.driver, close: async () => {} } });
const deadline = () => Date.now() + 120_000;

class Shape { sides = 3; area() { return 1; } }
interface Sent { id: string; cc?: string[] | undefined; at: string }
declare const fetchCount: () => Promise<number>;
declare const brand: unique symbol;
type UserId = string & { readonly [brand]: 'UserId' };

describe('a typed result type must be its own JSON form', () => {
  it('refuses, at defineTask, a result type whose values JSON changes', () => {
    const q = queue();
    // @ts-expect-error a Map is written as {}: the job fails
    q.defineTask('r.map', async () => new Map<string, number>([['a', 1]]));
    // @ts-expect-error a Date is stored as its ISO string
    q.defineTask('r.date', async () => ({ at: new Date() }));
    // @ts-expect-error a BigInt fails the job
    q.defineTask('r.bigint', async (b: { n: number }) => ({ n: BigInt(b.n) }));
    // @ts-expect-error a method is dropped
    q.defineTask('r.method', async () => new Shape());
    // @ts-expect-error a Set deep inside
    q.defineTask('r.deep-set', async () => ({ a: [{ tags: new Set(['x']) }] }));
    // @ts-expect-error a Promise not awaited is written as {}: the job is retried
    q.defineTask('r.promise', async () => ({ count: fetchCount() }));
    // @ts-expect-error undefined in an array is stored as null
    q.defineTask('r.array-undefined', async () => [1, undefined]);
    // @ts-expect-error a function returned
    q.defineTask('r.fn', async () => () => 1);
    // @ts-expect-error a FailJob returned, not thrown: the job fails (result-error.test.ts)
    q.defineTask('r.fail', async () => new FailJob('card declined'));
  });

  it('names an outcome returned; a branded string or object (a symbol key in types only) is its own JSON form', () => {
    const refused = 'pgdrain: the result type is not its JSON form';
    // Before: a FailJob's type was { name, message, stack? } (accepted); a RetryJob's refused for its `at`, a Date.
    expectTypeOf<JsonResult<{ x: FailJob; later: RetryJob }>>().toHaveProperty(refused).toEqualTypeOf<
      `result.${'x' | 'later'}: a FailJob, RetryJob or SnoozeJob is to be thrown: as data JSON keeps only its name`>();
    // In a batch answer's item (defineTask's batch overloads): be the item, which settles the job. Before: 'is to be thrown'.
    expectTypeOf<JsonResult<{ status: FailJob }, 'item'>>().toHaveProperty(refused).toEqualTypeOf<
      "result.status: a FailJob, RetryJob or SnoozeJob is to be the job's item, not inside its result: as data JSON keeps only its name">();
    // A symbol key is not refused: zod's .brand() and type-fest's Tagged put one on object types, in types only.
    expectTypeOf<JsonResult<{ id: UserId; ids: UserId[]; user: { name: string } & { readonly [brand]: { User: true } } }>>()
      .toEqualTypeOf<unknown>();
  });

  it('refuses them in every overload, with an explicit type argument, and through a generic wrapper', () => {
    // @ts-expect-error a transactional task
    defineTask('r.tx', async (_b: unknown, ctx) => ({ rows: (await ctx.db.query('select 1')).rows, at: new Date() }), { transactional: true });
    // @ts-expect-error a batch task's items
    defineTask('r.batch', async (jobs: BatchItem[]) => jobs.map(() => ({ at: new Date() })), { batch: true });
    // @ts-expect-error the type arguments given
    defineTask<{ n: number }, { at: Date }>('r.explicit', async () => ({ at: new Date() }));
    // @ts-expect-error queue.defineTask's batch overload
    queue().defineTask('r.qbatch', async (jobs: BatchItem[]) => jobs.map(() => new Map([[1, 2]])), { batch: true });
    const wrap = <B, R>(name: string, handler: Handler<B, R> & JsonBody<B> & JsonResult<R>) => defineTask(name, handler);
    expectTypeOf(wrap('r.wrapped', async (b: { to: string }) => ({ sent: b.to }))).returns.resolves.toEqualTypeOf<{ sent: string }>();
    // @ts-expect-error the wrapper's callers are checked as defineTask's are
    wrap('r.wrapped-date', async () => ({ at: new Date() }));
  });

  it('accepts JSON results, nothing returned, and a batch answer\'s Errors; the direct call keeps the result type', () => {
    const q = queue();
    expectTypeOf(q.defineTask('r.void', async () => {})).returns.resolves.toEqualTypeOf<void>();
    expectTypeOf(q.defineTask('r.sync-void', () => undefined)).returns.resolves.toEqualTypeOf<undefined>();
    expectTypeOf(q.defineTask('r.maybe', async (b: { n: number }) => (b.n > 0 ? b.n : undefined))).returns.resolves
      .toEqualTypeOf<number | undefined>();
    expectTypeOf(q.defineTask('r.sent', async (): Promise<Sent> => ({ id: '1', at: new Date().toISOString() }))).returns.resolves
      .toEqualTypeOf<Sent>();
    expectTypeOf(q.defineTask('r.json', (b: Json) => b)).returns.resolves.toEqualTypeOf<Json>();
    expectTypeOf(q.defineTask('r.unknown', (b: unknown) => b)).returns.resolves.toEqualTypeOf<unknown>();
    expectTypeOf(q.defineTask('r.null', () => null)).returns.resolves.toEqualTypeOf<null>();
    expectTypeOf(q.defineTask('r.never', (): never => { throw new FailJob('always'); })).returns.resolves.toEqualTypeOf<never>();
    // A transactional task returning its query's answer; a batch answer with Errors beside results (RetryJob's `at` is a Date).
    defineTask('r.tx-rows', async (_b: unknown, ctx) => ctx.db.query<{ n: number }>('select 1 as n'), { transactional: true });
    expectTypeOf(q.defineTask('r.batch', async (jobs: BatchItem<{ n: number }>[]) => jobs.map((j, i) =>
      [{ n: j.body.n }, new Error('broke'), new FailJob('no'), new RetryJob('later', { delayMs: 1 }), new SnoozeJob({ delayMs: 1 }), undefined][i % 6]),
    { batch: true }).publish).parameter(0).toEqualTypeOf<{ n: number }>();
    expectTypeOf<JsonResult<void | { a?: string; b: string[] }>>().toEqualTypeOf<unknown>();
    expectTypeOf<JsonResult<{ at: Date } | undefined>>().toEqualTypeOf<{
      'pgdrain: the result type is not its JSON form': 'result.at: a Date arrives as its ISO string: type it string, date.toISOString()';
      'its JSON form': { at: NotJson<'a Date arrives as its ISO string: type it string, date.toISOString()'> } }>();
  });

  it('names a typed array (a bytea column as Uint8Array) for what JSON makes of it, not its methods', () => {
    // Before: "result.bytes[symbol]: a function (a method) is dropped" | … 26 more …: JSON writes it as { "0": 1, "1": 2 }.
    type Bytes = 'a typed array or ArrayBuffer arrives as an object of its bytes by index ({} for an ArrayBuffer): type it string (base64) or number[]';
    expectTypeOf<JsonResult<{ id: number; bytes: Uint8Array }>>().toEqualTypeOf<{
      'pgdrain: the result type is not its JSON form': `result.bytes: ${Bytes}`;
      'its JSON form': { id: number; bytes: NotJson<Bytes> } }>();
    expectTypeOf<JsonResult<[ArrayBuffer, DataView, Float64Array]>>().toHaveProperty('pgdrain: the result type is not its JSON form')
      .toEqualTypeOf<`result[${0 | 1 | 2}]: ${Bytes}`>();
  });

  it('stores what the handler returned for the result types it accepts', async () => {
    const q = queue();
    q.defineTask('r.keep-sent', async (): Promise<Sent> => ({ id: '1', cc: undefined, at: '2030-01-01T00:00:00.000Z' }));
    q.defineTask('r.keep-none', async () => {});
    const ids = [await q.publish('r.keep-sent'), await q.publish('r.keep-none')];
    expect(await q.drain(10, deadline())).toMatchObject({ succeeded: 2 });
    expect(await Promise.all(ids.map(async (id) => (await q.getJob(id))?.result))).toStrictEqual(
      [{ id: '1', at: '2030-01-01T00:00:00.000Z' }, null]);
  });
});
