// A tick's budget (jobs.max_tick_steps(), sql/0019) and backfill
// (sql/0023): each tick of a COUNT rule counts its occurrences from DTSTART,
// so a backfill of many missed ticks can cost more than one budget while
// each tick alone costs little. Such a schedule is not stopped: a claim
// publishes the ticks its budget pays for, and the next claims go on from
// the first tick not published; once it has published one, at most about
// half a budget a claim, so the schedules due after it fire in that claim.
import { beforeEach, describe, expect, it } from 'vitest';
import { callsDuring } from './support/calls-during.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
});

describe("a tick's budget with backfill", () => {
  it('a backfill of many cheap ticks that together cost more than a budget is published over several claims, not stopped', async () => {
    // Daily, 1000 times from 2028: each tick counts some 30 months of days
    // (about 1,200 steps), so the 62 ticks missed from July to September
    // cost more than one budget of 50,000.
    const rule = 'DTSTART:20280101T090000Z\nRRULE:FREQ=DAILY;COUNT=1000';
    await sql(`select jobs.schedule('daily', $1, 'tick.daily', backfill => 31622400, now => '2030-07-01Z')`, [rule]);
    await sql(`select jobs.schedule('minutely', '* * * * *', 'tick.minutely', runner => 'drains', now => '2030-08-31T23:58:30Z')`);
    const row = async (name: string) =>
      (await sql<{ next_run_at: Date | null; last_error: string | null; skipped_ticks: number }>(
        `select next_run_at, last_error, skipped_ticks::int as skipped_ticks from jobs.recurring where name = $1`, [name]))[0]!;
    let claims = 0;
    for (let s = 0; s < 10 && (await row('daily')).next_run_at! < new Date('2030-09-01T00:00:00Z'); s++) {
      await sql(`select jobs.claim_json(10, 'nothing.%', null, $1)`, [new Date(Date.UTC(2030, 8, 1, 0, 0, s)).toISOString()]);
      claims++;
      // Never stopped: next_run_at is the first tick not published yet.
      expect(await row('daily')).toMatchObject({ last_error: null, skipped_ticks: 0 });
      // Its last job is the last tick published (not one whose publish was undone).
      expect(await sql(`select count(*)::int as n from jobs.recurring r join jobs.job_queue q
                        on q.job_id = r.last_job_id and q.scheduled_at = r.last_run_at and q.task = 'tick.daily'
                        where r.name = 'daily' and r.next_run_at > r.last_run_at`)).toEqual([{ n: 1 }]);
    }
    expect(claims).toBeGreaterThan(1); // the premise: more than one budget's worth
    expect(await row('daily')).toEqual({ next_run_at: new Date('2030-09-01T09:00:00Z'), last_error: null, skipped_ticks: 0 });
    const ticks = await sql<{ at: Date }>(`select scheduled_at as at from jobs.job_queue where task = 'tick.daily' order by scheduled_at`);
    expect(ticks.map((t) => t.at.toISOString())).toEqual(
      Array.from({ length: 62 }, (_, i) => new Date(Date.UTC(2030, 6, 1 + i, 9)).toISOString()));
    // The schedule due beside it fired too (its one job for the minutes it missed).
    expect(await sql(`select count(*)::int as n from jobs.job_queue where task = 'tick.minutely'`)).toEqual([{ n: 1 }]);
    expect(await row('minutely')).toMatchObject({ last_error: null });
  });
  it('a catching-up backfill takes about half a claim\'s budget once it has published a tick: a minutely schedule due after it fires in the first claim', async () => {
    // As above: each of the daily rule's 62 missed ticks costs about 1,200 steps, more than a budget in all.
    const rule = 'DTSTART:20280101T090000Z\nRRULE:FREQ=DAILY;COUNT=1000';
    await sql(`select jobs.schedule('daily', $1, 'tick.daily', backfill => 31622400, now => '2030-07-01Z')`, [rule]);
    await sql(`select jobs.schedule('minutely', '* * * * *', 'tick.minutely', runner => 'drains', now => '2030-08-31T23:58:30Z')`);
    const published = async (task: string) =>
      (await sql<{ n: number }>(`select count(*)::int as n from jobs.job_queue where task = $1`, [task]))[0]!.n;
    const first = await callsDuring(db.url, `select jobs.claim_json(10, 'nothing.%', null, '2030-09-01T00:00:00Z')`, [], 'rrule_slots');
    expect(first.error).toBeUndefined();
    // The minutely schedule fired in the first claim (before: the backfill took the whole budget, and it waited).
    expect(await published('tick.minutely')).toBe(1);
    const daily = await published('tick.daily');
    // About half a budget's ticks (~21 of ~41 a whole one pays for), then it goes on from the next at the next claim.
    expect(daily).toBeGreaterThan(0);
    expect(daily).toBeLessThanOrEqual(31);
    expect(await sql(`select next_run_at from jobs.recurring where name = 'daily'`))
      .toEqual([{ next_run_at: new Date(Date.UTC(2030, 6, 1 + daily, 9)) }]);
    await sql(`select jobs.claim_json(10, 'nothing.%', null, '2030-09-01T00:00:01Z')`);
    expect(await published('tick.daily')).toBeGreaterThan(daily);
  });
});
