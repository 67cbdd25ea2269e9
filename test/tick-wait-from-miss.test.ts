// A claim's wait for a bounded queue's tick grows while claims keep failing
// to publish it (a tenth of how long, up to ten times pgdrain.tick_wait_ms:
// jobs.tick_wait_bound). It counted from the tick's due time, so the first
// claim after a quiet spell (no claims for ten minutes), or of a schedule
// started in the past, waited ten times the setting at once. It counts from
// the first claim that failed (its jobs.tick_miss row, added by
// jobs.tick_queues). The outcome shows which bound the claim had: the app
// holding the queue's lock commits 2 s into the claim's wait, past a bound of
// 400 ms, before one of 4 s; a loaded machine that stretched those 2 s past
// 4 s would pass the first case with either bound: the test checks, by the
// database's clock, that the commit came within 4 s of the claim's start.
// On a real PostgreSQL.
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { doneOrBlocked, lockSessions, outcome } from './support/lock-sessions.js';
import { minute, T0 } from './support/schedule-clock.js';

const db = await testDb();
const session = lockSessions(db.url);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A first claim at `at` while an app transaction that published to `capped` stays open for 2 s of its wait. */
async function claimWhileHeld(at: string): Promise<unknown> {
  const [app, claim] = await Promise.all([session(), session()]);
  await claim.query(`set pgdrain.tick_wait_ms = '400ms'`);
  await app.query('begin');
  await app.query(`select jobs.publish('sweep.run', '{"by":"app"}', queue => 'capped')`);
  const claimed = outcome(claim.query(`select jobs.claim_json(1, now => $1)->>'count' as n`, [at]));
  await doneOrBlocked(db.sql, claim, claimed);
  await sleep(2000);
  await app.query('commit');
  // The claim's wait began after its statement did (query_start, kept once it ended); its 4 s bound, if that, still ran.
  expect(await db.sql(`select clock_timestamp() - query_start < interval '4s' as within from pg_stat_activity where pid = $1`,
                      [claim.pid]), 'the app committed within 4 s of the claim (else either bound passes)').toEqual([{ within: true }]);
  return claimed;
}

it('the first claim after a quiet spell waits the setting, not ten times it; claims that keep failing wait longer', async () => {
  await db.sql(`select jobs.create_queue('capped', max_size => 100)`);
  await db.sql(`select jobs.schedule('sweep', '*/10 * * * *', 'sweep.run', queue => 'capped', now => $1)`, [T0]);
  // Due at minute 10; the first claim comes at minute 20. Unfixed: 10 minutes overdue, a bound of 4 s: it
  // waited out the app and published (next_run_at minute 30).
  expect(await claimWhileHeld(minute(20))).toEqual([{ n: '0' }]);
  expect(await db.sql(`select next_run_at from jobs.recurring`)).toEqual([{ next_run_at: new Date(minute(10)) }]);
  expect(await db.sql(`select schedule, due, missed_at from jobs.tick_miss`))
    .toEqual([{ schedule: 'sweep', due: new Date(minute(10)), missed_at: new Date(minute(20)) }]);
  // Ten minutes of failing since: 4 s, and the next claim outwaits the app's 2 s.
  expect(await claimWhileHeld(minute(30))).toEqual([{ n: '0' }]);
  expect(await db.sql(`select next_run_at from jobs.recurring`)).toEqual([{ next_run_at: new Date(minute(40)) }]);
  expect(await db.sql(`select count(*)::int as n from jobs.job_queue where body->>'by' is null`)).toEqual([{ n: 1 }]);
});
