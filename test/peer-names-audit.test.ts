// pg-boss 12 and graphile-worker 0.18 options given where pgdrain takes other
// names (docs/migrating.md). defineTask() and migrate() took any key and
// ignored it: pg-boss's work(name, { batchSize: 10 }, handler) ported as
// defineTask(name, handler, { batchSize: 10 }) gave its handler, written for
// an array of jobs, one body. Both now refuse an unknown option as the other
// calls do, and each call's hints (src/peer-options.ts) name the option of its
// own that does the work: listJobs, reschedule, schedule, drain, createQueue.
// pg-boss's retryDelay is a fixed delay unless its retryBackoff (false by
// default) is set; pgdrain's retryBackoff defaults to true, so the hint says so.
import { describe, expect, it } from 'vitest';
import { createQueue, defineTask, migrate, schedule, ValidationError } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();

async function message(p: () => unknown): Promise<string> {
  const error = await Promise.resolve().then(p).then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(ValidationError);
  return (error as ValidationError).message;
}

describe('defineTask and migrate refuse an unknown option', () => {
  const q = createQueue({ driver: db.driver, tasks: {} });
  const handler = async () => 'done';
  it.each([
    ['defineTask', () => defineTask('peer.batch', handler, { batchSize: 10 } as never),
      `options: unknown option "batchSize" (pg-boss's batchSize is batch: { maxSize } (the handler then takes an array of { body, job }), and drain()'s first argument)`],
    ['queue.defineTask', () => q.defineTask('peer.batch', handler, { batchSize: 10 } as never),
      `options: unknown option "batchSize" (pg-boss's batchSize is batch: { maxSize } (the handler then takes an array of { body, job }), and drain()'s first argument)`],
    ['defineTask', () => defineTask('peer.meta', handler, { includeMetadata: true } as never),
      `options: unknown option "includeMetadata" (pg-boss's includeMetadata: none needed, ctx.job has the job's fields)`],
    ['defineTask', () => defineTask('peer.typo', handler, { transactonal: true } as never), 'options: unknown option "transactonal"'],
    // pollMs alone does nothing: a drain polls only while it lingers.
    ['defineTask', () => defineTask('peer.poll', handler, { pollingIntervalSeconds: 2 } as never),
      `options: unknown option "pollingIntervalSeconds" (pg-boss's pollingIntervalSeconds is drain()'s pollMs, in milliseconds, `
      + 'with lingerMs to wait on an empty queue)'],
    ['migrate', () => migrate(db.driver, { schema: 'pgboss' } as never),
      `options: unknown option "schema" (pg-boss's and graphile-worker's schema: none, pgdrain's is always jobs)`],
  ])('%s', async (_, call, said) => {
    expect(await message(call)).toBe(said);
  });

  it('and takes its own', async () => {
    const t = defineTask('peer.batch', async (jobs: { body: unknown }[]) => jobs.map(() => null), { batch: { maxSize: 10 } });
    expect(t.task).toBe('peer.batch');
    expect(q.defineTask('peer.tx', handler, { transactional: true, heartbeatSeconds: undefined }).task).toBe('peer.tx');
    expect(await migrate(db.driver, {})).toEqual([]);
  });
});

