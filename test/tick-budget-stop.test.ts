// A schedule a tick's budget stops (sql/0023, jobs.tick_or_stop): its due
// tick, computed already, is a run like any other: the claim publishes it
// (or skips it, overlap 'skip') with the schedule's options, and only then
// stops the schedule, whose next tick cannot be computed within a budget.
// And the errors that are not the budget's: retried as before it existed,
// or, with backfill (where that failed every claim), stopped once its due
// tick is published (left due while that fails too).
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
});

// Odd minutes on a 2-minute step (never), and two RDATEs: its tick at 09:00
// is cheap to find from midnight, the one after it (2040) past the budget.
const odd = `FREQ=MINUTELY;INTERVAL=2;BYMINUTE=${Array.from({ length: 30 }, (_, i) => 2 * i + 1).join(',')}`;
const rule = `${odd}\nRDATE:20300101T090000Z,20400101T000000Z`;
const TICK = new Date('2030-01-01T09:00:00Z');

const claim = () => sql(`select jobs.claim_json(10, 'nothing.%', null, '2030-01-01T09:00:30Z')`);
const row = async () => (await sql<{ next_run_at: Date | null; last_run_at: Date | null; last_job_id: string | null;
                                     last_error: string | null; skipped_ticks: number }>(
  `select next_run_at, last_run_at, last_job_id::text, last_error, skipped_ticks::int as skipped_ticks from jobs.recurring`))[0]!;
const jobs = () => sql<{ job_id: string; scheduled_at: Date; serial_key: string | null; dedupe_key: string | null; tick: string }>(
  `select job_id::text, scheduled_at, serial_key, dedupe_key, attributes ->> 'tick' as tick
   from jobs.job_queue where task = 'tick.s' order by job_id`);
const stoppedError = /^stopped until jobs\.schedule is called for it again: cron: finding the occurrence after 2030-01-01 09:00:(00|30) took more than the 50000 steps .*\(SQLSTATE PDC01\) at 2030-01-01 09:00:30\+00$/;

describe('a schedule whose next tick is out of the budget', () => {
  for (const [what, options] of [
    ['plain', ''],
    ['with backfill', ', backfill => 3600'],
    ['with a serial key', `, serial_key => 'one-at-a-time'`],
  ] as const) {
    it(`publishes its due tick, then stops (${what})`, async () => {
      await sql(`select jobs.schedule('s', $1, 'tick.s', now => '2030-01-01Z'${options})`, [rule]);
      await claim();
      const published = await jobs();
      // Before: the due tick was dropped (counted as skipped), no job.
      expect(published).toEqual([{ job_id: expect.any(String), scheduled_at: TICK, dedupe_key: null, tick: '2030-01-01T09:00:00.000Z',
                                   serial_key: what === 'with a serial key' ? 'one-at-a-time' : null }]);
      expect(await row()).toEqual({ next_run_at: null, last_run_at: TICK, last_job_id: published[0]!.job_id,
                                    skipped_ticks: 0, last_error: expect.stringMatching(stoppedError) });
      expect(await sql(`select name, stopped_tick from jobs.stopped_schedules`)).toEqual([{ name: 's', stopped_tick: TICK }]);
    });
  }

  it('when jobs.schedule changes its expression as its tick is due: that tick is published, the stop ends with the old expression', async () => {
    await sql(`select jobs.schedule('s', $1, 'tick.s', now => '2030-01-01Z')`, [rule]);
    await sql(`select jobs.schedule('s', '*/5 * * * *', 'tick.s', now => '2030-01-01T09:00:30Z')`);
    expect((await jobs()).map((j) => j.scheduled_at)).toEqual([TICK]);
    // Before: the old expression's stop stayed as last_error, and its published tick counted as skipped.
    expect(await row()).toEqual({ next_run_at: new Date('2030-01-01T09:05:00Z'), last_run_at: TICK, last_job_id: expect.any(String),
                                  last_error: null, skipped_ticks: 0 });
  });

  it('with a dedupe key a job holds: its tick publishes nothing (keep), names the holder, and the schedule stops', async () => {
    const [{ id }] = await sql<{ id: string }>(`select jobs.publish('other.task', dedupe_key => 'k', now => '2030-01-01Z')::text as id`) as [{ id: string }];
    await sql(`select jobs.schedule('s', $1, 'tick.s', dedupe_key => 'k', now => '2030-01-01Z')`, [rule]);
    await claim();
    expect(await jobs()).toEqual([]);
    expect(await row()).toEqual({ next_run_at: null, last_run_at: TICK, last_job_id: id, skipped_ticks: 0,
                                  last_error: expect.stringMatching(stoppedError) });
  });

  it("with overlap 'skip' and a job of it active: its tick is skipped as any, and the schedule stops", async () => {
    await sql(`select jobs.schedule('s', $1, 'tick.s', overlap => 'skip', now => '2030-01-01Z')`, [rule]);
    await sql(`select jobs.publish('tick.s', dedupe_key => 'pgdrain:schedule:s', now => '2030-01-01Z')`);
    await claim();
    expect(await jobs()).toHaveLength(1); // the active one only
    expect(await row()).toEqual({ next_run_at: null, last_run_at: null, last_job_id: null, skipped_ticks: 1,
                                  last_error: expect.stringMatching(stoppedError) });
    expect(await sql(`select stopped_tick from jobs.stopped_schedules`)).toEqual([{ stopped_tick: TICK }]);
  });
});

