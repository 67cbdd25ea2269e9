// A claim with a tick due publishes it, its schedule's row locked to commit,
// and went on to wait for a serial key's lock: its expiry ending a keyed
// job (as its settle of one: the key's turn handed on). An app transaction
// that held that key (it published a job with it) and then changed the
// schedule (jobs.schedule waits for the row) closed a cycle: 40P01. Any
// queue, bounded or not; jobs.maintain (ticks, then expiry) did the same.
// The claim (and maintain) now settles and expires before it locks a
// schedule's row, waiting for no lock with one held. Real locks, two
// sessions, on a real PostgreSQL.
import { beforeEach, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { blockedOn, lockSessions, outcome, type LockSession } from './support/lock-sessions.js';
import { minute, T0 } from './support/schedule-clock.js';

const db = await testDb();
const session = lockSessions(db.url);

beforeEach(async () => {
  await db.sql('truncate jobs.job_queue, jobs.job, jobs.recurring, jobs.tick_miss');
  await db.sql(`select jobs.schedule('sweep', '*/10 * * * *', 'sweep.run', runner => 'drains', now => $1)`, [T0]);  // due at minute 10
});

/** A job of key K, claimed at T0; its lease passes `timeout` seconds later, and it ends then (no retry left). Its id. */
async function keyedRunning(timeout = 30): Promise<string> {
  const [{ id }] = await db.sql(`select jobs.publish('k.run', '{}', serial_key => 'K', max_retries => 0, timeout_seconds => $2,
                                   now => $1)::text as id`, [T0, timeout]) as [{ id: string }];
  await db.sql(`select jobs.claim_json(1, now => $1)`, [T0]);
  return id;
}

/** The app holds K (its publish of a job of K), `waiter` runs `text` until it waits for K, then the app changes the schedule. */
async function appChangesSchedule(text: string, params: unknown[]): Promise<{ changed: unknown; waited: unknown }> {
  const [app, waiter] = await Promise.all([session(), session()]) as [LockSession, LockSession];
  await app.query('begin');
  await app.query(`select jobs.publish('k.run', '{}', serial_key => 'K')`);
  const waited = outcome(waiter.query(text, params));
  await blockedOn(db.sql, waiter, ['advisory']);
  const changed = await outcome(app.query(`select jobs.schedule('sweep', '*/5 * * * *', 'sweep.run', runner => 'drains',
                                           now => $1) as r`, [minute(20)]));
  await app.query(Array.isArray(changed) ? 'commit' : 'rollback');
  return { changed, waited: await waited };
}

it("a claim publishing a tick, then expiring a keyed job: the app holding its key changing that schedule is no deadlock", async () => {
  await keyedRunning();
  const { changed, waited } = await appChangesSchedule(`select jobs.claim_json(1, now => $1)->>'count' as n`, [minute(20)]);
  // Unfixed: 'error 40P01 undefined: deadlock detected' (one side or the other).
  expect(changed).toEqual([{ r: 'drains' }]);
  expect(Array.isArray(waited)).toBe(true);
  // The due tick published once (by the app's jobs.schedule, as it changes the expression), the keyed job expired.
  expect(await db.sql(`select count(*)::int as n from jobs.job_queue where task = 'sweep.run'`)).toEqual([{ n: 1 }]);
  expect(await db.sql(`select task, status from jobs.job`)).toEqual([{ task: 'k.run', status: 'failure' }]);
  expect(await db.sql(`select next_run_at from jobs.recurring`)).toEqual([{ next_run_at: new Date(minute(25)) }]);
});

it('a claim publishing a tick, then settling a keyed job: no deadlock either', async () => {
  const id = await keyedRunning(3600);
  const { changed, waited } = await appChangesSchedule(
    `select jobs.claim_json(1, ids => array[$2::bigint], attempts => array[1], outcomes => array['ack'], now => $1)->>'count' as n`,
    [minute(20), id]);
  expect(changed).toEqual([{ r: 'drains' }]);
  expect(Array.isArray(waited)).toBe(true);
  expect(await db.sql(`select task, status from jobs.job`)).toEqual([{ task: 'k.run', status: 'success' }]);
});

it('jobs.maintain publishing a tick, then expiring a keyed job: no deadlock either', async () => {
  await keyedRunning();
  const { changed, waited } = await appChangesSchedule(`select jobs.maintain(now => $1)->>'expired' as n`, [minute(20)]);
  expect(changed).toEqual([{ r: 'drains' }]);
  expect(waited).toEqual([{ n: '1' }]);
  expect(await db.sql(`select count(*)::int as n from jobs.job_queue where task = 'sweep.run'`)).toEqual([{ n: 1 }]);
});
