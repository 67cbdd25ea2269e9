// An Error where JSON is expected: a handler that returns its error (`return
// err` meant as `throw err`, or `{ error: err }`) succeeded with {} stored,
// the message and stack lost, and a body holding one was published as {}.
// JSON writes an Error of no own enumerable fields but its name as {} (or
// {"name":…}), as it writes a Map, so a result holding one fails its job at
// once naming where (result-json.ts), as a Map does: a retry would run the
// handler's work again to the same return. So does a FailJob, RetryJob or
// SnoozeJob returned instead of thrown, whose own fields JSON kept
// ({"name":"FailJob"}: the job succeeded). A body holding an Error is
// refused at publish, before any statement.
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, defineTask, FailJob, RetryJob, SnoozeJob, type BatchItem, type PgDrainError, type TaskMap } from '../src/index.js';
import { testDb } from './support/db.js';
import { resultRows } from './support/result-rows.js';

const db = await testDb();
const { driver, drainOf, rows } = resultRows(db);
const noRetry = ' (failed without retry: a retry would run the handler again to the same result)';

beforeEach(async () => {
  await db.sql('truncate jobs.job_queue, jobs.job');
});

describe('an Error in a handler\'s result', () => {
  it('fails its job at once naming its path and message, from plain, batch and transactional handlers', async () => {
    class SmtpError extends Error { override name = 'SmtpError'; }
    let runs = 0;
    const tasks = {
      plain: async () => (runs++, new Error('smtp 550')),
      nested: async () => (runs++, { ok: false, error: new TypeError('bad address') }),
      named: async () => (runs++, [{ error: new SmtpError('mailbox full') }]),
      batch: defineTask('batch', async (jobs: BatchItem[]) => (runs++, jobs.map(() => ({ error: new Error('') }))), { batch: true }),
      tx: defineTask('tx', async () => (runs++, new RangeError('too late')), { transactional: true }),
    } as TaskMap;
    await createQueue({ driver, tasks: {} }).publishBulk(Object.keys(tasks).map((task) => ({ task, maxRetries: 5 })));
    // Unfixed: { retried: 4, succeeded: 1 }: each handler run again to the same Error; 'named' stored as [{ error: { name: 'SmtpError' } }].
    expect(await drainOf(tasks)).toMatchObject({ claimed: 5, succeeded: 0, failed: 5, retried: 0 });
    expect(runs).toBe(5);
    const keeps = 'JSON keeps neither its message nor its stack;';
    const fail = (text: string) => `FailJob: result not stored: ${text}${noRetry}`;
    expect((await rows()).map((r) => [r.task, r.state, r.error])).toEqual([
      ['plain', 'failure', fail(`result is an Error ("smtp 550"): ${keeps} throw it, do not return it, or return its message (JSON would store it as {})`)],
      ['nested', 'failure', fail(`result.error is an Error ("bad address"): ${keeps} store its message (JSON would store it as {})`)],
      ['named', 'failure', fail(`result[0].error is an Error ("mailbox full"): ${keeps} store its message (JSON would store only its own fields (name))`)],
      ['batch', 'failure', fail(`result.error is an Error: ${keeps} store its message (JSON would store it as {})`)],
      ['tx', 'failure', fail(`result is an Error ("too late"): ${keeps} throw it, do not return it, or return its message (JSON would store it as {})`)],
    ]);
  });

  it('a FailJob, RetryJob or SnoozeJob returned, not thrown, fails its job at once saying so', async () => {
    const tasks = {
      fail: async () => new FailJob('card declined'),
      retry: async () => new RetryJob('rate limited', { delayMs: 60_000 }),
      snooze: async () => ({ later: new SnoozeJob({ delayMs: 1000 }) }),
    };
    await createQueue({ driver, tasks: {} }).publishBulk(Object.keys(tasks).map((task) => ({ task, maxRetries: 5 })));
    // Unfixed: { succeeded: 3 }, results { name: 'FailJob' }, { name: 'RetryJob', delayMs: 60000 }, { later: { name: 'SnoozeJob', … } }.
    expect(await drainOf(tasks)).toMatchObject({ claimed: 3, succeeded: 0, failed: 3, retried: 0, released: 0 });
    const fail = (text: string) => `FailJob: result not stored: ${text}${noRetry}`;
    expect((await rows()).map((r) => [r.task, r.state, r.error, r.result])).toEqual([
      ['fail', 'failure', fail('result is a FailJob ("card declined"): throw it, do not return it (JSON would store only its own fields (name))'), null],
      ['retry', 'failure', fail('result is a RetryJob ("rate limited"): throw it, do not return it '
        + '(JSON would store only its own fields (name, delayMs))'), null],
      ['snooze', 'failure', fail('result.later is a SnoozeJob ("snoozed for 1000 ms"): throw it, do not return it '
        + '(JSON would store only its own fields (name, delayMs))'), null],
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
    const rule = 'must not lose data in JSON: ';
    expect(await rejection(queue.publish('t', { cause: new Error('boom') }))).toMatchObject({ name: 'ValidationError', field: 'body',
      message: `body: ${rule}body.cause is an Error ("boom"): JSON keeps neither its message nor its stack; store its message (JSON would store it as {})` });
    expect(await rejection(queue.publishBulk([{ task: 't' }, { task: 't', body: new Error('boom') }]))).toMatchObject({
      name: 'ValidationError', field: 'jobs[1].body',
      message: `jobs[1].body: ${rule}jobs[1].body is an Error ("boom"): JSON keeps neither its message nor its stack; store its message (JSON would store it as {})` });
    expect(await db.sql('select job_id from jobs.job_queue')).toEqual([]);
  });
});
