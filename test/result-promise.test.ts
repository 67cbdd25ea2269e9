// A Promise inside a handler's result (`return { a: fetchIt() }`): JSON writes
// it as {}, so the job would succeed with its data lost. It is retried instead,
// naming where the promise is (json-text.ts resultJson), from plain, batch and
// transactional handlers alike.
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, defineTask, type BatchItem, type TaskMap } from '../src/index.js';
import { testDb } from './support/db.js';
import { resultRows } from './support/result-rows.js';

const db = await testDb();
const { driver, drainOf, rows } = resultRows(db);

beforeEach(async () => {
  await db.sql('truncate jobs.job_queue, jobs.job');
});

describe('a result holding a Promise', () => {
  it('is retried naming its path, from plain, batch and transactional handlers', async () => {
    const tasks = {
      plain: async () => ({ a: Promise.resolve(1) }),
      deep: async () => ({ ok: 1, items: [{ n: 1 }, { n: Promise.resolve(2) }] }),
      // @ts-expect-error the result type is refused too (JsonResult): plain JavaScript can return it
      batch: defineTask('batch', async (jobs: BatchItem[]) => jobs.map(() => ({ sent: Promise.resolve(true) })), { batch: true }),
      // @ts-expect-error the result type is refused too (JsonResult): plain JavaScript can return it
      tx: defineTask('tx', async () => ({ row: Promise.resolve('r') }), { transactional: true }),
    } as TaskMap;
    await createQueue({ driver, tasks: {} }).publishBulk(['plain', 'deep', 'batch', 'tx'].map((task) => ({ task })));
    expect(await drainOf(tasks)).toMatchObject({ claimed: 4, succeeded: 0, retried: 4 });
    expect((await rows()).map((r) => [r.task, r.state, r.error])).toEqual([
      ['plain', 'queued 1', 'TypeError: result.a is a Promise: await it (JSON would store it as {})'],
      ['deep', 'queued 1', 'TypeError: result.items[1].n is a Promise: await it (JSON would store it as {})'],
      ['batch', 'queued 1', 'TypeError: result.sent is a Promise: await it (JSON would store it as {})'],
      ['tx', 'queued 1', 'TypeError: result.row is a Promise: await it (JSON would store it as {})'],
    ]);
  });

  /**
   * Drains tasks made with promises (one per later() call) that reject once
   * the drain is done; answers the unhandled rejections seen (one would end
   * the process).
   */
  async function unhandledAfter(tasksOf: (later: () => Promise<unknown>) => TaskMap, n: number): Promise<unknown[]> {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const fails: ((e: Error) => void)[] = [];
      const tasks = tasksOf(() => new Promise((_, reject) => fails.push(reject)));
      await createQueue({ driver, tasks: {} }).publishBulk(Object.keys(tasks).map((task) => ({ task })));
      // retried, or failed at once beside a BigInt (result-unstorable.test.ts)
      expect(await drainOf(tasks)).toMatchObject({ claimed: n, succeeded: 0 });
      for (const fail of fails) fail(new Error('rejected after the handler returned'));
      await new Promise((resolve) => setTimeout(resolve, 50)); // unhandled rejections are reported after a turn
      return unhandled;
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  }

  it('that rejects does not reject unhandled (which would end the process)', async () => {
    expect(await unhandledAfter((later) => ({ later: async () => ({ a: later() }) }), 1)).toEqual([]);
  });

  it('that rejects beside a BigInt, or in a batch answer of the wrong shape, does not reject unhandled either', async () => {
    expect(await unhandledAfter((later) => ({
      big: async () => ({ a: later(), n: 1n }),
      // A wrong shape, as plain JavaScript could return (the types refuse it).
      batch: defineTask('batch', (async () => ({ sent: [later()] })) as never, { batch: true }),
    }) as TaskMap, 2)).toEqual([]);
  });

  it('that a toJSON returns after a Map (an async toJSON) does not reject unhandled either', async () => {
    // The first encoding stopped looking once a Map was lost; the second, naming where, calls the toJSON
    // again for a new promise: the first one JSON.stringify met was left rejecting (unfixed: 1 unhandled).
    expect(await unhandledAfter((later) => ({
      afterMap: async () => ({ byId: new Map([[1, 'a']]), total: { toJSON: () => later() } }),
    }) as TaskMap, 1)).toEqual([]);
  });

  it('a thenable with data of its own is data, whatever else the result holds', async () => {
    await createQueue({ driver, tasks: {} }).publish('rule');
    const rule = { when: 'paid', then: () => 'ship' };
    expect(await drainOf({ rule: async () => ({ rule, meta: {} }) })).toMatchObject({ succeeded: 1 });
    expect((await rows()).map((r) => r.result)).toEqual([{ rule: { when: 'paid' }, meta: {} }]);
  });

  it('an empty object, or a string "{}", is data: stored as it is', async () => {
    await createQueue({ driver, tasks: {} }).publish('empty');
    expect(await drainOf({ empty: async () => ({ a: {}, s: '{}', d: [{}] }) })).toMatchObject({ succeeded: 1 });
    expect((await rows()).map((r) => r.result)).toEqual([{ a: {}, s: '{}', d: [{}] }]);
  });
});
