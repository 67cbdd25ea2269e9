// An Error where JSON is expected: a handler that returns its error (`return
// err` meant as `throw err`, or `{ error: err }`) succeeded with {} stored,
// the message and stack lost, and a body holding one was published as {}.
// JSON writes an Error of no own enumerable fields as {}, as it writes a Map
// or a Promise, so it is refused the same way (json-text.ts quietThenables):
// the job is retried naming where, the publish refused before any statement.
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, defineTask, type PgDrainError, type TaskMap } from '../src/index.js';
import { testDb } from './support/db.js';
import { resultRows } from './support/result-rows.js';

const db = await testDb();
const { driver, drainOf, rows } = resultRows(db);

beforeEach(async () => {
  await db.sql('truncate jobs.job_queue, jobs.job');
});

describe('an Error in a handler\'s result', () => {
  it('is retried naming its path, from plain and transactional handlers', async () => {
    const tasks = {
      plain: async () => new Error('smtp 550'),
      nested: async () => ({ ok: false, error: new TypeError('bad address') }),
      tx: defineTask('tx', async () => new RangeError('too late'), { transactional: true }),
    } as TaskMap;
    await createQueue({ driver, tasks: {} }).publishBulk(['plain', 'nested', 'tx'].map((task) => ({ task })));
    // Unfixed: { claimed: 3, succeeded: 3 }, results {}, { ok: false, error: {} } and {}.
    expect(await drainOf(tasks)).toMatchObject({ claimed: 3, succeeded: 0, retried: 3 });
    const hint = 'JSON keeps neither its message nor its stack; throw it to fail the job, or return its message (JSON would store it as {})';
    expect((await rows()).map((r) => [r.task, r.state, r.error])).toEqual([
      ['plain', 'queued 1', `TypeError: result is an Error: ${hint}`],
      ['nested', 'queued 1', `TypeError: result.error is an Error: ${hint}`],
      ['tx', 'queued 1', `TypeError: result is an Error: ${hint}`],
    ]);
  });

  it('with fields of its own is stored as those fields, as any class instance', async () => {
    await createQueue({ driver, tasks: {} }).publish('coded');
    expect(await drainOf({ coded: async () => Object.assign(new Error('x'), { code: 'E42' }) })).toMatchObject({ succeeded: 1 });
    expect((await rows()).map((r) => r.result)).toEqual([{ code: 'E42' }]);
  });
});

describe('an Error in a body', () => {
  it('is refused by publish and publishBulk naming where, before any statement', async () => {
    const queue = createQueue({ driver, tasks: {} });
    const rejection = (p: Promise<unknown>) => p.then(() => { throw new Error('published'); }, (e: unknown) => e as PgDrainError);
    const rule = 'must not hold a Map, Set, Promise or Error (JSON writes it as {}): ';
    expect(await rejection(queue.publish('t', { cause: new Error('boom') }))).toMatchObject({ name: 'ValidationError', field: 'body',
      message: `body: ${rule}body.cause is an Error: JSON keeps neither its message nor its stack; store its message` });
    expect(await rejection(queue.publishBulk([{ task: 't' }, { task: 't', body: new Error('boom') }]))).toMatchObject({
      name: 'ValidationError', field: 'jobs[1].body',
      message: `jobs[1].body: ${rule}jobs[1].body is an Error: JSON keeps neither its message nor its stack; store its message` });
    expect(await db.sql('select job_id from jobs.job_queue')).toEqual([]);
  });
});
