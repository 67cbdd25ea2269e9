// A result JSON cannot hold (a BigInt, a cycle, a function returned), or
// would write as {} (a Map or Set not empty): the same return comes on every
// attempt, so a retry only runs the handler's work again. The job fails at
// once, with no retry, naming where the bad value is (json-text.ts
// resultJson), from plain, batch and transactional handlers alike; a
// transactional one's work is rolled back with it.
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, defineTask, type BatchItem, type TaskMap } from '../src/index.js';
import { testDb } from './support/db.js';
import { resultRows } from './support/result-rows.js';

const db = await testDb();
const { driver, drainOf, rows } = resultRows(db);

beforeEach(async () => {
  await db.sql('truncate jobs.job_queue, jobs.job');
  await db.sql('create table if not exists public.unstorable_work (job_id bigint)');
  await db.sql('truncate public.unstorable_work');
});

const cyclic = () => {
  const order: Record<string, unknown> = { id: 1, lines: [{ sku: 'a' }] };
  (order.lines as Record<string, unknown>[])[0]!.order = order;
  return { order };
};
const noRetry = ' (failed without retry: a retry would run the handler again to the same result)';

describe('a result JSON cannot hold', () => {
  it('fails its job at once naming where, from plain, batch and transactional handlers', async () => {
    let runs = 0;
    const tasks = {
      bigint: async () => (runs++, { a: { b: 12n } }),
      cycle: async () => (runs++, cyclic()),
      fn: async () => (runs++, () => 'not JSON'),
      // @ts-expect-error the result type is refused too (JsonResult): plain JavaScript can return it
      batch: defineTask('batch', async (jobs: BatchItem[]) => (runs++, jobs.map(() => ({ total: [1, 2n] }))), { batch: true }),
      // @ts-expect-error the result type is refused too (JsonResult): plain JavaScript can return it
      tx: defineTask('tx', async (_body: unknown, ctx) => {
        runs++;
        await ctx.db.query('insert into public.unstorable_work values ($1)', [ctx.job.id]);
        return { id: 7n };
      }, { transactional: true }),
    } as TaskMap;
    await createQueue({ driver, tasks: {} }).publishBulk(['bigint', 'cycle', 'fn', 'batch', 'tx'].map((task) => ({ task, maxRetries: 5 })));
    // Unfixed: { retried: 5 }, each queued for attempt 2 with JSON.stringify's message, no path.
    expect(await drainOf(tasks)).toMatchObject({ claimed: 5, succeeded: 0, failed: 5, retried: 0 });
    expect((await rows()).map((r) => [r.task, r.state, r.error])).toEqual([
      ['bigint', 'failure', `FailJob: result not stored: result.a.b is a BigInt, which JSON has none of: return it as a string${noRetry}`],
      ['cycle', 'failure', `FailJob: result not stored: result.order.lines[0].order is result.order again: JSON cannot hold a cycle${noRetry}`],
      ['fn', 'failure', `FailJob: result not stored: result is a function, which JSON has no value for${noRetry}`],
      ['batch', 'failure', `FailJob: result not stored: result.total[1] is a BigInt, which JSON has none of: return it as a string${noRetry}`],
      ['tx', 'failure', `FailJob: result not stored: result.id is a BigInt, which JSON has none of: return it as a string${noRetry}`],
    ]);
    expect(runs).toBe(5); // each handler ran once
    expect(await db.sql('select count(*)::int as n from public.unstorable_work')).toEqual([{ n: 0 }]); // rolled back
    expect(await drainOf(tasks)).toMatchObject({ claimed: 0 });
  });

  it('nested too deeply fails too; a toJSON that throws is retried as the handler\'s own throw', async () => {
    let deep: unknown = [];
    for (let i = 0; i < 200_000; i++) deep = [deep];
    const tasks = {
      deep: async () => deep,
      sym: async () => Symbol('s'),
      toJson: async () => ({ at: { toJSON: () => { throw new Error('not yet loaded'); } } }),
    };
    await createQueue({ driver, tasks: {} }).publishBulk(Object.keys(tasks).map((task) => ({ task })));
    expect(await drainOf(tasks)).toMatchObject({ claimed: 3, failed: 2, retried: 1 });
    expect((await rows()).map((r) => [r.task, r.state, r.error])).toEqual([
      ['deep', 'failure', `FailJob: result not stored: result is nested too deeply for JSON${noRetry}`],
      ['sym', 'failure', `FailJob: result not stored: result is a symbol, which JSON has no value for${noRetry}`],
      ['toJson', 'queued 1', 'Error: not yet loaded'],
    ]);
  });

  it('a NUL is located in a key as in a value: the key, and the object it is in', async () => {
    const tasks = {
      inKey: async () => ({ a: [{ ok: 1, 'b\u0000c': 2 }] }),
      inValue: async () => ({ a: [{ b: 'x\u0000' }] }),
      keyFirst: async () => ({ 'k\u0000': 'v\u0000' }), // written before its value
    };
    await createQueue({ driver, tasks: {} }).publishBulk(Object.keys(tasks).map((task) => ({ task })));
    expect(await drainOf(tasks)).toMatchObject({ claimed: 3, failed: 3 });
    // Before: "handler returned a string that has \u0000" for a key, no path.
    expect((await rows()).map((r) => [r.task, r.error])).toEqual([
      ['inKey', `FailJob: result not stored: the key "b\\u0000c" of result.a[0] has \\u0000, which PostgreSQL cannot store${noRetry}`],
      ['inValue', `FailJob: result not stored: result.a[0].b has \\u0000, which PostgreSQL cannot store${noRetry}`],
      ['keyFirst', `FailJob: result not stored: the key "k\\u0000" of result has \\u0000, which PostgreSQL cannot store${noRetry}`],
    ]);
  });

  it('a Map or Set that is not empty (JSON writes {}) fails its job at once too; an empty one is stored as {}', async () => {
    let runs = 0;
    const tasks = {
      map: async () => (runs++, { byId: new Map([['a', 1]]) }),
      set: async () => (runs++, { list: [new Set([1])] }),
      // @ts-expect-error the result type is refused too (JsonResult): plain JavaScript can return it
      batch: defineTask('batch', async (jobs: BatchItem[]) => (runs++, jobs.map(() => ({ seen: new Set(['x']) }))), { batch: true }),
      // @ts-expect-error the result type is refused too (JsonResult): plain JavaScript can return it
      tx: defineTask('tx', async (_body: unknown, ctx) => {
        runs++;
        await ctx.db.query('insert into public.unstorable_work values ($1)', [ctx.job.id]);
        return new Map([[1, 'a']]);
      }, { transactional: true }),
      empty: async () => ({ byId: new Map() }),
    } as TaskMap;
    await createQueue({ driver, tasks: {} }).publishBulk(['map', 'set', 'batch', 'tx', 'empty'].map((task) => ({ task, maxRetries: 5 })));
    // Unfixed: { retried: 4 }, each handler run again (its work done again) to the same Map, until its retries were spent.
    expect(await drainOf(tasks)).toMatchObject({ claimed: 5, succeeded: 1, failed: 4, retried: 0 });
    const lost = ' (JSON would store it as {})';
    expect((await rows()).map((r) => [r.task, r.state, r.error, r.result])).toEqual([
      ['map', 'failure', `FailJob: result not stored: result.byId is a Map: store Object.fromEntries(it) or [...it]${lost}${noRetry}`, null],
      ['set', 'failure', `FailJob: result not stored: result.list[0] is a Set: store [...it]${lost}${noRetry}`, null],
      ['batch', 'failure', `FailJob: result not stored: result.seen is a Set: store [...it]${lost}${noRetry}`, null],
      ['tx', 'failure', `FailJob: result not stored: result is a Map: store Object.fromEntries(it) or [...it]${lost}${noRetry}`, null],
      ['empty', 'success', null, { byId: {} }],
    ]);
    expect(runs).toBe(4);
    expect(await db.sql('select count(*)::int as n from public.unstorable_work')).toEqual([{ n: 0 }]); // rolled back
  });

  it('a Promise anywhere beside a Map is retried: the work may not be done; an Error beside one fails, the first named', async () => {
    const tasks = {
      promise: async () => ({ byId: new Map([['a', 1]]), sent: Promise.resolve(true) }),
      error: async () => ({ error: new Error('smtp 550'), byId: new Map([['a', 1]]) }),
    };
    await createQueue({ driver, tasks: {} }).publishBulk(Object.keys(tasks).map((task) => ({ task })));
    expect(await drainOf(tasks)).toMatchObject({ claimed: 2, failed: 1, retried: 1 });
    expect((await rows()).map((r) => [r.task, r.state, r.error])).toEqual([
      ['promise', 'queued 1', 'TypeError: result.sent is a Promise: await it (JSON would store it as {})'],
      ['error', 'failure', 'FailJob: result not stored: result.error is an Error ("smtp 550"): JSON keeps neither its message nor its stack; '
        + `store its message (JSON would store it as {})${noRetry}`],
    ]);
  });

  it('a storable result beside it, in the same batch answer, still succeeds', async () => {
    // @ts-expect-error the result type is refused too (JsonResult): plain JavaScript can return it
    const tasks = { batch: defineTask('batch', async (jobs: BatchItem[]) => jobs.map((_, i) => (i === 0 ? { n: 1 } : { n: 1n })), { batch: true }) };
    await createQueue({ driver, tasks: {} }).publishBulk([{ task: 'batch' }, { task: 'batch' }]);
    expect(await drainOf(tasks)).toMatchObject({ claimed: 2, succeeded: 1, failed: 1, retried: 0 });
    expect((await rows()).map((r) => [r.state, r.result])).toEqual([['success', { n: 1 }], ['failure', null]]);
  });
});
