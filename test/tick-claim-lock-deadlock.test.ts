// A claim of a queue with max_running or group_concurrency takes the
// queue's claim lock (jobs.pick), held to its commit. A claim with a tick
// due published it first, the schedule's row locked, then waited for that
// lock: an app transaction that had claimed from the queue (holding the
// lock) and then changed the schedule (jobs.schedule waits for the row)
// closed a cycle, 40P01. The claim now publishes its ticks once it holds
// the lock (their publishes wait for no lock). Real locks, two sessions, on
// a real PostgreSQL.
import { beforeEach, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { blockedOn, lockSessions, outcome, type LockSession } from './support/lock-sessions.js';
import { minute, T0 } from './support/schedule-clock.js';

const db = await testDb();
const session = lockSessions(db.url);

beforeEach(async () => {
  await db.sql(`truncate jobs.job_queue, jobs.job, jobs.recurring, jobs.tick_miss, jobs.running_slot`);
});

for (const [kind, queue, options] of [['max_running', 'capped', 'max_running => 2'], ['group_concurrency', 'grouped', 'group_concurrency => 1']] as const) {
  it(`a claim of a ${kind} queue with a tick due: the app that claimed there, then changes the schedule, is no deadlock`, async () => {
    await db.sql(`select jobs.create_queue('${queue}', ${options})`);
    await db.sql(`select jobs.schedule('sweep', '*/10 * * * *', 'sweep.run', queue => $2, runner => 'drains', now => $1)`, [T0, queue]);
    const [app, drain] = await Promise.all([session(), session()]) as [LockSession, LockSession];
    await app.query('begin');
    await app.query(`select jobs.claim_json(1, queue => $2, now => $1)`, [minute(5), queue]);  // no tick due yet: the lock only
    const claimed = outcome(drain.query(`select jobs.claim_json(1, queue => $2, now => $1)->'jobs'->'task' as tasks`,
                                        [minute(20), queue]));
    await blockedOn(db.sql, drain, ['advisory']);
    const changed = await outcome(app.query(`select jobs.schedule('sweep', '*/5 * * * *', 'sweep.run', queue => $2,
                                             runner => 'drains', now => $1) as r`, [minute(20), queue]));
    await app.query(Array.isArray(changed) ? 'commit' : 'rollback');
    // Unfixed: changed 'error 40P01 undefined: deadlock detected'.
    expect(changed).toEqual([{ r: 'drains' }]);
    // The tick published once (by the app's jobs.schedule, as it changes the expression), the claim handing it out.
    expect(await claimed).toEqual([{ tasks: ['sweep.run'] }]);
    expect(await db.sql(`select count(*)::int as n from jobs.job_queue where task = 'sweep.run'`)).toEqual([{ n: 1 }]);
    expect(await db.sql(`select next_run_at from jobs.recurring`)).toEqual([{ next_run_at: new Date(minute(25)) }]);
  });
}
