// A tick's budget (sql/0019) and a backfill's window (sql/0023): the search
// for the first tick of the window (a schedule due from before it) takes
// steps of the claim's budget like any other; and a backfill whose publish
// fails with the budget spent in part is left due for the next claim, which
// publishes it once, as its first schedule, or moves it on.
// The rules: no minute ever fires (odd minutes on a 2-minute step), so each
// search costs about 20 steps a day until the next RDATE; `steps` measures it.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { NOW, rule, scheduleRow, steps as stepsOf, tickTimes, YEAR } from './support/tick-steps.js';

const db = await testDb();
const sql = db.sql;

const steps = (cron: string, after: string) => stepsOf(db.url, cron, after);

const row = (name: string) => scheduleRow(sql, name);
const ticks = (task: string) => tickTimes(sql, task);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
  await sql(`select jobs.create_queue('small', max_size => 1)`);
});

describe("a backfill's window-start search and the claim's budget", () => {
  // a: due since 2029-12-01, before its window; the window's first tick is
  // 2030-12-31, about 365 days of search (~7,300 steps) from the window's start.
  const a = rule('20291201T000000Z', '20301231T000000Z', '20310102T000000Z');
  // b: due at 2031-01-01; its next tick 2,300 days on (~46,000 steps): more
  // than a budget less a's window search, less than a whole one.
  const b = rule('20310101T000000Z', '20370420T000000Z');

  it('takes steps of the claim even when its tick then waits on a lock: the schedule after it gets what the search left', async () => {
    const window = await steps(a, new Date(Date.parse(NOW) - YEAR * 1000 - 1).toISOString());
    const next = await steps(b, NOW);
    expect(50000 - window).toBeLessThan(next); // the premise: b fits a whole budget, not the rest of it
    expect(next).toBeLessThan(50000);
    await sql(`select jobs.schedule('a', $1, 'tick.a', backfill => ${YEAR}, serial_key => 'k', now => '2029-11-30Z')`, [a]);
    await sql(`select jobs.schedule('b', $1, 'tick.b', now => '2030-12-31T12:00Z')`, [b]);
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query('begin');
      await holder.query(`select jobs.publish('app.job', serial_key => 'k')`);
      expect(await sql(`select jobs.publish_due_schedules($1) as n`, [NOW])).toEqual([{ n: 0 }]);
      // a: still due (its key held), nothing recorded.
      expect(await row('a')).toEqual({ next_run_at: new Date('2029-12-01T00:00:00Z'), last_run_at: null, last_error: null, skipped_ticks: 0 });
      // b: its search ran out of what a's window search left: still due, not
      // stopped. Without a's steps kept (its tick's rollback gave them
      // back), b had a whole budget and published.
      expect(await row('b')).toEqual({ next_run_at: new Date('2031-01-01T00:00:00Z'), last_run_at: null, last_error: null, skipped_ticks: 0 });
      expect(await ticks('tick.b')).toEqual([]);
      await holder.query('commit');
    } finally {
      await holder.end();
    }
    // a, its key free: the window's tick (the one before it dropped, counted); b waits one more claim for a whole budget.
    await sql(`select jobs.publish_due_schedules('2031-01-01T00:00:31Z')`);
    expect(await ticks('tick.a')).toEqual(['2030-12-31T00:00:00.000Z']);
    expect(await row('a')).toMatchObject({ next_run_at: new Date('2031-01-02T00:00:00Z'), skipped_ticks: 1, last_error: null });
    await sql(`select jobs.publish_due_schedules('2031-01-01T00:00:32Z')`);
    expect(await ticks('tick.b')).toEqual(['2031-01-01T00:00:00.000Z']);
    expect(await row('b')).toMatchObject({ next_run_at: new Date('2037-04-20T00:00:00Z'), last_error: null });
  });
});

describe('a backfill whose publish fails with the budget spent in part', () => {
  // x: due first; its next tick 1,500 days on (~30,000 steps).
  const x = rule('20301231T000000Z', '20350209T000000Z');
  // y: backfill, due after x, in its window; its next tick some 1,500 days
  // on too: the search after its failed publish cannot fit what x left.
  const y = rule('20301231T120000Z', '20350209T000000Z');

  /** x, y and z (minutely) due, y's queue full; one claim: x publishes, y and z are left due. Returns the job filling y's queue. */
  async function firstClaim(): Promise<string> {
    expect(await steps(x, NOW) + await steps(y, NOW)).toBeGreaterThan(50000); // the premise
    await sql(`select jobs.schedule('x', $1, 'tick.x', now => '2030-12-30Z')`, [x]);
    await sql(`select jobs.schedule('y', $1, 'tick.y', backfill => 86400, queue => 'small', now => '2030-12-31T06:00Z')`, [y]);
    await sql(`select jobs.schedule('z', '* * * * *', 'tick.z', runner => 'drains', now => '2030-12-31T23:59:30Z')`);
    const filler = (await sql<{ id: string }>(`select jobs.publish('app.job', queue => 'small')::text as id`))[0]!.id;
    expect(await sql(`select jobs.publish_due_schedules($1) as n`, [NOW])).toEqual([{ n: 1 }]);
    expect(await ticks('tick.x')).toEqual(['2030-12-31T00:00:00.000Z']);
    expect(await row('y')).toEqual({ next_run_at: new Date('2030-12-31T12:00:00Z'), last_run_at: null, last_error: null, skipped_ticks: 0 });
    // The schedules due after it wait too (the budget is spent).
    expect(await row('z')).toMatchObject({ next_run_at: new Date('2031-01-01T00:00:00Z'), last_run_at: null });
    return filler;
  }

  it('is left due, nothing published nor counted, and the next claim, its first, publishes its tick once', async () => {
    const filler = await firstClaim();
    // x has moved past it: y is the first of the next claim (not starved), its queue has room: one job for its tick.
    await sql(`select jobs.cancel($1)`, [filler]);
    expect(await sql(`select jobs.publish_due_schedules('2031-01-01T00:00:31Z') as n`)).toEqual([{ n: 2 }]);
    expect(await ticks('tick.y')).toEqual(['2030-12-31T12:00:00.000Z']);
    expect(await row('y')).toEqual({ next_run_at: new Date('2035-02-09T00:00:00Z'), last_run_at: new Date('2030-12-31T12:00:00Z'),
                                     last_error: null, skipped_ticks: 0 });
    expect(await ticks('tick.z')).toEqual(['2031-01-01T00:00:00.000Z']);
    expect(await ticks('tick.x')).toHaveLength(1);
  });

  it('its queue still full at the next claim, its first: moved on to its next tick with a whole budget, the tick counted, not stopped', async () => {
    await firstClaim();
    expect(await sql(`select jobs.publish_due_schedules('2031-01-01T00:00:31Z') as n`)).toEqual([{ n: 1 }]);
    expect(await row('y')).toEqual({ next_run_at: new Date('2035-02-09T00:00:00Z'), last_run_at: null, skipped_ticks: 1,
                                     last_error: expect.stringMatching(/^queue: queue 'small' is full: .*\(SQLSTATE PD010\) at 2031-01-01 00:00:31\+00$/) });
    expect(await ticks('tick.y')).toEqual([]);
    expect(await ticks('tick.z')).toEqual(['2031-01-01T00:00:00.000Z']);
  });
});
