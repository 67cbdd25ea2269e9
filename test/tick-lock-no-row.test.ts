// jobs.lock_schedule (sql/0040) takes a bounded queue's publishers' lock
// before a schedule's row when its tick publishes (jobs.tick_lock_queue). With
// no row (a new schedule, or one removed as pg_cron fired it) the record was
// all null, the test null, not false: 'default' bounded, the locked read
// "needed" it, the unlocked one did not, and the loop let the row go and
// started over for good (jobs.schedule of any new schedule, run_schedule of a
// removed one, spun until statement_timeout). A stopped schedule (next_run_at
// null) has no tick to publish, yet waited for its queue's lock. On a real
// PostgreSQL; statement_timeout only ends the spin (fails the test) rather
// than hang it.
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { lockSessions, outcome, waits } from './support/lock-sessions.js';
import { minute, T0 } from './support/schedule-clock.js';

const db = await testDb();
const session = lockSessions(db.url);

it('jobs.schedule changing a stopped schedule (no next_run_at) waits for no bounded queue lock', async () => {
  await db.sql('truncate jobs.job_queue, jobs.recurring');
  await db.sql(`select jobs.create_queue('capped', max_size => 100)`);
  await db.sql(`select jobs.schedule('sweep', '*/10 * * * *', 'sweep.run', queue => 'capped', runner => 'drains', now => $1)`, [T0]);
  await db.sql(`update jobs.recurring set next_run_at = null, last_error = 'stopped until jobs.schedule is called for it again: x'`);  // as a stop leaves it (sql/0023)
  const [app, caller] = await Promise.all([session(), session()]);
  await app.query('begin');
  await app.query(`select jobs.publish('other.run', '{}', queue => 'capped')`);
  const called = outcome(caller.query(`select jobs.schedule('sweep', '*/5 * * * *', 'sweep.run', queue => 'capped', now => $1) as r`, [minute(20)]));
  const waited = await waits(db.sql, caller, called);
  await app.query('rollback');
  expect([waited, await called]).toEqual([false, [{ r: 'drains' }]]);
});

it("with the default queue bounded, jobs.schedule creates a schedule and run_schedule of a removed one says PDC02", async () => {
  await db.sql(`select jobs.create_queue('default', max_size => 100)`);
  const s = await session();
  await s.query(`set statement_timeout = '20s'`);
  expect(await outcome(s.query(`select jobs.schedule('fresh', '*/10 * * * *', 'sweep.run', runner => 'drains', now => $1) as r`, [T0])))
    .toEqual([{ r: 'drains' }]);
  expect(await outcome(s.query(`select jobs.run_schedule('gone') as r`)))
    .toEqual(`error PDC02 name: name: no schedule named 'gone'`);
  await db.sql(`select jobs.create_queue('default', max_size => null)`);
});
