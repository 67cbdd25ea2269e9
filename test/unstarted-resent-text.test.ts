// A worker's settle sent again finds its release already applied
// (jobs.settle_resent): one its earlier try made a nack (jobs.unstarted_bound)
// is counted as that nack. That was told from the job's error starting with
// 'never started: released unstarted ', text anyone's nack can write: a
// drain's release (its job never started) arriving after an SQL jobs.nack of
// that delivery with such an error was counted retried and named in
// never_started_ids (the drain's report and onJobEnd: a nack of its own)
// though it applied to nothing. Now only the exact error the bound would
// have written for this release (its reason) counts. On a real PostgreSQL.
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';

const { sql } = await testDb();

type Answer = Record<string, unknown>;
const NEVER = 'never started: released unstarted 25 times in a row, so nacked this time, its attempt spent; this time too: ';

const claim = async (worker: string) =>
  (await sql<{ attempt: number }>(`select attempt from jobs.claim(1, 'resent', null, null, null, null, $1)`, [worker]))[0]!.attempt;
const release = async (id: string, attempt: number, worker: string, why: string) => (await sql<{ r: Answer }>(
  `select jobs.settle_arrays(array[$1::bigint], array[$2::int], array['release'], null, array[$4], worker_id => $3) as r`,
  [id, attempt, worker, why]))[0]!.r;

it("a release after another's nack whose error reads as the bound's is stale, not a never-started nack", async () => {
  const id = (await sql<{ id: string }>(`select jobs.publish('resent', '{}', max_retries => 3)::text as id`))[0]!.id;
  const attempt = await claim('W1');
  // An operator's nack of that delivery, its error a copy of an old never-started one (another reason).
  expect((await sql<{ r: boolean }>('select jobs.nack($1::bigint, $2) as r', [id, `${NEVER}an old reason`]))[0]!.r).toBe(true);
  // W1's release (its job never started) comes after: it applies to nothing.
  expect(await release(id, attempt, 'W1', 'no room')).toEqual({ succeeded: 0, failed: 0, cancelled: 0, retried: 0, released: 0,
                                                                 stale: 1, stale_ids: `${id}:${attempt}` });
});

it('a resend of a release its earlier try made a nack is still counted as that nack', async () => {
  const id = (await sql<{ id: string }>(`select jobs.publish('resent', '{}', max_retries => 3)::text as id`))[0]!.id;
  for (let n = 1; n <= 25; n++) await release(id, await claim('W1'), 'W1', 'no room');
  const attempt = await claim('W1');
  expect(await release(id, attempt, 'W1', 'no room')).toMatchObject({ retried: 1, never_started_ids: `${id}:${attempt}` });
  // Its reply lost, sent again.
  expect(await release(id, attempt, 'W1', 'no room')).toEqual({ succeeded: 0, failed: 0, cancelled: 0, retried: 1, released: 0,
                                                                 stale: 0, never_started_ids: `${id}:${attempt}` });
});
