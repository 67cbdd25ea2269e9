// A tick's budget (sql/0019) and a backfill whose publish fails (sql/0023):
// its own searches in the claim (its window's first tick, the ticks before
// the one that failed) spend part of the budget, and the search for its
// next tick then runs out of what is left. That is no proof the rule needs
// more than a budget: the schedule is not stopped, nor is that error
// recorded; it is left due at the tick that failed (those before it dropped,
// counted as one skipped run), so the next claim, which it heads, fails that
// tick first and searches with a whole budget, which decides. Only a search
// out of a whole budget stops it. Before: each claim spent its searches
// again and left it due as it was, naming the budget as its next tick's
// error, and the schedules due after it waited for as long as it failed.
// The rules never fire but on their RDATEs (odd minutes on a 2-minute step),
// about 20 steps a day of search; `steps` measures each premise.
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { NOW, rule, scheduleRow, steps as stepsOf, tickTimes, YEAR } from './support/tick-steps.js';

const db = await testDb();
const sql = db.sql;

const steps = (cron: string, after: string) => stepsOf(db.url, cron, after);

const row = (name: string) => scheduleRow(sql, name);
const ticks = (task: string) => tickTimes(sql, task);
const full = (at: string) => new RegExp(`^queue: queue 'small' is full: .*\\(SQLSTATE PD010\\) at ${at.replace('T', ' ').replace('Z', '\\+00')}$`);
const fill = async () => (await sql<{ id: string }>(`select jobs.publish('app.job', queue => 'small')::text as id`))[0]!.id;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
  await sql(`delete from jobs.queue where name = 'small'`);
  await sql(`select jobs.create_queue('small', max_size => 1)`);
});

describe("a backfill's own searches, then its publish fails", () => {
  // Due since 2029-12-01, before its window: the window's first tick,
  // 2030-12-31, is some 365 days (~7,300 steps) of search from its start.
  const windowed = (after: string) => rule('20291201T000000Z', '20301231T000000Z', after);
  // From now, the tick after 2037-04-20 (~46,000 steps): more than a budget
  // less the window's search, less than a whole one; 2040: more than a whole one.
  const fits = windowed('20370420T000000Z');
  const past = windowed('20400101T000000Z');

  async function firstClaim(cron: string): Promise<void> {
    const window = await steps(cron, new Date(Date.parse(NOW) - YEAR * 1000 - 1).toISOString());
    expect(50000 - window).toBeLessThan(await steps(cron, NOW)); // the premise: the rest of the budget does not pay for it
    await sql(`select jobs.schedule('a', $1, 'tick.a', backfill => ${YEAR}, queue => 'small', now => '2029-11-30Z')`, [cron]);
    await sql(`select jobs.schedule('z', '* * * * *', 'tick.z', runner => 'drains', now => '2030-12-31T23:59:30Z')`);
    expect(await sql(`select jobs.publish_due_schedules($1) as n`, [NOW])).toEqual([{ n: 0 }]);
    // Not stopped, the budget not named: due at the window's first tick, the run before the window dropped.
    // Before: due at 2029-12-01 as it was, last_error '…; its next tick: cron: … took more than the 50000 steps …'.
    expect(await row('a')).toEqual({ next_run_at: new Date('2030-12-31T00:00:00Z'), last_run_at: null, skipped_ticks: 1,
                                     last_error: expect.stringMatching(full(NOW)) });
    // The schedule due after it waits (the budget is spent).
    expect(await row('z')).toMatchObject({ next_run_at: new Date('2031-01-01T00:00:00Z') });
  }

  it('its queue still full, the next claim searches with a whole budget: moved on to its next tick, and the schedule after it fires', async () => {
    await fill();
    await firstClaim(fits);
    expect(await steps(fits, NOW)).toBeLessThan(50000); // the premise: a whole budget pays for it
    expect(await sql(`select jobs.publish_due_schedules('2031-01-01T00:00:31Z') as n`)).toEqual([{ n: 1 }]);
    // Before: left due at 2029-12-01 again, and z waited again, at every claim while the queue was full.
    expect(await row('a')).toEqual({ next_run_at: new Date('2037-04-20T00:00:00Z'), last_run_at: null, skipped_ticks: 2,
                                     last_error: expect.stringMatching(full('2031-01-01T00:00:31Z')) });
    expect(await ticks('tick.a')).toEqual([]);
    expect(await ticks('tick.z')).toEqual(['2031-01-01T00:00:00.000Z']);
  });

  it('its queue with room at the next claim: the window\'s tick is published once', async () => {
    const filler = await fill();
    await firstClaim(fits);
    await sql(`select jobs.cancel($1)`, [filler]);
    expect(await sql(`select jobs.publish_due_schedules('2031-01-01T00:00:31Z') as n`)).toEqual([{ n: 2 }]);
    expect(await ticks('tick.a')).toEqual(['2030-12-31T00:00:00.000Z']);
    expect(await row('a')).toEqual({ next_run_at: new Date('2037-04-20T00:00:00Z'), last_run_at: new Date('2030-12-31T00:00:00Z'),
                                     skipped_ticks: 1, last_error: null });
  });

  it('a next tick out of a whole budget still stops it, at the claim that searched with a whole one', async () => {
    await fill();
    await firstClaim(past);
    expect(await steps(past, NOW)).toBe(50000); // the premise: out of a whole budget
    await sql(`select jobs.publish_due_schedules('2031-01-01T00:00:31Z')`);
    // Before: never stopped, left due at 2029-12-01 at every claim.
    expect(await row('a')).toEqual({ next_run_at: null, last_run_at: null, skipped_ticks: 2,
      last_error: expect.stringMatching(/^stopped until jobs\.schedule is called for it again: queue: queue 'small' is full: .*; its next tick: cron: finding the occurrence after 2031-01-01 00:00:31 took more than the 50000 steps .*\(SQLSTATE PDC01\)$/) });
    expect(await sql(`select name from jobs.stopped_schedules`)).toEqual([{ name: 'a' }]);
  });
});

