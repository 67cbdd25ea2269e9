// Recurrence rules at the bounds of what they take (sql/0037_rrule.sql,
// 0038_rrule_next.sql): the largest INTERVAL the README names, and the work
// a drain's claim does for a rule whose RRULE part is sparse but whose
// RDATEs give it a next tick, or whose EXDATE lines name a zone each
// (counted in function calls, not timed); and a tick's budget
// (jobs.max_tick_steps(), sql/0019): a rule whose next tick costs more stops
// its schedule (its due tick published), never the claims.
import { beforeEach, describe, expect, it } from 'vitest';
import { schedule } from '../src/index.js';
import { callsDuring as callsDuringAt } from './support/calls-during.js';
import { sqlErrorOf, testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const callsDuring = <R>(statement: string, params: unknown[], funcname: string) =>
  callsDuringAt<R>(db.url, statement, params, funcname);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
});

describe('recurrence rule bounds', () => {
  it('takes INTERVAL=10000, the largest it names, and refuses 10001 naming that range', async () => {
    // No DTSTART: every 10000th minute since 1970-01-01 00:00 UTC.
    const after = Date.UTC(2030, 0, 1);
    const expected = new Date(Math.ceil(after / 60_000 / 10_000 + 1e-9) * 10_000 * 60_000).toISOString();
    expect((await sql<{ n: Date }>(`select jobs.cron_next('FREQ=MINUTELY;INTERVAL=10000', $1) as n`, [new Date(after).toISOString()]))[0]!
      .n.toISOString()).toBe(expected);
    expect(await schedule(db.driver, { name: 'rare', cron: 'FREQ=HOURLY;INTERVAL=10000', task: 'a.b' })).toBe('drains');
    const error = await sqlErrorOf(sql, `select jobs.schedule('rarer', 'FREQ=HOURLY;INTERVAL=10001', 'a.b')`);
    expect(error).toMatchObject({ code: 'PDC01', column: 'cron', message: expect.stringContaining("INTERVAL value '10001' must be a whole number from 1 to 10000") });
  });

  it('a claim publishing an RDATE tick looks no further than the next RDATE for the rule\'s own occurrences', async () => {
    // Odd minutes on a 2-minute step from 1970 00:00: the RRULE part never fires; the RDATEs do.
    const odd = Array.from({ length: 30 }, (_, i) => 2 * i + 1).join(',');
    await sql(`select jobs.schedule('dates', $1, 'a.b', now => '2029-12-31Z')`,
      [`FREQ=MINUTELY;INTERVAL=2;BYMINUTE=${odd}\nRDATE:20300101T000000Z,20300102T000000Z`]);
    const { calls } = await callsDuring(`select jobs.claim_json(10, 'nothing.matches.%', null, '2030-01-01T00:00:30Z')`, [],
                                        'rrule_slots');
    // A few days' chunks, not a century of them (36,500 days of 720 minutes each: seconds of a claim,
    // and a claim that fails every time under a statement_timeout shorter than that).
    expect(calls).toBeLessThan(10);
    expect(await sql(`select next_run_at, last_run_at from jobs.recurring`))
      .toEqual([{ next_run_at: new Date('2030-01-02T00:00:00Z'), last_run_at: new Date('2030-01-01T00:00:00Z') }]);
  });

  it('reads a zone that many EXDATE lines name once per tick, not once per line', async () => {
    // An export's EXDATE lines, each with its TZID; EST5EDT (a digit) is checked against pg_timezone_names.
    const days = ['20300102', '20300103', '20300104', '20300105', '20300106', '20300107', '20300108', '20300109'];
    const rule = ['DTSTART;TZID=America/New_York:20300101T090000', 'RRULE:FREQ=DAILY',
                  ...days.map((d) => `EXDATE;TZID=EST5EDT:${d}T090000`)].join('\n');
    const { row: next, calls } = await callsDuring<{ n: Date }>(`select jobs.cron_next($1, '2030-01-01T15:00Z') as n`, [rule],
                                                                'check_tz');
    expect(next!.n).toEqual(new Date('2030-01-10T14:00:00Z')); // the 2nd to the 9th excluded
    // cron_next's tz (null), DTSTART's zone, the EXDATEs' zone.
    expect(calls).toBeLessThanOrEqual(3);
  });

  it('a claim backfilling a rule in a zone with a digit (EST5EDT) does not check the zone again at every tick', async () => {
    await sql(`select jobs.schedule('m', E'DTSTART;TZID=EST5EDT:20300101T000000\\nRRULE:FREQ=MINUTELY', 'a.b',
                                    backfill => 6000, now => '2030-01-01T05:00:00Z')`);
    const { calls } = await callsDuring(`select jobs.claim_json(10, 'nothing.matches.%', null, '2030-01-01T05:20:00Z')`, [],
                                        'check_tz');
    // The schedule's tz is the rule's TZID, checked when it was scheduled: each check reads
    // pg_timezone_names (~90 ms), so a 100-tick backfill cost a claim 8 s.
    expect(calls).toBe(0);
    expect(await sql(`select count(*)::int as n from jobs.job_queue`)).toEqual([{ n: 20 }]);
  });
});

