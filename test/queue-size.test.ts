// queueSize / queue.queueSize (pg-boss's getQueueSize): how many jobs of a
// named queue are pending, scheduled, running or expired, one statement over
// jobs.job_queue; an unknown queue or state is refused naming the option.
import { beforeAll, describe, expect, it } from 'vitest';
import { createQueue, queueSize, ValidationError } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} } });

beforeAll(async () => {
  await queue.queues.create('sized');
  await queue.queues.create('other');
  // sized: 1 running, 1 expired, 3 pending, 2 scheduled, 1 blocked, 1 ended; other: 1 pending.
  await queue.publish('size.job', {}, { queue: 'sized', priority: 9 });
  await sql(`select * from jobs.consume(1, queue => 'sized')`);
  // Due two hours ago, leased an hour ago for 60 s: its lease has passed.
  await queue.publish('size.job', {}, { queue: 'sized', priority: 8, runAt: new Date(Date.now() - 7_200_000) });
  await sql(`select * from jobs.consume(1, queue => 'sized', now => now() - interval '1 hour')`);
  for (let i = 0; i < 3; i++) await queue.publish('size.job', { i }, { queue: 'sized' });
  const later = await queue.publish('size.job', {}, { queue: 'sized', delaySeconds: 3600 });
  await queue.publish('size.job', {}, { queue: 'sized', runAt: new Date(Date.now() + 86_400_000) });
  await queue.publish('size.job', {}, { queue: 'sized', dependsOn: [later] });
  const ended = await queue.publish('size.job', {}, { queue: 'sized', delaySeconds: 3600 });
  await queue.fail([ended], 'gone');
  await queue.publish('size.job', {}, { queue: 'other' });
});

describe('queueSize', () => {
  it('counts a queue\'s jobs in each state, pending by default, as listJobs names them', async () => {
    expect(await queue.queueSize('sized')).toBe(3);
    expect(await queue.queueSize('sized', { state: 'pending' })).toBe(3);
    expect(await queue.queueSize('sized', { state: 'scheduled' })).toBe(2);
    expect(await queue.queueSize('sized', { state: 'running' })).toBe(1);
    expect(await queue.queueSize('sized', { state: 'expired' })).toBe(1);
    expect(await queueSize(db.driver, 'other')).toBe(1);
    for (const state of ['pending', 'scheduled', 'running', 'expired'] as const) {
      expect(await queue.queueSize('sized', { state }), state).toBe((await queue.listJobs({ queue: 'sized', state })).length);
    }
    // The default queue, and a queue with no jobs: 0, not an error.
    expect(await queue.queueSize()).toBe(0);
    await queue.queues.create('empty');
    expect(await queue.queueSize('empty', { state: 'running' })).toBe(0);
  });

  it('follows the jobs: a claim moves one from pending to running, an ack ends it', async () => {
    await queue.publish('size.move', {}, { queue: 'empty' });
    expect(await queue.queueSize('empty')).toBe(1);
    const [{ job_id }] = await sql<{ job_id: string }>(`select job_id from jobs.consume(1, queue => 'empty')`) as [{ job_id: string }];
    expect([await queue.queueSize('empty'), await queue.queueSize('empty', { state: 'running' })]).toEqual([0, 1]);
    await sql('select jobs.ack($1::bigint)', [job_id]);
    expect(await queue.queueSize('empty', { state: 'running' })).toBe(0);
  });

  it('refuses an unknown queue, a bad name, a bad state and unknown options, naming each', async () => {
    const refused = async (call: Promise<unknown>, field: string, message: string) => {
      const error = await call.then(() => null, (e: unknown) => e);
      expect(error).toBeInstanceOf(ValidationError);
      expect(error).toMatchObject({ code: 'invalid_argument', field, message: `${field}: ${message}` });
    };
    await refused(queue.queueSize('nope'), 'name', "no queue named nope; create it with queues.create('nope')");
    await expect(queue.queueSize('')).rejects.toMatchObject({ code: 'invalid_argument', field: 'name' });
    await refused(queue.queueSize('sized', { state: 'blocked' as never }), 'options.state',
                  'must be one of pending, scheduled, running, expired');
    await refused(queue.queueSize('sized', { state: 'waiting' as never }), 'options.state',
                  'must be one of pending, scheduled, running, expired');
    await refused(queue.queueSize('sized', { queue: 'x' } as never), 'options', 'unknown option "queue"');
    await refused(queue.queueSize('sized', null as never), 'options', 'must be an object');
  });
});
