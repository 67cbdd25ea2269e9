// A job's releases with a reason in a row (claimed, never started) were
// counted from its last_error's first line, 'released unstarted (N in a
// row): …', which a user's own error could carry: a nack (SQL jobs.nack, a
// settle's error, a handler's Error message) saying 'released unstarted (25
// in a row): …' made the job's next release with a reason a nack, an
// attempt spent on a job released once (jobs.unstarted_bound). The count is a
// column now (jobs.job_queue.unstarted), written only by the settle's
// release, retry and an expiry. On a real PostgreSQL.
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';

const { sql } = await testDb();

type Answer = Record<string, unknown>;
const FAKE = 'released unstarted (25 in a row): my own words';
const WHY = 'no connection came free (raise the pool)';

let task = 't';
/** A job of a task of its own, the only one claim() takes. */
const publish = async () => {
  task = `t${Math.random().toString(36).slice(2)}`;
  return (await sql<{ id: string }>(`select jobs.publish($1, '{}', max_retries => 3)::text as id`, [task]))[0]!.id;
};
const claim = async () => (await sql<{ attempt: number }>('select attempt from jobs.consume_topic($1, 1)', [task]))[0]!.attempt;
const release = async (id: string, attempt: number) =>
  (await sql<{ r: Answer }>(`select jobs.settle_arrays(array[$1::bigint], array[$2::int], array['release'], null, array[$3::text]) as r`,
                            [id, attempt, WHY]))[0]!.r;
const row = async (id: string) => (await sql<{ attempt: number; last_error: string }>(
  'select attempt, last_error from jobs.job_queue where job_id = $1', [id]))[0];
const unstarted = async (id: string) => (await sql<{ n: number }>('select unstarted as n from jobs.job_queue where job_id = $1', [id]))[0]!.n;

it("a nack's own error saying 'released unstarted (25 in a row)' does not count: the next release is the first", async () => {
  for (const nack of [
    (id: string, attempt: number) => sql('select jobs.nack($1::bigint, $2, now(), attempt => $3)', [id, FAKE, attempt]), // SQL
    // A drain's settle: what a handler's thrown Error message becomes.
    (id: string, attempt: number) => sql(`select jobs.settle(jsonb_build_array(jsonb_build_object('id', $1::bigint, 'attempt', $2::int,
                                            'outcome', 'nack', 'error', $3::text, 'retry_at', now())))`, [id, attempt, FAKE]),
  ]) {
    const id = await publish();
    await nack(id, await claim());
    expect(await row(id)).toEqual({ attempt: 1, last_error: FAKE });
    // Unfixed: { released: 0, retried: 1, never_started_ids }, its attempt spent: 'never started: released unstarted 25 times …'.
    expect(await release(id, await claim())).toEqual({ succeeded: 0, failed: 0, cancelled: 0, retried: 0, released: 1, stale: 0 });
    // Its own line kept below the count (unfixed, the next release dropped it as if it were the drain's).
    expect(await row(id)).toEqual({ attempt: 1, last_error: `released unstarted (1 in a row): ${WHY}\n${FAKE}` });
    expect(await release(id, await claim())).toMatchObject({ released: 1 });
    expect(await row(id)).toEqual({ attempt: 1, last_error: `released unstarted (2 in a row): ${WHY}\n${FAKE}` });
  }
});

it('the count goes back to 0 on a retry, a snooze or an expiry, and a claim or a plain release leaves it', async () => {
  const id = await publish();
  const at = async (n: number) => expect(await unstarted(id)).toBe(n);
  await release(id, await claim());
  await release(id, await claim());
  await at(2);
  await claim();
  await sql('select jobs.release(array[$1::bigint])', [id]);
  await at(2); // claimed, then released with no reason
  await claim();
  await sql('select jobs.nack($1::bigint, $2, now())', [id, 'boom']);
  await at(0);
  await release(id, await claim());
  await at(1);
  const attempt = await claim();
  await sql(`select jobs.settle_arrays(array[$1::bigint], array[$2::int], array['release'], retry_at => array[now()])`, [id, attempt]);
  await at(0); // a snooze: its handler ran
  await release(id, await claim());
  await at(1);
  // Its lease passed: expired by the next claim, retried at once.
  await claim();
  await sql(`update jobs.job_queue set lease_until = now() - interval '1 s', started_at = now() - interval '2 s' where job_id = $1`, [id]);
  expect(await claim()).toBe(3);
  await at(0);
});