describe('a pg-boss or graphile-worker option names what does its work here', () => {
  const q = createQueue({ driver: db.driver, tasks: {} });
  const retryDelay = "pg-boss's retryDelay is retryDelaySeconds, with retryBackoff: false for its fixed delay "
    + "(pgdrain's retryBackoff defaults to true); with its retryBackoff: true, retryDelaySeconds is twice its retryDelay";
  it.each([
    ['publish', () => q.publish('peer.opt', {}, { retryDelay: 30 } as never), `options: unknown option "retryDelay" (${retryDelay})`],
    ['queues.create', () => q.queues.create('peer_names_q', { retryDelay: 30 } as never), `options: unknown option "retryDelay" (${retryDelay})`],
    ['queues.create', () => q.queues.create('peer_names_q', { partition: true } as never),
      `options: unknown option "partition" (pg-boss's partition: none needed, every queue's jobs share jobs.job_queue)`],
    ['queues.create', () => q.queues.create('peer_names_q', { warningQueueSize: 1000 } as never),
      `options: unknown option "warningQueueSize" (pg-boss's warningQueueSize: none; maxSize refuses a publish past that many `
      + 'waiting jobs, queueSize() counts them)'],
    ['queues.create', () => q.queues.create('peer_names_q', { notify: true } as never),
      `options: unknown option "notify" (pg-boss's notify: none needed, every publish NOTIFYs pgdrain_queued, which wakes `
      + 'a lingering drain (lingerMs))'],
    ['publish', () => q.publish('peer.opt', {}, { db: db.driver } as never),
      `options: unknown option "db" (pg-boss's db is queue.using(db).publish(…), or publish(db, …))`],
    ['listJobs', () => q.listJobs({ data: { a: 1 } } as never), `filter: unknown option "data" (pg-boss's data is body (containment, as data))`],
    ['listJobs', () => q.listJobs({ queued: true } as never),
      `filter: unknown option "queued" (pg-boss's queued is state: 'pending' or 'scheduled', one a call)`],
    ['reschedule', () => q.reschedule(['1'], { maxAttempts: 5 } as never),
      `options: unknown option "maxAttempts" (graphile-worker's maxAttempts is maxRetries = maxAttempts - 1)`],
    ['schedule', () => schedule(db.driver, { name: 'peer-names', cron: '0 3 * * *', task: 'r.d', key: 'eu' } as never),
      `spec: unknown option "key" (pg-boss's key: none, name is the schedule's own (task names its handler), one schedule per name)`],
    ['schedule', () => schedule(db.driver, { name: 'peer-names', cron: '0 3 * * *', task: 'r.d', backfillPeriod: 3_600_000 } as never),
      `spec: unknown option "backfillPeriod" (graphile-worker's backfillPeriod (milliseconds) is backfillSeconds, in seconds)`],
    ['drain', () => q.drain(1, new Date(Date.now() + 5000), { groupConcurrency: 2 } as never),
      `options: unknown option "groupConcurrency" (pg-boss's groupConcurrency is queues.create()'s groupConcurrency, the queue's cap across every drain)`],
    ['createQueue', () => createQueue({ driver: db.driver, taskList: {} } as never),
      `options: unknown option "taskList" (graphile-worker's taskList is tasks)`],
    ['createQueue', () => createQueue({ driver: db.driver, pollInterval: 2000 } as never),
      `options: unknown option "pollInterval" (graphile-worker's pollInterval is drain: { pollMs }, with lingerMs to wait on an empty queue)`],
  ])('%s', async (_, call, said) => {
    expect(await message(call)).toBe(said);
  });

  it('and that option is taken by the same call', async () => {
    const id = await q.publish('peer.opt', {}, { retryDelaySeconds: 30, retryBackoff: false, delaySeconds: 3600 });
    expect(await q.getJob(id)).toMatchObject({ retryDelaySeconds: 30, retryBackoff: false });
    expect((await q.listJobs({ body: {}, ids: [id], state: 'scheduled' })).map((j) => j.id)).toEqual([id]);
    expect(await q.reschedule([id], { maxRetries: 4 })).toBe(1);
    expect(await schedule(db.driver, { name: 'peer-names', cron: '0 3 * * *', task: 'r.d', backfillSeconds: 3600 })).toBe('drains');
    await q.queues.create('peer_names_q', { retryDelaySeconds: 30, retryBackoff: false, groupConcurrency: 2, maxSize: 1000 });
    expect(await q.queueSize('peer_names_q')).toBe(0);
    expect(createQueue({ driver: db.driver, tasks: {} }).driver).toBe(db.driver);
    await q.cancel(await q.using(db.driver).publish('peer.opt', {}, { delaySeconds: 3600 }));
    await q.cancel(id);
  });
});