describe("a tick's budget (jobs.max_tick_steps())", () => {
  // Odd minutes on a 2-minute step: the rule never fires, and each day of a search builds 720 minutes.
  const odd = `FREQ=MINUTELY;INTERVAL=2;BYMINUTE=${Array.from({ length: 30 }, (_, i) => 2 * i + 1).join(',')}`;
  // The same with a COUNT from year 1: counting its occurrences walks every day since (seconds of them).
  const ancient = `DTSTART:00010101T000000Z\nRRULE:${odd};COUNT=1000`;
  // A search's chunk costs at least 9 steps (sql/0038): the most rrule_slots calls one budget pays for.
  const chunks = async () => Math.ceil((await sql<{ n: number }>(`select jobs.max_tick_steps() as n`))[0]!.n / 9);
  /** A schedule row as an older pgdrain (or a rule jobs.schedule took then) left it. */
  const stored = (name: string, cron: string, next: string, extra: { queue?: string; backfill?: number } = {}) =>
    sql(`insert into jobs.recurring (name, cron, task, runner, next_run_at, created_at, updated_at, queue, backfill)
         values ($1, $2, $3, 'drains', $4, $4, $4, $5, $6)`, [name, cron, `tick.${name}`, next, extra.queue ?? null, extra.backfill ?? null]);
  const row = async (name: string) =>
    (await sql<{ next_run_at: Date | null; last_error: string | null; skipped_ticks: number }>(
      `select next_run_at, last_error, skipped_ticks::int as skipped_ticks from jobs.recurring where name = $1`, [name]))[0];

  it('a stored rule counting COUNT from year 1 stops its schedule, says why, and the claims of the queue go on', async () => {
    await stored('ancient', ancient, '2030-01-01T00:00:00Z');
    await sql(`select jobs.publish('work.a', now => '2030-01-01Z')`);
    const claim = `select jobs.claim_json(10, 'work.%', null, $1)::jsonb -> 'count' as count`;
    const first = await callsDuring<{ count: number }>(claim, ['2030-01-01T00:00:30Z'], 'rrule_slots');
    expect(first.error).toBeUndefined(); // before: cancelled by the statement_timeout, every claim the same
    expect(first.row).toEqual({ count: 1 });
    expect(first.calls).toBeLessThanOrEqual(await chunks());
    expect(await row('ancient')).toEqual({
      next_run_at: null, skipped_ticks: 0,
      last_error: expect.stringMatching(/^stopped until jobs\.schedule is called for it again: cron: counting the occurrences of COUNT from DTSTART 0001-01-01 00:00:00 to 2030-01-01 00:00:30 \(give a later DTSTART, with the COUNT left\) took more than the 50000 steps a tick may take .* \(SQLSTATE PDC01\) at /),
    });
    // Its due tick, computed before, is published; the one after it is not computable.
    expect(await sql(`select scheduled_at from jobs.job_queue where task = 'tick.ancient'`))
      .toEqual([{ scheduled_at: new Date('2030-01-01T00:00:00Z') }]);
    // Stopped: the next claims do not compute it again.
    await sql(`select jobs.publish('work.b', now => '2030-01-01T00:00:40Z')`);
    const next = await callsDuring<{ count: number }>(claim, ['2030-01-01T00:01:00Z'], 'rrule_slots');
    expect([next.row, next.calls]).toEqual([{ count: 1 }, 0]);
  });

  it("a claim's ticks share one budget: of two schedules out of it each claim stops one; a good one due after them waits, then fires", async () => {
    await stored('odd1', odd, '2030-01-01T00:00:00Z');
    await stored('odd2', odd, '2030-01-01T00:00:10Z');
    await sql(`select jobs.schedule('fine', '* * * * *', 'tick.fine', runner => 'drains', now => '2030-01-01T00:00:30Z')`);
    const claim = async (at: string) => callsDuring(`select jobs.claim_json(10, 'nothing.%', null, $1)`, [at], 'rrule_slots');
    const first = await claim('2030-01-01T00:05:00Z');
    expect(first.error).toBeUndefined();
    // One budget for the claim, not one per schedule (before: a century of days for each).
    expect(first.calls).toBeLessThanOrEqual(await chunks());
    expect(await row('odd1')).toMatchObject({ next_run_at: null, skipped_ticks: 0,
      last_error: expect.stringMatching(/^stopped until .*: cron: finding the occurrence after 2030-01-01 00:05:00 took more than the 50000 steps/) });
    // Found the budget spent: still due, untouched, as is the schedule due after them.
    expect(await row('odd2')).toEqual({ next_run_at: new Date('2030-01-01T00:00:10Z'), last_error: null, skipped_ticks: 0 });
    expect(await row('fine')).toMatchObject({ next_run_at: new Date('2030-01-01T00:01:00Z'), last_error: null });
    expect((await claim('2030-01-01T00:05:30Z')).calls).toBeLessThanOrEqual(await chunks());
    expect(await row('odd2')).toMatchObject({ next_run_at: null, last_error: expect.stringMatching(/^stopped until /) });
    await claim('2030-01-01T00:06:00Z');
    expect(await row('fine')).toEqual({ next_run_at: new Date('2030-01-01T00:07:00Z'), last_error: null, skipped_ticks: 0 });
    // The two stopped schedules' due ticks, each published by the claim that stopped it.
    expect(await sql(`select task, scheduled_at from jobs.job_queue order by task`)).toEqual([
      { task: 'tick.fine', scheduled_at: new Date('2030-01-01T00:01:00Z') },
      { task: 'tick.odd1', scheduled_at: new Date('2030-01-01T00:00:00Z') },
      { task: 'tick.odd2', scheduled_at: new Date('2030-01-01T00:00:10Z') }]);
  });

  it('a backfill tick that cannot publish, whose next tick is out of budget, stops the schedule: the claim goes on', async () => {
    // Its queue is gone: the publish fails first (PD009), then its error handler computes the next tick.
    await stored('fill', ancient, '2030-01-01T00:00:00Z', { queue: 'gone', backfill: 3600 });
    await sql(`select jobs.publish('work.a', now => '2030-01-01Z')`);
    const { row: claimed, error, calls } = await callsDuring(`select jobs.claim_json(10, 'work.%', null, '2030-01-01T00:00:30Z')::jsonb -> 'count' as count`,
                                                            [], 'rrule_slots');
    expect(error).toBeUndefined(); // before: that computation was not guarded, nor bounded
    expect(claimed).toEqual({ count: 1 });
    expect(calls).toBeLessThanOrEqual(await chunks());
    expect(await row('fill')).toEqual({ next_run_at: null, skipped_ticks: 1,
      last_error: expect.stringMatching(/^stopped until .*: queue: no queue named 'gone'.*\(SQLSTATE PD009\) at .*; its next tick: cron: counting the occurrences of COUNT .*\(SQLSTATE PDC01\)$/) });
  });

  it('a stored cron expression that cannot be computed is retried without backfill, stopped with it once its due tick is published: the claim goes on', async () => {
    await stored('plain', '61 * * * *', '2030-01-01T00:00:00Z');
    await stored('filled', '61 * * * *', '2030-01-01T00:00:00Z', { backfill: 3600 });
    await sql(`select jobs.publish('work.a', now => '2030-01-01Z')`);
    for (const at of ['2030-01-01T00:00:30Z', '2030-01-01T00:01:00Z']) {
      // Before: the backfill's error handler computed its next tick again, unguarded: every claim failed.
      expect(await sql(`select jobs.claim_json(10, 'work.%', null, $1)::jsonb -> 'count' as count`, [at])).toEqual([{ count: at.includes('00:00') ? 1 : 0 }]);
    }
    // Not the budget's error: as before it, the next minute, recorded (test/tick-budget-stop.test.ts).
    expect(await row('plain')).toEqual({ next_run_at: new Date('2030-01-01T00:02:00Z'), skipped_ticks: 0,
      last_error: expect.stringMatching(/^cron: minute field '61' is out of range 0-59 .*\(SQLSTATE PDC01\) at 2030-01-01 00:01:00\+00$/) });
    // With backfill: its due tick published, then stopped (test/tick-budget-stop.test.ts).
    expect(await row('filled')).toEqual({ next_run_at: null, skipped_ticks: 0,
      last_error: expect.stringMatching(/^stopped until jobs\.schedule is called for it again: cron: minute field '61' is out of range 0-59 .*\(SQLSTATE PDC01\) at 2030-01-01 00:00:30\+00/) });
    expect(await sql(`select scheduled_at from jobs.job_queue where task like 'tick.%'`)).toEqual([{ scheduled_at: new Date('2030-01-01T00:00:00Z') }]);
  });

  it('jobs.schedule refuses a rule out of budget with PDC01 naming cron, and computes a rule once when given a tz', async () => {
    for (const [rule, message] of [
      [odd, /^cron: finding the occurrence after 2030-01-01 01:00:00 Europe\/Paris took more than the 50000 steps a tick may take/],
      // Monday 29 February, from year 1000: a COUNT that counts every year since (before: taken).
      ['DTSTART:10000101T000000Z\nRRULE:FREQ=YEARLY;COUNT=1000;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO',
       /^cron: counting the occurrences of COUNT from DTSTART 1000-01-01 00:00:00 to 2030-01-01 00:00:00 \(give a later DTSTART/],
    ] as const) {
      const tz = rule === odd ? 'Europe/Paris' : null;
      const { error, calls } = await callsDuring(`select jobs.schedule('s', $1, 'a.b', tz => $2, now => '2030-01-01Z')`, [rule, tz], 'rrule_slots');
      expect(error, rule).toMatchObject({ code: 'PDC01', column: 'cron', message: expect.stringMatching(message) });
      expect(calls, rule).toBeLessThanOrEqual(await chunks());
    }
    expect(await sql(`select count(*)::int as n from jobs.recurring`)).toEqual([{ n: 0 }]);
    // The same COUNT from a later DTSTART is taken; given a tz, each expression's next tick is computed once (before: twice).
    for (const [name, rule] of [['count', 'DTSTART:20000101T000000Z\nRRULE:FREQ=YEARLY;COUNT=1000;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO'],
                                ['nine', 'FREQ=DAILY;BYHOUR=9'], ['cron', '0 9 * * *']] as const) {
      const { row: r, calls } = await callsDuring<{ r: string }>(`select jobs.schedule($1, $2, 'a.b', tz => 'Europe/Paris', now => '2030-01-01Z') as r`,
                                                                 [name, rule], 'cron_tick');
      expect([r, calls], name).toEqual([{ r: 'drains' }, 1]);
    }
    expect((await row('count'))!.next_run_at).toEqual(new Date('2044-02-29T00:00:00Z')) // DTSTART's 00:00 UTC, on Paris's clock;
  });

  it('a schedule a tick stopped is named by schedule list and stats, and goes on from now when jobs.schedule is called for it again with the same rule', async () => {
    // The odd minutes' search ends a day past the next RDATE: cheap from 2039-12, past the budget from 2030-01.
    const rule = `${odd}\nRDATE:20300101T090000Z,20400101T000000Z`;
    const again = (now: string) => sql(`select jobs.schedule('dated', $1, 'tick.dated', now => $2)`, [rule, now]);
    await again('2030-01-01T00:00:00Z');
    expect((await row('dated'))!.next_run_at).toEqual(new Date('2030-01-01T09:00:00Z'));
    await sql(`select jobs.claim_json(10, 'nothing.%', null, '2030-01-01T09:00:30Z')`);
    expect(await row('dated')).toMatchObject({ next_run_at: null, last_error: expect.stringMatching(/^stopped until jobs\.schedule is called for it again: cron: finding/) });
    expect(await sql(`select scheduled_at from jobs.job_queue`)).toEqual([{ scheduled_at: new Date('2030-01-01T09:00:00Z') }]);
    await sql('truncate jobs.job_queue'); // stats below: no jobs, a stopped schedule
    const list = await runCli(db.url, 'schedule', 'list');
    // In the CLI's words: the command that restarts it (stored: "until jobs.schedule is called for it again").
    expect(list.stdout.split('\n')[2]).toMatch(/^dated\s.*\snone: stopped, see last error\s.*stopped until pgdrain schedule add is run for it again: cron: finding/);
    // pgdrain stats names it under its counts (and on stderr beside --json's rows), worded as the dashboard does.
    const summary = 'stopped schedules (1): dated; each until pgdrain schedule add is run for it again, its last error says why\n';
    expect((await runCli(db.url, 'stats')).stdout).toBe(`no jobs\n${summary}`);
    const json = await runCli(db.url, 'stats', '--json');
    expect([json.stdout, json.stderr]).toEqual(['[]\n', summary]);
    await again('2039-12-31T00:00:00Z');
    expect(await row('dated')).toEqual({ next_run_at: new Date('2040-01-01T00:00:00Z'), last_error: null, skipped_ticks: 0 });
    expect((await runCli(db.url, 'stats')).stdout).toBe('no jobs\n');
  });
});
