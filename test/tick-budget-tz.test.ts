// A tick's budget (sql/0019) and time zones (sql/0020): the search for a
// schedule's next tick on a zone's clock probes the zone's offset a day
// apart up to the tick (jobs.tz_change), and those probes are steps of the
// budget as the cron search's days are. Before, they were free: '0 0 29 2
// */7' (a 29 February that is a Sunday, 28 years apart) in Europe/Paris
// after 2060 took 0.1 to 0.4 s in one tick, its cron searches' 33,000 steps
// charged and some 560,000 offset probes free, and a claim with several
// such schedules due spent several budgets. Steps are counted
// (jobs.tick_steps_left), never timed.
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { steps as stepsOf } from './support/tick-steps.js';

const db = await testDb();
const sql = db.sql;

const steps = (cron: string, after: string, tz: string | null) => stepsOf(db.url, cron, after, tz);

// 29 February on a Sunday: 2032, then 2060. Asia/Tokyo keeps one offset: its searches cross 28 years of days.
const RULE = '0 0 29 2 */7';
const DAYS = (Date.parse('2060-02-29Z') - Date.parse('2032-03-01Z')) / 86_400_000;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
});

describe("a search on a zone's clock", () => {
  it('takes a step per day of offsets probed, beyond the cron search\'s own', async () => {
    const utc = await steps(RULE, '2032-03-01Z', null);
    const tokyo = await steps(RULE, '2032-03-01Z', 'Asia/Tokyo');
    // Before: the same steps as in UTC (1,099), the 10,225 days probed free.
    expect(tokyo - utc).toBeGreaterThanOrEqual(DAYS);
    // Europe/Paris, after 2060: within a whole budget still (a rule jobs.schedule takes).
    expect(await steps(RULE, '2060-03-01Z', 'Europe/Paris')).toBeLessThan(50000);
  });

  it('searches the cron expression once across offset changes, not again from each of them', async () => {
    const days = (Date.parse('2088-02-28Z') - Date.parse('2060-03-01Z')) / 86_400_000;
    const utc = await steps(RULE, '2060-03-01Z', null);
    // Its cron search (as in UTC), a step per day of offsets probed, some 40 per change bisected (two a year).
    // Before: some 45,000, the cron search done again from each of the 56 changes.
    expect(await steps(RULE, '2060-03-01Z', 'Europe/Paris')).toBeLessThan(utc + days + 56 * 40);
    expect((await sql<{ r: Date }>(`select jobs.cron_next($1, '2060-03-01Z', 'Europe/Paris') as r`, [RULE]))[0]!.r)
      .toEqual(new Date('2088-02-28T23:00:00Z'));
  });

  it("one claim's searches stay within one budget: the schedule it cannot pay for stays due, and the next claim publishes it", async () => {
    const each = await steps(RULE, '2032-02-28T15:00:30Z', 'Asia/Tokyo');
    expect([4 * each < 50000, 5 * each > 50000]).toEqual([true, true]); // the premise: a budget pays for four searches, not five
    for (const name of ['a', 'b', 'c', 'd', 'e']) {
      await sql(`select jobs.schedule($1, $2, 'tick.tz', tz => 'Asia/Tokyo', now => '2032-02-01Z')`, [name, RULE]);
    }
    // Due at 2032-02-29 00:00 in Tokyo. Before: all five in one claim, five searches of some 11,000 steps.
    expect(await sql(`select jobs.publish_due_schedules('2032-02-28T15:00:30Z') as n`)).toEqual([{ n: 4 }]);
    expect(await sql(`select next_run_at from jobs.recurring order by next_run_at`)).toEqual([
      { next_run_at: new Date('2032-02-28T15:00:00Z') }, ...Array(4).fill({ next_run_at: new Date('2060-02-28T15:00:00Z') })]);
    expect(await sql(`select count(*)::int as n from jobs.recurring where last_error is not null`)).toEqual([{ n: 0 }]);
    expect(await sql(`select jobs.publish_due_schedules('2032-02-28T15:00:40Z') as n`)).toEqual([{ n: 1 }]);
    expect(await sql(`select count(*)::int as n from jobs.job_queue where task = 'tick.tz'`)).toEqual([{ n: 5 }]);
  });
});
