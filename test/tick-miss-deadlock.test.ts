// A claim whose wait for a bounded queue's tick fails records the miss (the
// wait grows from the first failed claim), then goes on to expiry, which
// waits for a serial key's lock. The marker was a column of jobs.recurring:
// its UPDATE held the schedule's row locked to commit, so an app transaction
// that published to the queue with that key and then changed the schedule
// (jobs.schedule waits for the row) deadlocked with the claim (40P01). It is
// a row of jobs.tick_miss now, which nothing waits for. On a real PostgreSQL.
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { lockSessions, outcome } from './support/lock-sessions.js';
import { minute, T0 } from './support/schedule-clock.js';

const db = await testDb();
const session = lockSessions(db.url);

it('a claim that failed its tick wait and expires a serial-key job: the app changing that schedule is no deadlock', async () => {
  await db.sql(`select jobs.create_queue('capped', max_size => 100)`);
  await db.sql(`select jobs.schedule('sweep', '*/10 * * * *', 'sweep.run', queue => 'capped', runner => 'drains', now => $1)`, [T0]);
  await db.sql(`select jobs.publish('k.run', '{}', serial_key => 'K', max_retries => 0, timeout_seconds => 30, now => $1)`, [T0]);
  await db.sql(`select jobs.claim_json(1, now => $1)`, [T0]);  // its lease passes at T0 + 30 s
  const [app, claim] = await Promise.all([session(), session()]);
  await claim.query(`set pgdrain.tick_wait_ms = '200ms'`);
  await app.query('begin');
  await app.query(`select jobs.publish('other.run', '{}', queue => 'capped')`);
  await app.query(`select jobs.publish('k.run', '{}', serial_key => 'K')`);
  const claimed = outcome(claim.query(`select jobs.claim_json(1, now => $1)->>'count' as n`, [minute(20)]));
  // The tick wait (736037) fails, the miss is recorded, then expiry waits for K (736038).
  let done = false;
  void claimed.then(() => (done = true));
  const waitsForK = async () => (await db.sql(`select 1 from pg_locks where pid = $1 and not granted and classid = 736038`, [claim.pid])).length > 0;
  while (!done && !await waitsForK()) await new Promise((r) => setTimeout(r, 5));
  expect(done).toBe(false);
  const changed = await outcome(app.query(`select jobs.schedule('sweep', '*/5 * * * *', 'sweep.run', queue => 'capped', now => $1) as r`, [minute(20)]));
  await app.query(Array.isArray(changed) ? 'commit' : 'rollback');
  // Unfixed: 'error 40P01 undefined: deadlock detected'.
  expect(changed).toEqual([{ r: 'drains' }]);
  expect(Array.isArray(await claimed)).toBe(true);
  // The miss was recorded, for the tick the app's jobs.schedule then published.
  expect(await db.sql(`select schedule, due, missed_at from jobs.tick_miss`))
    .toEqual([{ schedule: 'sweep', due: new Date(minute(10)), missed_at: new Date(minute(20)) }]);
});

it('jobs.maintain deletes the misses of ticks no longer due, at most max_rows a pass, and keeps the due one', async () => {
  await db.sql(`delete from jobs.tick_miss`);
  await db.sql(`select jobs.schedule('tidy', '*/10 * * * *', 'tidy.run', now => $1)`, [T0]);  // due at minute 10
  await db.sql(`insert into jobs.tick_miss values ('tidy', $1, $1), ('tidy', $2, $2), ('gone', $1, $1)`, [minute(10), T0]);
  const left = async () => db.sql(`select schedule, due from jobs.tick_miss order by schedule, due`);
  await db.sql(`select jobs.maintain(max_rows => 1, now => $1)`, [minute(5)]);
  expect(await left()).toHaveLength(2);
  await db.sql(`select jobs.maintain(now => $1)`, [minute(5)]);
  expect(await left()).toEqual([{ schedule: 'tidy', due: new Date(minute(10)) }]);
});

it("a claim whose miss another transaction is adding (or deleting) answers without waiting for it, that row left to it", async () => {
  await db.sql(`delete from jobs.tick_miss`);
  await db.sql(`select jobs.create_queue('chopped', max_size => 100)`);
  await db.sql(`select jobs.schedule('chop', '*/10 * * * *', 'chop.run', queue => 'chopped', now => $1)`, [T0]);  // due at minute 10
  const [other, app, claim] = await Promise.all([session(), session(), session()]);
  await claim.query(`set pgdrain.tick_wait_ms = '200ms'`);
  await other.query('begin');
  await other.query(`insert into jobs.tick_miss values ('chop', $1, $2)`, [minute(10), minute(15)]);
  await app.query('begin');
  await app.query(`select jobs.publish('other.run', '{}', queue => 'chopped')`);
  const claimed = outcome(claim.query(`select jobs.claim_json(1, now => $1)->>'count' as n`, [minute(20)]));
  // Done, or waiting for other's row (a transactionid lock) and still after a pause (the claim tries
  // its one insert for at most 1 ms): unfixed, it waited until other ended.
  let done = false;
  void claimed.then(() => (done = true));
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const waitsForRow = async () => !done && (await db.sql(`select 1 from pg_locks where pid = $1 and not granted and locktype = 'transactionid'`, [claim.pid])).length > 0;
  let waited = false;
  while (!done && !waited) {
    waited = await waitsForRow() && await sleep(200).then(waitsForRow);
    await sleep(5);
  }
  await other.query('commit');
  await app.query('commit');
  expect(waited).toBe(false);
  expect(Array.isArray(await claimed)).toBe(true);
  expect(await db.sql(`select next_run_at from jobs.recurring where name = 'chop'`)).toEqual([{ next_run_at: new Date(minute(10)) }]);
  expect(await db.sql(`select schedule, due, missed_at from jobs.tick_miss where schedule = 'chop'`))
    .toEqual([{ schedule: 'chop', due: new Date(minute(10)), missed_at: new Date(minute(15)) }]);
});
