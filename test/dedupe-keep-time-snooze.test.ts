// A replace_keep_time publish onto a snoozed job (SnoozeJob, a rate limit: a
// release with retry_at) kept the snooze's time but dropped its line from
// last_error ('snoozed until … (1 in a row)') and its count (snoozed 0): the
// job then waited with nothing saying why. The time kept, what explains it is
// kept too now. A replace, which takes a new time, still drops both.
import { beforeEach, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const { sql } = db;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });
beforeEach(() => sql('truncate jobs.job_queue, jobs.job'));

/** Publishes a job under key k, claims it and snoozes it an hour. */
async function snoozed(): Promise<string> {
  const id = await queue.publish('t', { v: 1 }, { dedupeKey: 'k' });
  const [claimed] = await sql<{ attempt: number }>('select attempt from jobs.consume(1)');
  await sql(`select jobs.settle_arrays(array[$1::bigint], array[$2::int], array['release'],
                                       retry_at => array[now() + interval '1 hour'])`, [id, claimed!.attempt]);
  return id;
}
const row = async (id: string) => (await sql<{ at: Date; snoozed: number; last_error: string | null; body: unknown }>(
  'select scheduled_at as at, snoozed, last_error, body from jobs.job_queue where job_id = $1', [id]))[0]!;

it("replace_keep_time onto a snoozed job keeps the snooze's time and the line saying why", async () => {
  const id = await snoozed();
  const before = await row(id);
  expect(before.snoozed).toBe(1);
  expect(before.last_error).toMatch(/^snoozed until .* \(1 in a row\)/);
  expect(await queue.publish('t', { v: 2 }, { dedupeKey: 'k', dedupeMode: 'replace_keep_time' })).toBe(id);
  // Unfixed: { at: kept, snoozed: 0, last_error: null }.
  expect(await row(id)).toEqual({ at: before.at, snoozed: 1, last_error: before.last_error, body: { v: 2 } });
});

it('replace onto a snoozed job takes the new time and drops the snooze and its line', async () => {
  const id = await snoozed();
  expect(await queue.publish('t', { v: 2 }, { dedupeKey: 'k', dedupeMode: 'replace' })).toBe(id);
  const after = await row(id);
  expect(after).toMatchObject({ snoozed: 0, last_error: null, body: { v: 2 } });
  expect(after.at.getTime()).toBeLessThan(Date.now() + 60_000);
});
