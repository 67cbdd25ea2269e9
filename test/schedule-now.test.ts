// The schedule functions' test clock, `now` (jobs.schedule, jobs.run_schedule,
// jobs.publish_due_schedules): a finite time or null (the clock). Before,
// infinity was taken: jobs.schedule failed with "never fires" naming cron,
// and publish_due_schedules moved every due schedule's next_run_at to
// infinity (a schedule that never fired again), recording "never fires".
import { beforeEach, describe, expect, it } from 'vitest';
import { sqlErrorOf, testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const sqlError = (text: string, params?: unknown[]) => sqlErrorOf(sql, text, params);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
  await sql(`select jobs.schedule('s', '* * * * *', 'tick.s', runner => 'drains', now => '2030-01-01Z')`);
});

describe('now at ±infinity', () => {
  for (const now of ['infinity', '-infinity']) {
    for (const call of [
      `select jobs.schedule('t', '* * * * *', 'tick.t', runner => 'drains', now => $1)`,
      `select jobs.run_schedule('s', $1)`,
      `select jobs.publish_due_schedules($1)`,
    ]) {
      it(`is refused naming now, nothing written: ${call.slice(7, call.indexOf('('))} (${now})`, async () => {
        const e = await sqlError(call, [now]);
        expect([e.code, e.column, e.message]).toEqual(['PD007', 'now', `now: must be a finite time or null, got ${now}`]);
        expect(await sql(`select name, next_run_at, last_error from jobs.recurring`))
          .toEqual([{ name: 's', next_run_at: new Date('2030-01-01T00:01:00Z'), last_error: null }]);
        expect(await sql(`select count(*)::int as n from jobs.job_queue`)).toEqual([{ n: 0 }]);
      });
    }
  }

  it('a finite now, or null, is taken', async () => {
    expect(await sql(`select jobs.publish_due_schedules('2030-01-01T00:01:30Z') as n`)).toEqual([{ n: 1 }]);
    expect(await sql(`select jobs.publish_due_schedules(null) as n`)).toEqual([{ n: expect.any(Number) }]);
  });
});
