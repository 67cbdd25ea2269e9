// jobs.schedule called again and a schedule's last_error (sql/0022): why its
// last tick failed stays until a tick publishes, whatever a call that keeps
// the expression changes (same arguments, another body); a stop (its next
// tick out of a tick's budget, sql/0023) is what calling it again ends, so
// that one is cleared and the schedule goes on. Before, every call cleared
// last_error: a failing schedule looked healthy after an idempotent re-call
// (a deploy's) while its ticks still failed. Ticks driven with `now`.
import { beforeEach, describe, expect, it } from 'vitest';
import { schedule } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
  await sql(`delete from jobs.queue where name = 'small'`);
  await sql(`select jobs.create_queue('small', max_size => 1)`);
});

const row = async () => (await sql<{ next_run_at: Date | null; last_error: string | null }>(
  `select next_run_at, last_error from jobs.recurring where name = 's'`))[0]!;
const full = /^queue: queue 'small' is full: .*\(SQLSTATE PD010\) at 2030-01-01 00:10:30\+00$/;

describe('jobs.schedule called again', () => {
  it("keeps a failing tick's error (same arguments, from SQL or TS, or another body) until a tick publishes", async () => {
    const [{ filler }] = await sql<{ filler: string }>(`select jobs.publish('app.job', queue => 'small')::text as filler`) as [{ filler: string }];
    const again = (body = '{"n":1}') => sql(`select jobs.schedule('s', '*/10 * * * *', 'tick.s', body => $1::jsonb, queue => 'small',
                                               runner => 'drains', now => '2030-01-01T00:10:40Z')`, [body]);
    await sql(`select jobs.schedule('s', '*/10 * * * *', 'tick.s', body => '{"n":1}', queue => 'small', runner => 'drains',
               now => '2030-01-01Z')`);
    await sql(`select jobs.publish_due_schedules('2030-01-01T00:10:30Z')`);
    const failed = await row();
    expect(failed).toEqual({ next_run_at: new Date('2030-01-01T00:11:00Z'), last_error: expect.stringMatching(full) });

    await again();
    // Before: last_error null, the tick still failing.
    expect(await row()).toEqual(failed);
    await schedule(db.driver, { name: 's', cron: '*/10 * * * *', task: 'tick.s', body: { n: 1 }, queue: 'small', runner: 'drains' });
    expect(await row()).toEqual(failed);
    await again('{"n":2}');
    expect(await row()).toEqual(failed);

    // Room in the queue: the tick's retry publishes, and that clears it.
    await sql(`select jobs.cancel($1)`, [filler]);
    expect(await sql(`select jobs.publish_due_schedules('2030-01-01T00:11:00Z') as n`)).toEqual([{ n: 1 }]);
    expect(await row()).toEqual({ next_run_at: new Date('2030-01-01T00:20:00Z'), last_error: null });
  });

  it("drops a pg_cron tick's error when the schedule moves to the drains, as README says of a new runner", async () => {
    // A pg_cron-run schedule (the row as jobs.schedule leaves it) whose tick
    // failed in jobs.run_schedule (what pg_cron calls): the queue is full.
    await sql(`select jobs.publish('app.job', queue => 'small')`);
    await sql(`select jobs.schedule('s', '*/10 * * * *', 'tick.s', queue => 'small', runner => 'drains', now => '2030-01-01Z')`);
    await sql(`update jobs.recurring set runner = 'pg_cron', next_run_at = null where name = 's'`);
    await sql(`select jobs.run_schedule('s')`);
    expect((await row()).last_error).toMatch(/queue 'small' is full/);
    // Before: kept, though the drains have run no tick yet (pg_cron's error shown as theirs).
    await sql(`select jobs.schedule('s', '*/10 * * * *', 'tick.s', queue => 'small', runner => 'drains',
               now => '2030-01-01T00:10:40Z')`);
    expect(await row()).toEqual({ next_run_at: new Date('2030-01-01T00:10:00Z'), last_error: null });
  });

  it('clears a stop (the documented way to restart a stopped schedule), which then goes on from now', async () => {
    // Odd minutes on a 2-minute step (never), then RDATEs: 09:00, and 2040, past a tick's budget from it.
    const odd = `FREQ=MINUTELY;INTERVAL=2;BYMINUTE=${Array.from({ length: 30 }, (_, i) => 2 * i + 1).join(',')}`;
    const rule = `${odd}\nRDATE:20300101T090000Z,20400101T000000Z`;
    await sql(`select jobs.schedule('s', $1, 'tick.s', now => '2030-01-01Z')`, [rule]);
    await sql(`select jobs.publish_due_schedules('2030-01-01T09:00:30Z')`);
    expect(await row()).toEqual({ next_run_at: null, last_error: expect.stringMatching(/^stopped until jobs\.schedule is called for it again: /) });
    // The same rule, once its next tick is within a budget of now.
    await sql(`select jobs.schedule('s', $1, 'tick.s', now => '2039-12-01Z')`, [rule]);
    expect(await row()).toEqual({ next_run_at: new Date('2040-01-01Z'), last_error: null });
    expect(await sql(`select name from jobs.stopped_schedules`)).toEqual([]);
  });
});
