// pg_cron's tick (jobs.run_schedule) and jobs.schedule publishing a due tick
// take the bounded queue's publishers' lock before the schedule's row (so an
// app transaction that published to the queue, then changes or removes the
// schedule, is no deadlock). They read the queue before locking the row: a
// schedule moved to another queue meanwhile had them lock the old queue, then
// publish into the new one waiting for its lock with the row held, and the app
// that published there and then removed the schedule closed a cycle (40P01).
// Now the queue is read again with the row locked, and the row let go and
// locked again after the right queue's lock (jobs.lock_schedule). pg_cron is
// called as it would call it (this database has none). On a real PostgreSQL.
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { blocked, blockedOn, lockSessions, outcome } from './support/lock-sessions.js';
import { minute, T0 } from './support/schedule-clock.js';

const db = await testDb();
const session = lockSessions(db.url);

for (const [caller, runner, call, answer] of [
  ["pg_cron's tick", 'pg_cron', `select jobs.run_schedule('sweep') as r`, `error PDC02 name: name: no schedule named 'sweep'`],
  ['jobs.schedule changing its expression', 'drains',
   `select jobs.schedule('sweep', '*/5 * * * *', 'sweep.run', queue => 'capped2', now => '${minute(20)}') as r`, [{ r: 'drains' }]],
] as const) {
  it(`${caller}, the schedule moved to another bounded queue as it waits for the row, and an app that published there then removes it: no deadlock`, async () => {
    await db.sql('truncate jobs.job_queue, jobs.recurring');
    await db.sql(`select jobs.create_queue(q, max_size => 100) from unnest(array['capped', 'capped2']) q
                  where not exists (select from jobs.queue where name = q)`);
    await db.sql(`select jobs.schedule('sweep', '*/10 * * * *', 'sweep.run', queue => 'capped', runner => 'drains', now => $1)`, [T0]);
    if (runner === 'pg_cron') await db.sql(`update jobs.recurring set runner = 'pg_cron', next_run_at = null`);  // as jobs.schedule leaves one
    const [app, mover, ticker] = await Promise.all([session(), session(), session()]);
    await ticker.query(`set deadlock_timeout = '30s'`);  // the app's check finds a cycle first
    await app.query('begin');
    await app.query(`select jobs.publish('sweep.run', '{"by":"app"}', queue => 'capped2')`);
    await mover.query('begin');
    await mover.query(`update jobs.recurring set queue = 'capped2' where name = 'sweep'`);  // as jobs.schedule moving it does
    const ticked = outcome(ticker.query(call));
    await blocked(db.sql, ticker);  // for the row, capped's locks taken
    await mover.query('commit');
    await blockedOn(db.sql, ticker, ['advisory']);  // for capped2's lock, which the app holds
    const removed = await outcome(app.query(`select jobs.unschedule('sweep') as gone`));
    await app.query(Array.isArray(removed) ? 'commit' : 'rollback');
    // Unfixed: the app's removal got 40P01 (the tick held the row, waiting for capped2).
    expect([removed, await ticked]).toEqual([[{ gone: true }], answer]);
  });
}
