// A drain's claim publishing a schedule's serial-key tick takes the key's
// lock without waiting (README "Serial key" under schedules): while another
// transaction holds the key (here an app's publish of a job of the key, not
// yet committed) the tick stays due, and nothing records it: last_error
// stays null, next_run_at in the past shows it. Known and carried. What
// must hold: the tick is not lost; the first claim after the holder commits
// publishes it, and its job runs after the holder's job (one at a time).
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { minute, T0 } from './support/schedule-clock.js';

const db = await testDb();
const sql = db.sql;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
});

describe("a serial-key tick due while another transaction holds the key", () => {
  it('stays due with nothing recorded, then the next claim publishes it behind the holder\'s job', async () => {
    await sql(`select jobs.schedule('acct', '*/10 * * * *', 'acct.sync', serial_key => 'account:1', now => $1)`, [T0]);
    const open = new pg.Client({ connectionString: db.url });
    await open.connect();
    try {
      await open.query('begin');
      const app = (await open.query(`select jobs.publish('app.job', serial_key => 'account:1', now => $1)::text as id`,
        [minute(9)])).rows[0].id as string;
      // The claim's ticks: none published, none failed; the schedule shows the tick only as a past next_run_at.
      expect(await sql(`select jobs.publish_due_schedules($1) as n`, [minute(10)])).toEqual([{ n: 0 }]);
      expect(await sql(`select next_run_at, last_run_at, last_error from jobs.recurring`))
        .toEqual([{ next_run_at: new Date(minute(10)), last_run_at: null, last_error: null }]);
      await open.query('commit');
      // Not lost: the next claim publishes it, and it waits behind the app's job of the key.
      expect(await sql(`select jobs.publish_due_schedules($1) as n`, [minute(11)])).toEqual([{ n: 1 }]);
      expect(await sql(`select task, serial_wait from jobs.job_queue order by job_id`))
        .toEqual([{ task: 'app.job', serial_wait: false }, { task: 'acct.sync', serial_wait: true }]);
      expect(await sql(`select job_id::text as id from jobs.claim(10, now => $1)`, [minute(11)])).toEqual([{ id: app }]);
    } finally {
      await open.end();
    }
  });
});
