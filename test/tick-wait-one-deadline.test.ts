// A claim's wait for a bounded queue's tick takes two locks, the queue's
// writers' (736041, shared; held exclusive by jobs.delete_queue) and its
// publishers' (736037, held by a publish until it commits): each waited the
// whole bound (lock_timeout), twice the bound in all. They share one
// deadline: the second waits for what the first left. Here the bound is
// 4 s; the first lock is let go 3 s into the wait, the second 2.5 s later:
// past the shared bound (the tick left due), within a second bound of its
// own (unfixed: the claim took it and published). On a real PostgreSQL.
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';
import { doneOrBlocked, lockSessions, outcome } from './support/lock-sessions.js';
import { minute, T0 } from './support/schedule-clock.js';

const db = await testDb();
const session = lockSessions(db.url);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

it("a claim's two lock waits for a tick share one bound", async () => {
  await db.sql(`select jobs.create_queue('capped', max_size => 100)`);
  await db.sql(`select jobs.schedule('sweep', '*/10 * * * *', 'sweep.run', queue => 'capped', now => $1)`, [T0]);
  const [admin, app, claim] = await Promise.all([session(), session(), session()]);
  await claim.query(`set pgdrain.tick_wait_ms = '4s'`);
  await admin.query('begin');
  await admin.query(`select pg_advisory_xact_lock(736041, hashtext('capped'))`);  // as jobs.delete_queue holds it
  await app.query('begin');
  await app.query(`select pg_advisory_xact_lock(736037, hashtext('capped'))`);  // as a publish to capped holds it
  const claimed = outcome(claim.query(`select jobs.claim_json(1, now => $1)->>'count' as n`, [minute(10)]));
  let done = false;
  void claimed.then(() => (done = true));
  await doneOrBlocked(db.sql, claim, claimed);
  await sleep(3000);
  await admin.query('commit');
  // The case: the claim took the writers' lock and now waits for the publishers'. A loaded machine's 3 s that ran
  // past the 4 s bound ended the claim at the first lock, and the checks below passed without a second wait.
  await until(async () => done || (await db.sql(`select 1 from pg_locks where pid = $1 and not granted
                                                   and locktype = 'advisory' and classid = 736037`, [claim.pid])).length > 0,
              "the claim to wait for the publishers' lock");
  expect(done, "the claim waits for the publishers' lock, not given up at the writers'").toBe(false);
  await sleep(2500);
  await app.query('commit');
  expect(await claimed).toEqual([{ n: '0' }]);
  // Left due (unfixed: published, next_run_at minute 20), the miss recorded.
  expect(await db.sql(`select next_run_at from jobs.recurring`)).toEqual([{ next_run_at: new Date(minute(10)) }]);
  expect(await db.sql(`select schedule, due, missed_at from jobs.tick_miss`))
    .toEqual([{ schedule: 'sweep', due: new Date(minute(10)), missed_at: new Date(minute(10)) }]);
});
