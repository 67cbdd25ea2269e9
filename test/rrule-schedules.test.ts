// Schedules on RFC 5545 recurrence rules (sql/0037_rrule.sql,
// 0038_rrule_next.sql): fired by drains' claims, run out by COUNT and
// UNTIL, read on a time zone's wall clock with cron's DST rules, refused
// with a PDC01 naming cron and the part at fault. This file's database has
// no pg_cron (cron.test.ts covers a rule with pg_cron installed).
import { beforeEach, describe, expect, it } from 'vitest';
import { checkCron, isRrule, listSchedules, nextTicks, schedule, ValidationError } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const sqlError = (text: string, params?: unknown[]) => sqlErrorOf(sql, text, params);
const claim = (now: string) => sql(`select jobs.claim_json(10, 'nothing.matches.%', null, $1::timestamptz)`, [now]);
const ticks = async () => (await sql<{ scheduled_at: Date; attributes: { tick: string } }>(
  `select scheduled_at, attributes from jobs.job_queue order by job_id`)).map((r) => [r.scheduled_at.toISOString(), r.attributes.tick]);
const next = async (cron: string, after: string, tz: string | null = null) =>
  (await sql<{ n: Date | null }>(`select jobs.cron_next($1, $2, $3) as n`, [cron, after, tz]))[0]!.n?.toISOString() ?? null;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
});