describe('errors other than the budget', () => {
  /** A schedule row as an older pgdrain left it: an expression this one no longer parses. */
  const stored = (backfill: number | null) =>
    sql(`insert into jobs.recurring (name, cron, task, runner, next_run_at, created_at, updated_at, backfill)
         values ('s', '61 * * * *', 'tick.s', 'drains', '2030-01-01T09:00:00Z', '2030-01-01Z', '2030-01-01Z', $1)`, [backfill]);

  it('a stored expression that does not parse, without backfill: retried each minute with the error recorded, nothing published, not stopped', async () => {
    await stored(null);
    for (const at of ['2030-01-01T09:00:30Z', '2030-01-01T09:01:00Z']) {
      await sql(`select jobs.claim_json(10, 'nothing.%', null, $1)`, [at]);
      // Before: stopped (next_run_at null) at the first claim, as if out of the budget.
      expect(await row()).toEqual({ next_run_at: new Date(Date.parse(at) - Date.parse(at) % 60_000 + 60_000), last_run_at: null,
                                    last_job_id: null, skipped_ticks: 0,
                                    last_error: `cron: minute field '61' is out of range 0-59 (in '61 * * * *') (SQLSTATE PDC01) at ${at.replace('T', ' ').replace('Z', '+00')}` });
    }
    expect(await jobs()).toEqual([]);
    expect(await sql(`select * from jobs.stopped_schedules`)).toEqual([]);
  });

  it('the same with backfill: its due tick is published, then the schedule stopped (no next tick to go on from), the claim goes on', async () => {
    await stored(3600);
    await sql(`select jobs.claim_json(10, 'nothing.%', null, '2030-01-01T09:00:30Z')`);
    // Before: the tick was dropped with the claim's rollback of it: no job, skipped_ticks 1.
    const published = await jobs();
    expect(published).toEqual([{ job_id: expect.any(String), scheduled_at: TICK, serial_key: null, dedupe_key: null,
                                 tick: '2030-01-01T09:00:00.000Z' }]);
    expect(await row()).toEqual({ next_run_at: null, last_run_at: TICK, last_job_id: published[0]!.job_id, skipped_ticks: 0,
                                  last_error: "stopped until jobs.schedule is called for it again: cron: minute field '61' is out of range 0-59 (in '61 * * * *') (SQLSTATE PDC01) at 2030-01-01 09:00:30+00" });
    expect(await sql(`select name, stopped_tick from jobs.stopped_schedules`)).toEqual([{ name: 's', stopped_tick: TICK }]);
  });

  it('with backfill, its publish failing too (a full queue): its tick stays due with the errors recorded, and a claim once there is room publishes it', async () => {
    await sql(`select jobs.create_queue('small', max_size => 1)`);
    const [{ id }] = await sql<{ id: string }>(`select jobs.publish('app.job', queue => 'small')::text as id`) as [{ id: string }];
    await stored(3600);
    await sql(`update jobs.recurring set queue = 'small'`);
    for (const at of ['2030-01-01T09:00:30Z', '2030-01-01T09:00:40Z']) {
      await sql(`select jobs.claim_json(10, 'nothing.%', null, $1)`, [at]);
      // Before: stopped, the tick counted as skipped and lost.
      expect(await row()).toEqual({ next_run_at: TICK, last_run_at: null, last_job_id: null, skipped_ticks: 0,
                                    last_error: expect.stringMatching(new RegExp(`^queue: queue 'small' is full: .*\\(SQLSTATE PD010\\) at ${at.replace('T', ' ').replace('Z', '\\+00')}; its next tick: cron: minute field '61' .*\\(SQLSTATE PDC01\\)$`)) });
      expect(await sql(`select * from jobs.stopped_schedules`)).toEqual([]);
    }
    await sql(`select jobs.cancel($1)`, [id]);
    await sql(`select jobs.claim_json(10, 'nothing.%', null, '2030-01-01T09:01:00Z')`);
    expect((await jobs()).map((j) => j.scheduled_at)).toEqual([TICK]);
    expect(await row()).toMatchObject({ next_run_at: null, last_run_at: TICK, skipped_ticks: 0,
                                        last_error: expect.stringMatching(/^stopped until jobs\.schedule is called for it again: cron: minute field '61' /) });
  });
});
