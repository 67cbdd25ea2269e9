// The pg-boss/graphile-worker hints (src/peer-options.ts) are each call's own:
// publish's name a publish option. Other calls refuse publish's keys with no
// publish hint, since the option it names is not theirs (a drain's or a list's
// queueName is not serialKey, queues.create has no expiresInSeconds of a job):
// the user would follow it into a second refusal. drain(), schedule() and
// queues.create() hint from tables of their own (pg-boss's work(), schedule()
// and createQueue() options), and the option each hint names is one the same
// call takes.
import { describe, expect, it } from 'vitest';
import { createQueue, schedule, ValidationError } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();

async function message(p: () => Promise<unknown>): Promise<string> {
  const error = await Promise.resolve().then(p).then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(ValidationError);
  return (error as ValidationError).message;
}

describe('a peer option given to a call other than publish', () => {
  const q = createQueue({ driver: db.driver, tasks: {} });
  it.each([
    ['drain', () => q.drain(1, new Date(Date.now() + 5000), { queueName: 'emails' } as never), 'options: unknown option "queueName"'],
    ['listJobs', () => q.listJobs({ queueName: 'emails' } as never), 'filter: unknown option "queueName"'],
    ['redrive', () => q.redrive({ queueName: 'emails' } as never), 'filter: unknown option "queueName"'],
    ['queues.create', () => q.queues.create('peer_hint_q', { singletonKey: 'k' } as never), 'options: unknown option "singletonKey"'],
  ])('%s names the key alone, with no publish option as its hint', async (_, call, said) => {
    expect(await message(call)).toBe(said);
  });

  it('publish still hints', async () => {
    expect(await message(() => q.publish('peer.opt', {}, { queueName: 'q' } as never)))
      .toBe(`options: unknown option "queueName" (graphile-worker's queueName is serialKey)`);
  });

  it("publish hints pg-boss's keepUntil (an option of its send() before 10) as expiresAt", async () => {
    expect(await message(() => q.publish('peer.opt', {}, { keepUntil: new Date() } as never)))
      .toBe(`options: unknown option "keepUntil" (pg-boss's keepUntil is expiresAt: a job still waiting (to start or to retry) then ends as expired)`);
  });
});

describe('a pg-boss or graphile-worker option of drain, schedule or createQueue', () => {
  const q = createQueue({ driver: db.driver, tasks: {} });
  const soon = () => new Date(Date.now() + 5000);
  it.each([
    ['drain', () => q.drain(1, soon(), { localConcurrency: 4 } as never),
      `options: unknown option "localConcurrency" (pg-boss's localConcurrency is concurrency)`],
    ['drain', () => q.drain(1, soon(), { pollInterval: 500 } as never),
      `options: unknown option "pollInterval" (graphile-worker's pollInterval is pollMs, with lingerMs to wait on an empty queue)`],
    ['schedule', () => schedule(db.driver, { name: 'peer-hint', cron: '0 3 * * *', task: 'report.daily', data: { a: 1 } } as never),
      `spec: unknown option "data" (pg-boss's data is body)`],
    ['queues.create', () => q.queues.create('peer_hint_q', { retentionSeconds: 60 } as never),
      `options: unknown option "retentionSeconds" (pg-boss's retentionSeconds is expiresInSeconds)`],
    ['queues.create', () => q.queues.create('peer_hint_q', { expireInSeconds: 900 } as never),
      `options: unknown option "expireInSeconds" (pg-boss's expireInSeconds is timeoutSeconds)`],
    ['queues.create', () => q.queues.create('peer_hint_q', { policy: 'singleton' } as never),
      `options: unknown option "policy" (pg-boss's policy singleton is maxRunning: 1; short, stately and exclusive are a publish's dedupeKey and dedupeMode)`],
    ['queues.create', () => q.queues.create('peer_hint_q', { heartbeatSeconds: 30 } as never),
      `options: unknown option "heartbeatSeconds" (pg-boss's heartbeatSeconds is defineTask()'s heartbeatSeconds, or ctx.extendLease())`],
  ])('%s names the option of its own that does the work', async (_, call, said) => {
    expect(await message(call)).toBe(said);
  });

  it('and the option each hint names is taken by that call', async () => {
    const report = await q.drain(1, soon(), { concurrency: 4, pollMs: 500, lingerMs: 0 });
    expect(report.stoppedBy).toBe('empty');
    expect(await schedule(db.driver, { name: 'peer-hint', cron: '0 3 * * *', task: 'report.daily', body: { a: 1 } })).toBe('drains');
    await q.queues.create('peer_hint_q', { expiresInSeconds: 60, timeoutSeconds: 900, maxRunning: 1 });
    expect((await q.queues.list()).find((x) => x.name === 'peer_hint_q'))
      .toMatchObject({ expiresInSeconds: 60, timeoutSeconds: 900, maxRunning: 1 });
  });
});
