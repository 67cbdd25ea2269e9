// jobs.run_schedule (what pg_cron runs at each tick, sql/0048) publishing
// into a bounded queue waits for the queue's publishers' lock. Taken with the
// schedule's row held, an app transaction that published to that queue and
// then changed (or removed) the schedule closed a cycle with it: 40P01 for
// one of them (the app's call, or pg_cron's tick, lost, last_error 40P01). It takes that lock
// before the row, as jobs.schedule and a claim's tick do
// (schedule-call-queue-lock). pg_cron is called as it would call it (this
// database has none). On a real PostgreSQL.
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { blocked, lockSessions, outcome } from './support/lock-sessions.js';

const db = await testDb();
const session = lockSessions(db.url);

// What pg_cron's tick answers once the app's change has committed: the schedule the drains' now (null:
// nothing published), or gone (as for any tick of a schedule removed meanwhile).
for (const [name, change, tick] of [
  ['jobs.schedule hands it to the drains', `select jobs.schedule('sweep', '*/5 * * * *', 'sweep.run', queue => 'capped', runner => 'drains')`, [{ id: null }]],
  ['jobs.unschedule', `select jobs.unschedule('sweep')`, `error PDC02 name: name: no schedule named 'sweep'`],
] as const) {
  it(`pg_cron's tick waiting for the queue, and an app that published there, then ${name}: no deadlock`, async () => {
    await db.sql('truncate jobs.job_queue, jobs.recurring');
    await db.sql(`select jobs.create_queue('capped', max_size => 100) where not exists (select from jobs.queue where name = 'capped')`);
    await db.sql(`select jobs.schedule('sweep', '* * * * *', 'sweep.run', queue => 'capped', runner => 'drains')`);
    // As jobs.schedule leaves a pg_cron-run schedule.
    await db.sql(`update jobs.recurring set runner = 'pg_cron', next_run_at = null`);
    const [app, cron] = await Promise.all([session(), session()]);
    // The app's check finds a cycle first (found by the tick's, the 40P01 is its publish's, which
    // run_schedule records as the tick's failure: the tick lost, the app's call done).
    await cron.query(`set deadlock_timeout = '30s'`);
    await app.query('begin');
    await app.query(`select jobs.publish('sweep.run', '{"by":"app"}', queue => 'capped')`);
    const ticked = outcome(cron.query(`select jobs.run_schedule('sweep') as id`));
    await blocked(db.sql, cron);
    const changed = await outcome(app.query(change));
    await app.query(Array.isArray(changed) ? 'commit' : 'rollback');
    expect([changed, await ticked]).toEqual([[expect.any(Object)], tick]);
    expect(await db.sql(`select count(*)::int as n from jobs.job_queue where body->>'by' is null`)).toEqual([{ n: 0 }]);
  });
}