describe('recurrence rule schedules', () => {
  // 2030-01-07 is a Monday.
  const weekly = 'DTSTART:20300107T093000\nRRULE:FREQ=WEEKLY;BYDAY=MO,WE;COUNT=3';

  it('drains fire each occurrence at its time; when COUNT runs out the schedule has no next tick, and says so', async () => {
    expect(await sql(`select jobs.schedule('standup', $1, 'team.standup', now => '2030-01-01Z') as r`, [weekly]))
      .toEqual([{ r: 'drains' }]);
    expect(await sql(`select cron, runner, tz, next_run_at from jobs.schedules`))
      .toEqual([{ cron: weekly, runner: 'drains', tz: 'UTC', next_run_at: new Date('2030-01-07T09:30:00Z') }]);
    await claim('2030-01-07T09:29:59Z');
    expect(await ticks()).toEqual([]);
    await claim('2030-01-07T09:30:30Z');
    await claim('2030-01-10T00:00:00Z');
    expect(await ticks()).toEqual([['2030-01-07T09:30:00.000Z', '2030-01-07T09:30:00.000Z'],
                                   ['2030-01-09T09:30:00.000Z', '2030-01-09T09:30:00.000Z']]);
    await claim('2030-01-20T00:00:00Z'); // the third and last: Monday the 14th
    await claim('2030-03-01T00:00:00Z');
    expect((await ticks()).map(([at]) => at)).toEqual(['2030-01-07T09:30:00.000Z', '2030-01-09T09:30:00.000Z', '2030-01-14T09:30:00.000Z']);
    expect(await sql(`select next_run_at, last_run_at from jobs.recurring`))
      .toEqual([{ next_run_at: null, last_run_at: new Date('2030-01-14T09:30:00Z') }]);
    expect(await listSchedules(db.driver)).toMatchObject([{ name: 'standup', cron: weekly, nextRunAt: null, runner: 'drains' }]);
    const list = await runCli(db.url, 'schedule', 'list');
    expect(list.stdout.split('\n')[2]).toMatch(/^standup\s+DTSTART:20300107T093000 RRULE:FREQ=WEEKLY;BYDAY=MO,WE;COUNT=3\s+UTC\s+team\.standup\s+drains\s+allow\s+none: the rule ended\s/);
    // The CLI adds a rule as --cron, and names --cron for a bad one.
    expect(await runCli(db.url, 'schedule', 'add', 'cli-rule', '--cron', 'FREQ=MONTHLY;BYMONTHDAY=-1;BYHOUR=18', '--task', 'books.close'))
      .toEqual({ code: 0, stdout: 'drains\n', stderr: '' });
    const bad = await runCli(db.url, 'schedule', 'add', 'cli-bad', '--cron', 'FREQ=MONTHLY;BYHOUR=25', '--task', 'books.close');
    expect([bad.code, bad.stderr]).toEqual([2, expect.stringContaining("--cron: BYHOUR value '25' must be a whole number from 0 to 23")]);
    expect(await sql(`select name from jobs.recurring order by name`)).toEqual([{ name: 'cli-rule' }, { name: 'standup' }]);
    await sql(`select jobs.unschedule('cli-rule')`);
    // Scheduled again as it was (an app's restart): accepted, still ended.
    expect(await sql(`select jobs.schedule('standup', $1, 'team.standup', now => '2030-03-01Z') as r`, [weekly])).toEqual([{ r: 'drains' }]);
    expect(await sql(`select next_run_at from jobs.recurring`)).toEqual([{ next_run_at: null }]);
    // Changed to a rule with nothing left: refused, the row as it was.
    const spent = await sqlError(`select jobs.schedule('standup', 'FREQ=DAILY;UNTIL=20300201T000000Z', 'team.standup', now => '2030-03-01Z')`);
    expect(spent).toMatchObject({ code: 'PDC01', column: 'cron', message: expect.stringContaining('has no occurrence after') });
    expect(await sql(`select cron from jobs.recurring`)).toEqual([{ cron: weekly }]);
    // Changed to one with occurrences left: it fires again.
    await sql(`select jobs.schedule('standup', 'FREQ=DAILY;BYHOUR=9', 'team.standup', now => '2030-03-01Z')`);
    expect(await sql(`select next_run_at from jobs.schedules`)).toEqual([{ next_run_at: new Date('2030-03-01T09:00:00Z') }]);
  });

  it('a bare rule in a time zone (TS schedule) fires at its wall-clock time across a DST change; DTSTART TZID is the tz', async () => {
    // 2026-03-27 is a Friday; Paris moves from UTC+1 to UTC+2 on Sunday 2026-03-29.
    expect(await schedule(db.driver, { name: 'office', cron: '  FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9;BYMINUTE=0 ', task: 'office.open',
                                       tz: 'Europe/Paris' })).toBe('drains');
    await sql(`update jobs.recurring set next_run_at = jobs.cron_next(cron, '2026-03-27 07:30Z', tz)`);
    for (const now of ['2026-03-27 08:00:30Z', '2026-03-30 06:00:30Z', '2026-03-30 07:00:30Z']) await claim(now);
    expect((await ticks()).map(([at]) => at)).toEqual(['2026-03-27T08:00:00.000Z', '2026-03-30T07:00:00.000Z']);
    expect(await listSchedules(db.driver)).toMatchObject([{ cron: 'FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9;BYMINUTE=0', tz: 'Europe/Paris',
                                                           nextRunAt: new Date('2026-03-31T07:00:00Z') }]);
    // A DTSTART with a TZID: that zone is the schedule's tz; another tz is refused.
    await sql(`select jobs.schedule('ny', E'DTSTART;TZID=America/New_York:20260105T090000\\nRRULE:FREQ=MONTHLY;BYDAY=-1FR', 'ny.close',
                                    now => '2026-01-01Z')`);
    expect(await sql(`select tz, next_run_at from jobs.schedules where name = 'ny'`))
      .toEqual([{ tz: 'America/New_York', next_run_at: new Date('2026-01-30T14:00:00Z') }]);
    expect(await sqlError(`select jobs.schedule('ny2', E'DTSTART;TZID=America/New_York:20260105T090000\\nRRULE:FREQ=DAILY', 'ny.close',
                                                tz => 'Europe/Paris')`))
      .toMatchObject({ code: 'PDC03', column: 'tz', message: expect.stringContaining("DTSTART names TZID 'America/New_York'") });
  });

  it('DST as cron reads it: a skipped time fires at the end of the gap, a repeated one once (the first); sub-daily rules step the wall clock', async () => {
    // Paris: 2026-03-29 02:00 -> 03:00 (UTC+1 -> UTC+2); 2026-10-25 03:00 -> 02:00.
    for (const [after, at] of [['2026-03-28 02:00Z', '2026-03-29T01:00:00.000Z'], ['2026-10-24 02:00Z', '2026-10-25T00:30:00.000Z'],
                               ['2026-10-25 00:30Z', '2026-10-26T01:30:00.000Z']]) {
      expect(await next('FREQ=DAILY;BYHOUR=2;BYMINUTE=30', after!, 'Europe/Paris')).toBe(at);
      expect(await next('30 2 * * *', after!, 'Europe/Paris')).toBe(at); // the same as cron
    }
    // Hourly through both changes: each wall hour once.
    const walk = async (cron: string, from: string, n: number) => {
      const out: string[] = [];
      for (let at: string | null = from; out.length < n && at; out.push(at!)) at = await next(cron, out.at(-1) ?? from, 'Europe/Paris');
      return out;
    };
    expect(await walk('FREQ=HOURLY', '2026-03-28 23:30Z', 3)).toEqual(['2026-03-29T00:00:00.000Z', '2026-03-29T01:00:00.000Z', '2026-03-29T02:00:00.000Z']);
    expect(await walk('FREQ=HOURLY', '2026-10-24 23:30Z', 3)).toEqual(['2026-10-25T00:00:00.000Z', '2026-10-25T02:00:00.000Z', '2026-10-25T03:00:00.000Z']);
    // A rule in the gap's hour and a minutely one: none lost, none twice.
    expect(await walk('FREQ=MINUTELY;INTERVAL=20', '2026-03-29 00:30Z', 4)).toEqual(
      ['2026-03-29T00:40:00.000Z', '2026-03-29T01:00:00.000Z', '2026-03-29T01:20:00.000Z', '2026-03-29T01:40:00.000Z']);
  });

  it('bounded work: a rule with no DTSTART (1970) far from it, and one that never fires, answer at once', async () => {
    expect(await next('FREQ=MINUTELY;INTERVAL=7', '2030-01-01 00:00Z')).toBe('2030-01-01T00:03:00.000Z'); // 7-minute steps since 1970
    expect(await next('FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO', '2030-01-01Z')).toBe('2044-02-29T00:00:00.000Z');
    expect(await next('FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30', '2030-01-01Z')).toBe(null); // none within a century
    expect(await sqlError(`select jobs.schedule('never', 'FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30', 'a.b')`))
      .toMatchObject({ code: 'PDC01', column: 'cron' });
  });

  it('refuses what it does not read with PDC01 naming cron and the part, in SQL and through TS, writing nothing', async () => {
    const bad: [string, string][] = [
      ['FREQ=YEARLY;BYWEEKNO=20', "RRULE part 'BYWEEKNO=20' is not supported"],
      ['FREQ=YEARLY;BYYEARDAY=100', "RRULE part 'BYYEARDAY=100' is not supported"],
      ['FREQ=SECONDLY', 'FREQ=SECONDLY is not supported'],
      ['FREQ=FORTNIGHTLY', "FREQ 'FORTNIGHTLY' must be"],
      ['FREQ=DAILY;BYHOURS=9', "RRULE part 'BYHOURS=9' is not an RFC 5545 rule part"],
      ['FREQ=DAILY;BYHOUR=24', "BYHOUR value '24' must be a whole number from 0 to 23"],
      ['FREQ=DAILY;BYHOUR=9;BYHOUR=17', 'RRULE has more than one BYHOUR part'],
      ['FREQ=DAILY;INTERVAL=2,3', "RRULE part 'INTERVAL=2,3' takes one value, not a list"],
      ['FREQ=MONTHLY;BYMONTHDAY=0', "BYMONTHDAY value '0' must be a whole number other than 0 from -31 to 31"],
      ['FREQ=DAILY;BYDAY=1MO', 'BYDAY ordinals (1MO, -1FR) need FREQ=MONTHLY'],
      ['FREQ=WEEKLY;BYMONTHDAY=1', 'BYMONTHDAY cannot be used with FREQ=WEEKLY'],
      ['FREQ=DAILY;BYSETPOS=1', 'BYSETPOS needs another BY part'],
      ['FREQ=DAILY;COUNT=5', 'uses COUNT, which counts occurrences from DTSTART, so it needs a DTSTART line'],
      ['DTSTART:20300101T000000\nRRULE:FREQ=DAILY;COUNT=5;UNTIL=20300201T000000', 'both COUNT and UNTIL'],
      ['DTSTART:20300101T000000\nRRULE:FREQ=DAILY;COUNT=1001', "COUNT value '1001' must be a whole number from 1 to 1000"],
      ['DTSTART:20300230T000000\nRRULE:FREQ=DAILY', "DTSTART '20300230T000000' is not a date-time that exists"],
      ['DTSTART;VALUE=DATE:20300101\nRRULE:FREQ=DAILY', "DTSTART parameter 'VALUE=DATE' is not supported"],
      ['DTSTART;TZID=CET:20300101T090000\nRRULE:FREQ=DAILY', "DTSTART TZID 'CET' must be an IANA time zone name"],
      ['FREQ=DAILY\nEXDATE;TZID=Mars/Olympus:20300101T090000', "EXDATE TZID 'Mars/Olympus' must be an IANA time zone name"],
      ['DTSTART:20300101T000000\nSUMMARY:standup\nRRULE:FREQ=DAILY', "line 'SUMMARY:standup' is not supported"],
      ['DTSTART:20300101T000000', 'has no RRULE to recur on'],
      ['RRULE:FREQ=DAILY\nRRULE:FREQ=WEEKLY', 'has more than one RRULE'],
      ['FREQ=MINUTELY;BYSECOND=0,30', 'more than 1440 times a day'],
    ];
    for (const [cron, message] of bad) {
      const error = await sqlError(`select jobs.schedule('bad', $1, 'a.b')`, [cron]);
      expect(error, cron).toMatchObject({ code: 'PDC01', column: 'cron' });
      expect(error.message, cron).toContain(message);
      await expect(schedule(db.driver, { name: 'bad', cron, task: 'a.b' }), cron)
        .rejects.toMatchObject({ code: 'invalid_argument', field: 'spec.cron', message: expect.stringContaining(message) });
    }
    // pg_cron cannot fire a rule, whether or not it is installed.
    expect(await sqlError(`select jobs.schedule('bad', 'FREQ=DAILY', 'a.b', runner => 'pg_cron')`))
      .toMatchObject({ code: 'PDC03', column: 'runner', message: expect.stringContaining('pg_cron cannot fire a recurrence rule') });
    expect(await sql('select count(*)::int as n from jobs.recurring')).toEqual([{ n: 0 }]);
    // TS tells a rule from cron as the database does, lets it through, and leaves its ticks to the database.
    expect([isRrule('FREQ=DAILY'), isRrule('DTSTART:20300101T000000\nRRULE:FREQ=DAILY'), isRrule('*/5 * * * *'), isRrule('@daily')])
      .toEqual([true, true, false, false]);
    expect(await sql(`select jobs.is_rrule('FREQ=DAILY') a, jobs.is_rrule(E'DTSTART:20300101T000000\\nRRULE:FREQ=DAILY') b,
                             jobs.is_rrule('*/5 * * * *') c, jobs.is_rrule('@daily') d`)).toEqual([{ a: true, b: true, c: false, d: false }]);
    expect(checkCron(' FREQ=DAILY;BYHOUR=9 ')).toBe('FREQ=DAILY;BYHOUR=9');
    expect(() => nextTicks('FREQ=DAILY')).toThrow(ValidationError);
  });
});
