// An overlap 'skip' tick whose previous job is still active publishes nothing
// (skipped_ticks counts it), yet it waited for its bounded queue's
// publishers' lock as a publishing tick does: a claim (jobs.tick_queues), for
// up to its bound, and left the tick due when that ran out (the queue's rows
// left alone); pg_cron's jobs.run_schedule and jobs.schedule for as long as
// the app transaction holding it stayed open. A tick that publishes nothing
// now takes no lock (jobs.skips_tick). On a real PostgreSQL.
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { lockSessions, outcome, waits } from './support/lock-sessions.js';
import { minute, T0 } from './support/schedule-clock.js';

const db = await testDb();
const session = lockSessions(db.url);

for (const [caller, runner, call, answer] of [
  ["a drain's claim", 'drains', `select jobs.claim_json(1, now => '${minute(20)}')->>'count' as r`, [{ r: '0' }]],
  ["pg_cron's tick", 'pg_cron', `select jobs.run_schedule('sweep') as r`, [{ r: null }]],
  ['jobs.schedule changing its expression', 'drains',
   `select jobs.schedule('sweep', '*/5 * * * *', 'sweep.run', queue => 'capped', overlap => 'skip', now => '${minute(20)}') as r`,
   [{ r: 'drains' }]],
] as const) {
  it(`${caller}: a skipped tick waits for no bounded queue's lock`, async () => {
    await db.sql('truncate jobs.job_queue, jobs.recurring');
    await db.sql(`select jobs.create_queue('capped', max_size => 100) where not exists (select from jobs.queue where name = 'capped')`);
    await db.sql(`select jobs.schedule('sweep', '*/10 * * * *', 'sweep.run', queue => 'capped', overlap => 'skip', runner => 'drains', now => $1)`, [T0]);
    // Its previous tick's job, still waiting.
    await db.sql(`select jobs.publish('sweep.run', '{}', queue => 'capped', dedupe_key => 'pgdrain:schedule:sweep', now => $1)`, [T0]);
    if (runner === 'pg_cron') await db.sql(`update jobs.recurring set runner = 'pg_cron', next_run_at = null`);  // as jobs.schedule leaves one
    const [app, ticker] = await Promise.all([session(), session()]);
    await ticker.query(`set pgdrain.tick_wait_ms = '1min'`);
    await app.query('begin');
    await app.query(`select jobs.publish('other.run', '{}', queue => 'capped')`);
    const ticked = outcome(ticker.query(call));
    const waited = await waits(db.sql, ticker, ticked);
    await app.query('rollback');
    expect([waited, await ticked]).toEqual([false, answer]);
    expect(await db.sql(`select skipped_ticks::int from jobs.recurring`)).toEqual([{ skipped_ticks: 1 }]);
  });
}
