// What starts a job's count of snoozes in a row (jobs.job_queue.snoozed, the
// count its last_error's first line shows: 'snoozed until … (3 in a row)')
// afresh besides a retry, an expiry and a release with a reason. On a real
// PostgreSQL.
import { beforeEach, expect, it } from 'vitest';
import { testDb } from './support/db.js';

const { sql } = await testDb();

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
});

/** Claims the job (the only one due) and answers its attempt. */
const claim = async () => (await sql<{ attempt: number }>('select attempt from jobs.consume(1)'))[0]!.attempt;

/** Its delivery `attempt` nacked with error, due again at once. */
const nack = async (id: string, attempt: number, error: string) =>
  await sql(`select jobs.settle_arrays(array[$1::bigint], array[$2::int], array['nack'], null, array[$3], array[now()])`, [id, attempt, error]);

/** Its delivery `attempt` snoozed until at (a release with retry_at, no reason: SnoozeJob). */
const snooze = async (id: string, attempt: number, at = 'now()') =>
  await sql(`select jobs.settle_arrays(array[$1::bigint], array[$2::int], array['release'], retry_at => array[${at}]::timestamptz[])`, [id, attempt]);

const row = async (id: string) =>
  (await sql<{ attempt: number; snoozed: number; last_error: string | null }>(
    'select attempt, snoozed, last_error from jobs.job_queue where job_id = $1', [id]))[0];

// jobs.reschedule(attempt => …) started the count of releases unstarted in a
// row afresh and dropped its line, but kept the snoozes': the next snooze said
// '(3 in a row)' of a job given all its runs back, above the old line's run error.
it('jobs.reschedule given attempt starts the count of snoozes in a row afresh, dropping its line; without attempt it stays', async () => {
  const id = (await sql<{ id: string }>(`select jobs.publish('t', '{}', max_retries => 2)::text as id`))[0]!.id;
  await nack(id, await claim(), 'boom');
  for (let n = 1; n <= 2; n++) await snooze(id, await claim());
  expect(await row(id)).toEqual({ attempt: 1, snoozed: 2, last_error: expect.stringMatching(/^snoozed until \S+ \(2 in a row\)\nboom$/) });
  await sql('select jobs.reschedule(array[$1::bigint], priority => 5)', [id]);
  expect(await row(id)).toMatchObject({ snoozed: 2 });
  await sql('select jobs.reschedule(array[$1::bigint], attempt => 0)', [id]);
  // Unfixed: { snoozed: 2 }, the line kept.
  expect(await row(id)).toEqual({ attempt: 0, snoozed: 0, last_error: 'boom' });
  await snooze(id, await claim());
  // Unfixed: '(3 in a row)'.
  expect(await row(id)).toEqual({ attempt: 0, snoozed: 1, last_error: expect.stringMatching(/^snoozed until \S+ \(1 in a row\)\nboom$/) });
});

// A replace publish (dedupe_mode replace, replace_keep_time) rewrote the
// waiting job and kept its last_error whole: its first line still said
// 'snoozed until <a time maybe long past> (2 in a row)', snoozes of the job it
// replaced, and its next snooze counted on from them. A replaced job keeps its
// attempt and its last run's error (and its releases unstarted in a row, with
// their line), not the snoozes; replace_keep_time, which keeps the snooze's
// time, keeps them with it (test/dedupe-keep-time-snooze).
it('a replace publish drops the snoozes of the job it replaces (count and line), keeping its last run error and unstarted line', async () => {
  const publish = (mode: string, body: string) => sql<{ id: string }>(`select jobs.publish('t', $1::jsonb, now() + interval '1 hour',
    max_retries => 3, dedupe_key => 'k', dedupe_mode => $2)::text as id`, [body, mode]);
  const id = (await sql<{ id: string }>(`select jobs.publish('t', '{"v":0}', max_retries => 3, dedupe_key => 'k')::text as id`))[0]!.id;
  await nack(id, await claim(), 'boom');
  await snooze(id, await claim(), `'2026-01-01T00:00:00Z'`);
  await snooze(id, await claim(), `'2026-01-01T00:00:00Z'`);
  expect(await row(id)).toEqual({ attempt: 1, snoozed: 2, last_error: 'snoozed until 2026-01-01T00:00:00.000Z (2 in a row)\nboom' });
  expect(await publish('replace', '{"v":1}')).toEqual([{ id }]);
  // Unfixed: { snoozed: 2 }, 'snoozed until 2026-01-01T00:00:00.000Z (2 in a row)\nboom'.
  expect(await row(id)).toEqual({ attempt: 1, snoozed: 0, last_error: 'boom' });
  // Its next snooze counts from 1.
  await sql(`update jobs.job_queue set scheduled_at = now() where job_id = $1`, [id]);
  await snooze(id, await claim());
  expect(await row(id)).toMatchObject({ snoozed: 1, last_error: expect.stringMatching(/^snoozed until \S+ \(1 in a row\)\nboom$/) });
  // replace_keep_time keeps the snooze's time, and so its count and line; a job with no error before its snoozes has none else.
  await sql('truncate jobs.job_queue');
  const other = (await sql<{ id: string }>(`select jobs.publish('t', '{"v":0}', dedupe_key => 'k')::text as id`))[0]!.id;
  await snooze(other, await claim(), `now() + interval '1 minute'`);
  expect(await publish('replace_keep_time', '{"v":2}')).toEqual([{ id: other }]);
  expect(await row(other)).toEqual({ attempt: 0, snoozed: 1, last_error: expect.stringMatching(/^snoozed until \S+ \(1 in a row\)$/) });
  // Releases unstarted in a row are the consumer's (no room to start it), not the job's content: kept, with their line.
  await sql(`update jobs.job_queue set scheduled_at = now() where job_id = $1`, [other]);
  await sql(`select jobs.settle_arrays(array[$1::bigint], array[$2::int], array['release'], null, array['no room'])`, [other, await claim()]);
  expect(await publish('replace', '{"v":3}')).toEqual([{ id: other }]);
  expect(await sql('select unstarted, snoozed, last_error from jobs.job_queue where job_id = $1', [other]))
    .toEqual([{ unstarted: 1, snoozed: 0, last_error: 'released unstarted (1 in a row): no room' }]);
});
