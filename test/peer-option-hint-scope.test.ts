// The pg-boss/graphile-worker hint (src/peer-options.ts) is publish's: it names
// a publish option. Other calls refuse the same key with no hint, since the
// option it names is not theirs (a drain's or a list's queueName is not
// serialKey, queues.create has no expiresInSeconds): the user would follow it
// into a second refusal.
import { describe, expect, it } from 'vitest';
import { createQueue, ValidationError } from '../src/index.js';
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
    ['queues.create', () => q.queues.create('peer_hint_q', { retentionSeconds: 60 } as never), 'options: unknown option "retentionSeconds"'],
  ])('%s names the key alone, with no publish option as its hint', async (_, call, said) => {
    expect(await message(call)).toBe(said);
  });

  it('publish still hints', async () => {
    expect(await message(() => q.publish('peer.opt', {}, { queueName: 'q' } as never)))
      .toBe(`options: unknown option "queueName" (graphile-worker's queueName is serialKey)`);
  });
});
