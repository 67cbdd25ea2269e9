// A release with a reason past the bound (jobs.unstarted_bound: released
// unstarted 25 times in a row, so nacked) was judged before the settle knew
// whether it applied: a worker's release sent again after its reply was lost
// (the job already released, and claimed by another worker) was made a nack
// that applied to nothing, and the answer named the delivery both in
// stale_ids and in never_started_ids. Now only a release the settle applies
// (its delivery leased, by its worker, no cancel requested) is bounded: the
// resend is stale, and named once. On a real PostgreSQL.
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';

const { sql } = await testDb();

type Answer = Record<string, unknown>;

const claim = async (worker: string) =>
  (await sql<{ attempt: number }>(`select attempt from jobs.claim(1, 'bounded', null, null, null, null, $1)`, [worker]))[0]!.attempt;
const release = async (id: string, attempt: number, worker: string) => (await sql<{ r: Answer }>(
  `select jobs.settle_arrays(array[$1::bigint], array[$2::int], array['release'], null, array['no room'], worker_id => $3) as r`,
  [id, attempt, worker]))[0]!.r;

it("a stale resend of a release past the bound is named stale only, and leaves the other worker's delivery alone", async () => {
  const id = (await sql<{ id: string }>(`select jobs.publish('bounded', '{}', max_retries => 1)::text as id`))[0]!.id;
  for (let n = 1; n <= 25; n++) expect(await release(id, await claim('W1'), 'W1')).toMatchObject({ released: 1 });
  // W1's 25th release, its reply lost; W2 has claimed the job since (its delivery the 26th, attempt 1 again).
  expect(await claim('W2')).toBe(1);
  // Unfixed: { stale: 1, stale_ids: 'id:1', never_started_ids: 'id:1' }: one delivery in both lists.
  expect(await release(id, 1, 'W1')).toEqual({ succeeded: 0, failed: 0, cancelled: 0, retried: 0, released: 0, stale: 1,
                                                stale_ids: `${id}:1` });
  expect(await sql('select attempt, worker_id, unstarted from jobs.job_queue where job_id = $1', [id]))
    .toEqual([{ attempt: 1, worker_id: 'W2', unstarted: 25 }]);
  // W2's own release is the 26th in a row: a nack.
  expect(await release(id, 1, 'W2')).toMatchObject({ retried: 1, released: 0, stale: 0, never_started_ids: `${id}:1` });
});

it('a release past the bound of a job whose cancel was requested ends it cancelled, not named never started', async () => {
  const id = (await sql<{ id: string }>(`select jobs.publish('bounded', '{}', max_retries => 1)::text as id`))[0]!.id;
  for (let n = 1; n <= 25; n++) await release(id, await claim('W1'), 'W1');
  const attempt = await claim('W1');
  await sql(`select jobs.cancel($1::bigint, 'not needed')`, [id]);
  // Unfixed: never_started_ids named it too, though it ended cancelled (its attempt not retried).
  expect(await release(id, attempt, 'W1')).toEqual({ succeeded: 0, failed: 0, cancelled: 1, retried: 0, released: 0, stale: 0,
                                                      cancelled_ids: `${id}:${attempt}` });
});
