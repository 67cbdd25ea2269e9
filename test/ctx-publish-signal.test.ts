// ctx.publish takes a signal of the caller's own, as publish does
// (docs/typescript-api.md): a plain handler's, a transactional one's and a
// batch call's. The calls below pass `{ signal }` with no cast, so
// `npx tsc -p tsconfig.test.json` checks that JobContext and BatchContext
// type it; the drain checks that a fired one gives the publish up.
import { expect, it } from 'vitest';
import { createQueue, defineTask, type BatchContext, type BatchItem, type JobContext } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;

it('ctx.publish(task, body, { signal }): a fired signal of the handler\'s own rejects with its reason, nothing written', async () => {
  const answers: Record<string, string> = {};
  const fired = () => {
    const own = new AbortController();
    own.abort(new Error('given up by the handler'));
    return own.signal;
  };
  const publishWith = async (name: string, publish: JobContext['publish'] | BatchContext['publish']) => {
    answers[name] = await publish('sig.child', { from: name }, { signal: fired() }).then((id) => `published ${id}`,
                                                                                      (e: Error) => e.message);
  };
  const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {
    sig: {
      plain: async (_body: unknown, ctx: JobContext) => publishWith('plain', ctx.publish),
      batch: defineTask('sig.batch', async (_jobs: BatchItem[], ctx: BatchContext) => publishWith('batch', ctx.publish),
                        { batch: true }),
    },
  } });
  queue.defineTask('sig.tx', async (_body: unknown, ctx) => publishWith('transactional', ctx.publish), { transactional: true });
  for (const task of ['sig.plain', 'sig.batch', 'sig.tx']) await queue.publish(task, {}, { timeoutSeconds: 30 });

  const report = await queue.drain(10, Date.now() + 60_000, { topic: 'sig.%' });

  expect(report.succeeded).toBe(3);
  expect(answers).toEqual({ plain: 'given up by the handler', batch: 'given up by the handler',
                            transactional: expect.any(String) });
  expect(answers.transactional).not.toMatch(/^published/);
  expect(await sql(`select count(*)::int as n from jobs.all where task = 'sig.child'`)).toEqual([{ n: 0 }]);
});
