// A job id given as a number (getJob(42), redrive({ ids: [42] }), a common
// slip from JavaScript) and redrive's ids or filter of the wrong kind are
// refused with the rule, naming the field. Before: zod's stock text ("Invalid
// input: expected string, received number", "expected array, received
// string", "expected object, received null").
import { describe, expect, it } from 'vitest';
import { createQueue, ValidationError } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });
const RULE = 'must be a job id (a positive integer as a string, at most 9223372036854775807)';

async function messageOf(call: () => Promise<unknown>): Promise<string> {
  const e = await call().then(() => null, (x: unknown) => x);
  expect(e).toBeInstanceOf(ValidationError);
  return (e as ValidationError).message;
}

describe('job ids and redrive filters of the wrong kind', () => {
  it('a number as a job id: the job id rule, naming the field', async () => {
    expect(await messageOf(() => queue.getJob(42 as never))).toBe(`jobId: ${RULE}`);
    expect(await messageOf(() => queue.redrive({ ids: ['1', 42 as never] }))).toBe(`filter.ids.1: ${RULE}`);
    expect(await messageOf(() => queue.listJobs({ before: 42 as never }))).toBe(`filter.before: ${RULE}`);
    expect(await messageOf(() => queue.listJobs({ ids: [42 as never] }))).toBe(`filter.ids.0: ${RULE}`);
  });

  it('redrive\'s ids not an array, and a filter not an object', async () => {
    expect(await messageOf(() => queue.redrive({ ids: '42' as never }))).toBe('filter.ids: must be an array of job ids');
    expect(await messageOf(() => queue.redrive(null as never))).toBe('filter: must be an object');
  });
});
