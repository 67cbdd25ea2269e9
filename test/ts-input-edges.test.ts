// Bad input at the TypeScript edge that used to pass silently (a scripted
// sweep of every export with wrong types, typos and odd values): refused
// with a ValidationError naming the option, before any statement runs.
import { describe, expect, it } from 'vitest';
import { createQueue, setQueuePaused, ValidationError } from '../src/index.js';
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