describe('a backfill whose first tick publishes and whose second fails', () => {
  // In its window: 2030-01-05, then 2030-12-31 (~7,200 steps of search);
  // from now, 2037-04-20 (~46,000): more than what those left.
  const cron = rule('20300105T000000Z', '20301231T000000Z', '20370420T000000Z');

  it('is left due at the tick that failed, and the next claim publishes it and searches with a whole budget', async () => {
    expect(50000 - await steps(cron, '2030-01-05T00:00:00Z')).toBeLessThan(await steps(cron, NOW)); // the premise
    await sql(`select jobs.schedule('a', $1, 'tick.a', backfill => ${YEAR}, queue => 'small', now => '2030-01-01Z')`, [cron]);
    // The queue takes one job: the first tick fits, the second does not; both undone together.
    expect(await sql(`select jobs.publish_due_schedules($1) as n`, [NOW])).toEqual([{ n: 0 }]);
    expect(await ticks('tick.a')).toEqual([]);
    // Before: due at 2030-01-05 as it was, naming the budget, and each claim did the same again.
    expect(await row('a')).toEqual({ next_run_at: new Date('2030-12-31T00:00:00Z'), last_run_at: null, skipped_ticks: 1,
                                     last_error: expect.stringMatching(full(NOW)) });
    expect(await sql(`select jobs.publish_due_schedules('2031-01-01T00:00:31Z') as n`)).toEqual([{ n: 1 }]);
    expect(await ticks('tick.a')).toEqual(['2030-12-31T00:00:00.000Z']);
    expect(await row('a')).toEqual({ next_run_at: new Date('2037-04-20T00:00:00Z'), last_run_at: new Date('2030-12-31T00:00:00Z'),
                                     skipped_ticks: 1, last_error: null });
  });
});
