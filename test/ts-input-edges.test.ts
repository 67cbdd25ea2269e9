// Bad input at the TypeScript edge that used to pass silently (a scripted
// sweep of every export with wrong types, typos and odd values): refused
// with a ValidationError naming the option, before any statement runs.
import { describe, expect, it } from 'vitest';
import { createQueue, setQueuePaused, takeToken, ValidationError } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();

async function rejection(p: Promise<unknown>): Promise<ValidationError> {
  const error = await p.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(ValidationError);
  return error as ValidationError;
}

describe('createQueue', () => {
  it('refuses an unknown option: a misspelt tasks would leave it with no handlers', () => {
    const build = () => createQueue({ driver: db.driver, taks: { email: { send: async () => 1 } } } as never);
    expect(build).toThrow(ValidationError);
    expect(build).toThrow('options: unknown option "taks"');
  });

  it('still takes each option it knows', () => {
    const queue = createQueue({ driver: db.driver, tasks: {}, drain: { concurrency: 2 } });
    expect(queue.driver).toBe(db.driver);
  });
});

describe('setQueuePaused', () => {
  it.each([['false'], ['true'], [0], [1], [null]])('refuses paused = %j, which truthiness would read', async (paused) => {
    await db.sql(`select jobs.create_queue('edge_paused')`);
    await db.sql(`select jobs.resume_queue('edge_paused')`);
    const error = await rejection(setQueuePaused(db.driver, 'edge_paused', paused as never));
    expect(error.field).toBe('paused');
    expect(error.message).toMatch(/must be a boolean/);
    // 'false' used to pause it.
    expect(await db.sql(`select paused from jobs.queue where name = 'edge_paused'`)).toEqual([{ paused: false }]);
  });

  it('pauses with true and resumes with false', async () => {
    await db.sql(`select jobs.create_queue('edge_paused2')`);
    expect(await setQueuePaused(db.driver, 'edge_paused2', true)).toBe(true);
    expect(await db.sql(`select paused from jobs.queue where name = 'edge_paused2'`)).toEqual([{ paused: true }]);
    expect(await setQueuePaused(db.driver, 'edge_paused2', false)).toBe(true);
    expect(await db.sql(`select paused from jobs.queue where name = 'edge_paused2'`)).toEqual([{ paused: false }]);
  });
});

// As the SQL checks (jobs.blank, sql/0002): where an empty text is refused, so is one of only whitespace.
describe('texts of only whitespace, refused as empty ones are', () => {
  const queue = () => createQueue({ driver: db.driver, tasks: { t: () => null } });
  const deadline = () => Date.now() + 5000;

  it.each([
    ['drain workerId', () => queue().drain(1, deadline(), { workerId: ' \t' }), 'options.workerId', /non-empty text/],
    ['drain topic', () => queue().drain(1, deadline(), { topic: '  ' }), 'options.topic', /non-empty pattern/],
    ['publish dedupeKey', () => queue().publish('t', null, { dedupeKey: ' ' }), 'options.dedupeKey', /non-empty text/],
    ['publish serialKey', () => queue().publish('t', null, { serialKey: '\n' }), 'options.serialKey', /non-empty text/],
    ['takeToken key', () => takeToken(db.driver, '   ', { limit: 1, perSeconds: 60 }), 'key', /not only whitespace/],
    // A LIKE pattern over task names, as drain's topic: a blank one (no %) could only match a blank task name, which none is.
    ['redrive task', () => queue().redrive({ task: ' ' }), 'filter.task', /non-empty pattern, not only whitespace/],
  ])('%s', async (_name, call, field, rule) => {
    await db.sql('truncate jobs.job_queue, jobs.rate_limit');
    const error = await rejection(call());
    expect(error.field).toBe(field);
    expect(error.rule).toMatch(rule);
    expect(await db.sql('select 1 from jobs.job_queue union all select 1 from jobs.rate_limit')).toEqual([]);
  });

  it('a text with more than whitespace is taken', async () => {
    await db.sql('truncate jobs.job_queue');
    const q = queue();
    await q.publish('t', null, { dedupeKey: ' v ', timeoutSeconds: 1 });
    expect(await q.drain(1, deadline(), { workerId: ' w ', topic: ' %' })).toMatchObject({ claimed: 0 });
    expect(await q.drain(1, deadline(), { workerId: ' w ' })).toMatchObject({ claimed: 1, succeeded: 1 });
    expect(await db.sql(`select worker_id from jobs.job`)).toEqual([{ worker_id: ' w ' }]);
  });
});

describe("a pg-boss or graphile-worker option at publish", () => {
  it('is refused as unknown, saying which option does its work here; nothing is written', async () => {
    const q = createQueue({ driver: db.driver, tasks: {} });
    const said = async (options: object) => (await rejection(q.publish('peer.opt', {}, options as never))).message;
    expect(await said({ retryLimit: 5 })).toBe(`options: unknown option "retryLimit" (pg-boss's retryLimit is maxRetries, the same count)`);
    expect(await said({ maxAttempts: 5 })).toBe(`options: unknown option "maxAttempts" (graphile-worker's maxAttempts is maxRetries = maxAttempts - 1)`);
    expect(await said({ startAfter: new Date(), singletonKey: 'k' })).toBe('options: unknown option "startAfter", "singletonKey" '
      + `(pg-boss's startAfter is runAt (a Date) or delaySeconds; pg-boss's singletonKey is dedupeKey)`);
    expect(await said({ expireInSeconds: 900 })).toBe(`options: unknown option "expireInSeconds" (pg-boss's expireInSeconds is timeoutSeconds)`);
    expect(await said({ timeoutMs: 5 })).toBe('options: unknown option "timeoutMs"'); // no peer's: named alone
    // pg-boss's other per-job options (send and insert take them) say where their work is done.
    expect(await said({ deleteAfterSeconds: 60 })).toBe('options: unknown option "deleteAfterSeconds" '
      + "(pg-boss's deleteAfterSeconds is maintain()'s retentionSeconds, for every queue)");
    expect(await said({ heartbeatSeconds: 30 })).toBe('options: unknown option "heartbeatSeconds" '
      + "(pg-boss's heartbeatSeconds is defineTask()'s heartbeatSeconds, or ctx.extendLease())");
    expect(await said({ singletonNextSlot: true })).toMatch(/unknown option "singletonNextSlot" \(pg-boss's singletonNextSlot: /);
    expect(await said({ id: 'a-uuid' })).toMatch(/unknown option "id" \(pg-boss's id: /);
    // publishBulk says the same (the same check).
    expect((await rejection(q.publishBulk([{ task: 'peer.opt', queueName: 'q' } as never]))).message)
      .toMatch(/unknown option "queueName" \(graphile-worker's queueName is serialKey\)$/);
    expect(await db.sql(`select count(*)::int as n from jobs.job_queue where task = 'peer.opt'`)).toEqual([{ n: 0 }]);
  });
});
