// jobs.schedule changing a drain-run schedule publishes its tick that is due
// now (README: not dropped with the old expression). A drain's claim leaves
// a tick whose publish would wait on a lock due (sql/0023), but jobs.schedule
// goes on to the new expression right after: a tick left due there is
// dropped. Into a bounded queue, whose publishers' lock every transaction
// that published to it holds until it commits (jobs.admit), the tick was
// dropped (counted skipped) whenever any app transaction that published to
// that queue was open. On a real PostgreSQL.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { minute, T0 } from './support/schedule-clock.js';
import { until } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
});

describe('jobs.schedule changing a schedule whose tick is due, its bounded queue held by an open publish', () => {
  it('waits for that transaction and publishes the tick, not counted skipped', async () => {
    await sql(`select jobs.create_queue('mail', max_size => 1000)`);
    await sql(`select jobs.schedule('digest', '*/10 * * * *', 'mail.digest', queue => 'mail', runner => 'drains', now => $1)`, [T0]);
    const open = new pg.Client({ connectionString: db.url });
    const admin = new pg.Client({ connectionString: db.url });
    await Promise.all([open.connect(), admin.connect()]);
    try {
      await admin.query(`set lock_timeout = '30s'`);
      const [{ pid }] = (await admin.query<{ pid: number }>('select pg_backend_pid() as pid')).rows as [{ pid: number }];
      await open.query('begin');
      await open.query(`select jobs.publish('mail.send', '{}', queue => 'mail')`);
      let answered = false;
      const changed = admin.query(`select jobs.schedule('digest', '*/5 * * * *', 'mail.digest', queue => 'mail', runner => 'drains', now => $1)`,
                                  [new Date(Date.parse(minute(10)) + 30_000).toISOString()])
        .finally(() => (answered = true));
      // The change waits for the open publish (its queue's lock), as any publish to that queue does.
      await until(async () => answered
        || (await sql(`select count(*)::int as n from pg_locks where not granted and locktype = 'advisory' and pid = $1`, [pid]))[0]?.n === 1,
      'the change to answer or wait on the queue\'s lock');
      await open.query('commit');
      await changed;
      expect(await sql(`select next_run_at, last_run_at, skipped_ticks::int, last_error from jobs.recurring`))
        .toEqual([{ next_run_at: new Date(minute(15)), last_run_at: new Date(minute(10)), skipped_ticks: 0, last_error: null }]);
      expect(await sql(`select task, scheduled_at from jobs.job_queue where task = 'mail.digest'`))
        .toEqual([{ task: 'mail.digest', scheduled_at: new Date(minute(10)) }]);
    } finally {
      await open.end();
      await admin.end();
    }
  });
});
