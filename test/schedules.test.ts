// Recurring jobs without pg_cron (evaluated by drains), the SQL cron
// evaluator checked against croner, SQL tasks drained inside the database
// (jobs.drain_sql) and maintenance, over a real PostgreSQL and on PGlite.
// This file's database is a clone without pg_cron (pg_cron lives in the
// server's `postgres` database only): see cron.test.ts for pg_cron itself.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { checkCron, createQueue, listSchedules, maintain, migrate, nextTicks, schedule, unschedule, ValidationError } from '../src/index.js';
import { pgliteDriver } from '../src/db/pglite.js';
import { sqlErrorOf, testDb } from './support/db.js';
import { minute, T0 } from './support/schedule-clock.js';
import { sleep, until } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;

const sqlError = (text: string, params?: unknown[]) => sqlErrorOf(sql, text, params);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring, jobs.job_archive');
});

describe('cron expressions', () => {
  // With a day field that starts with a * (a step over all days), Vixie cron
  // (pg_cron) needs both day fields to match; nextTicks follows it, as the database does.
  const expressions = [
    '0 9 */2 * 1-5', '0 0 1 * */2', '30 6 */10 * sun', '0 0 */2 * *', '0 12 1-7 * *,mon',
    '* * * * *', '*/7 * * * *', '0 * * * *', '30 2 * * *', '15,45 9-17 * * mon-fri', '0 0 1 * *',
    '0 12 * * 0', '0 12 * * 7', '5 4 * * sun', '0 0 1 jan,jul *', '0 0 29 2 *', '59 23 31 12 *',
    '0 0 13 * 5', '0 6-18/3 * * *', '10-50/20 * * * 1-5', '0 0 * feb *', '1 2 3 4 *', '0 0 1,15 * 1',
    '@hourly', '@daily', '@weekly', '@monthly', '@yearly', '0 9 * * MON-FRI', '*/30 */6 * * *',
    '0 10 * * 6-7', '0 8 * * fri,sat,sun',
    // Steps as pg_cron takes them: any from 1; one past the item's range picks its first value.
    '0 0 * * */7', '0 0 * * */8', '0 0 * * */9', '0 0 * * 0-7/7', '0 0 * * 1-7/7', '0 0 * * 3-6/8', '0 0 * * 5-7/2',
    '0 0 * * 1-5/2', '0 0 * * mon-fri/3', '*/60 * * * *', '*/61 * * * *', '10-50/45 * * * *', '*/9999 * * * *',
    '0 */24 * * *', '0 */25 * * *', '0 0 */31 * *', '0 0 */32 * *', '0 0 1 */12 *', '0 0 1 */13 *', '0 0 2-30/40 */5 *',
  ];
  // Start points that exercise month and year ends and leap years.
  const starts = ['2030-01-01T00:00:00Z', '2031-12-31T23:59:30Z', '2032-02-28T23:59:00Z', '2030-06-30T12:34:56Z',
                  '2033-03-01T00:00:59Z', '2030-10-15T09:00:00Z', '2035-02-28T00:00:00Z', '2029-07-04T17:45:01Z'];

  it('jobs.cron_next agrees with nextTicks (croner), tick after tick', async () => {
    const exprs: string[] = [];
    const froms: string[] = [];
    for (const e of expressions) for (const s of starts) { exprs.push(e); froms.push(s); }
    const rows = await sql<{ e: string; after: Date; ticks: Date[] }>(
      `with recursive t(e, after, i, tick) as (
         select x.e, x.after, 1, jobs.cron_next(x.e, x.after) from unnest($1::text[], $2::timestamptz[]) as x(e, after)
         union all
         select t.e, t.after, t.i + 1, jobs.cron_next(t.e, t.tick) from t where t.i < 12)
       select e, after, array_agg(tick order by i) as ticks from t group by e, after`, [exprs, froms]);
    expect(rows).toHaveLength(expressions.length * starts.length);
    let compared = 0;
    for (const row of rows) {
      const expected = nextTicks(row.e, 12, new Date(row.after));
      expect(row.ticks.map((t) => new Date(t).toISOString()), `${row.e} after ${new Date(row.after).toISOString()}`)
        .toEqual(expected.map((t) => t.toISOString()));
      compared += expected.length;
    }
    expect(compared).toBe(expressions.length * starts.length * 12);
  });

  it('with a time zone, jobs.cron_next agrees with nextTicks (croner) tick after tick across DST changes', async () => {
    // Fixed times (no * nor /step in minute and hour): a skipped one fires at
    // the gap's end, a repeated one once. The others fire at every instant
    // whose wall time matches: never in the gap, twice in the repeated hour.
    const zoned = ['30 2 * * *', '0 2 * * *', '59 1 * * *', '0 3 * * *', '0,30 2 * * *', '15 1-3 * * *', '0 9 * * mon-fri',
                   '30 1 * * sun', '0 0 * * *', '*/15 * * * *', '0 * * * *', '30 */1 * * *', '*/20 1-3 * * *',
                   '0 0-23/2 * * *', '45 0-4 * * *', '@daily', '@hourly', '0 12 29 3 *', '5 2 25 10 *'];
    // Each zone from a little before the day its clocks change (2026: Europe on
    // Mar 29 and Oct 25, New York on Mar 8 and Nov 1), and zones without DST.
    const cases: [string, string][] = [
      ['Europe/Paris', '2026-03-28T20:00:00Z'], ['Europe/Paris', '2026-10-24T21:10:00Z'], ['Europe/Paris', '2026-03-29T00:40:00Z'],
      ['Europe/Paris', '2026-10-25T00:50:00Z'], ['Europe/Paris', '2026-10-25T01:05:00Z'],
      ['Europe/London', '2026-03-28T22:00:00Z'], ['Europe/London', '2026-10-24T23:00:00Z'],
      ['America/New_York', '2026-03-08T03:00:00Z'], ['America/New_York', '2026-11-01T03:00:00Z'],
      ['America/New_York', '2026-11-01T05:50:00Z'], ['Australia/Lord_Howe', '2026-04-04T13:00:00Z'],
      ['Asia/Kolkata', '2026-03-28T20:00:00Z'], ['UTC', '2026-03-28T20:00:00Z'],
    ];
    const exprs: string[] = [];
    const froms: string[] = [];
    const zones: string[] = [];
    for (const e of zoned) for (const [zone, from] of cases) { exprs.push(e); froms.push(from); zones.push(zone); }
    const rows = await sql<{ e: string; after: Date; tz: string; ticks: Date[] }>(
      `with recursive t(e, after, tz, i, tick) as (
         select x.e, x.after, x.tz, 1, jobs.cron_next(x.e, x.after, x.tz)
         from unnest($1::text[], $2::timestamptz[], $3::text[]) as x(e, after, tz)
         union all
         select t.e, t.after, t.tz, t.i + 1, jobs.cron_next(t.e, t.tick, t.tz) from t where t.i < 16)
       select e, after, tz, array_agg(tick order by i) as ticks from t group by e, after, tz`, [exprs, froms, zones]);
    expect(rows).toHaveLength(zoned.length * cases.length);
    for (const row of rows) {
      const expected = nextTicks(row.e, 16, new Date(row.after), row.tz);
      expect(row.ticks.map((t) => new Date(t).toISOString()), `${row.e} in ${row.tz} after ${new Date(row.after).toISOString()}`)
        .toEqual(expected.map((t) => t.toISOString()));
    }
    // The rules, spelled out on Paris's two days (UTC+1 in winter, UTC+2 in summer).
    const paris = async (e: string, after: string) =>
      (await sql<{ r: Date }>(`select jobs.cron_next($1, $2, 'Europe/Paris') as r`, [e, after]))[0]!.r.toISOString();
    expect(await paris('30 2 * * *', '2026-03-28T12:00:00Z')).toBe('2026-03-29T01:00:00.000Z'); // 02:30 skipped: at 03:00
    expect(await paris('*/30 2 * * *', '2026-03-28T12:00:00Z')).toBe('2026-03-30T00:00:00.000Z'); // skipped
    expect(await paris('30 2 * * *', '2026-10-25T00:31:00Z')).toBe('2026-10-26T01:30:00.000Z'); // once (00:30Z was the first)
    expect(await paris('30 2 * * *', '2026-10-24T12:00:00Z')).toBe('2026-10-25T00:30:00.000Z');
    expect(await paris('*/30 2 * * *', '2026-10-25T00:31:00Z')).toBe('2026-10-25T01:00:00.000Z'); // both passes
    expect(await paris('0 9 * * mon-fri', '2026-03-27T12:00:00Z')).toBe('2026-03-30T07:00:00.000Z'); // 09:00 Paris, summer
  });

  it('refuses a time zone it does not know, in SQL and in TS, naming tz', async () => {
    for (const tz of ['Mars/Olympus', 'UTC+3', '+01:00', 'CET', 'EST', 'Europe/Paris; drop', '']) {
      const e = await sqlError(`select jobs.cron_next('0 9 * * *', now(), $1)`, [tz]);
      expect([e.code, e.column], tz).toEqual(['PDC03', 'tz']);
      expect(e.message, tz).toMatch(/^tz: (must be an IANA time zone name|'.*' is an abbreviation)/);
      const s = await sqlError(`select jobs.schedule('z', '0 9 * * *', 'a.b', tz => $1)`, [tz]);
      expect([s.code, s.column], tz).toEqual(['PDC03', 'tz']);
    }
    // Intl refuses what is no zone at all, before any round trip; the database the rest (abbreviations).
    for (const tz of ['Mars/Olympus', 'UTC+3', '+01:00', '', 'Europe/Paris; drop']) {
      expect(() => nextTicks('0 9 * * *', 1, new Date(), tz), tz).toThrow(expect.objectContaining({ field: 'tz' }));
      await expect(schedule(db.driver, { name: 'z', cron: '0 9 * * *', task: 'a.b', tz }), tz).rejects
        .toMatchObject({ code: 'invalid_argument', field: 'spec.tz', message: expect.stringMatching(/^spec\.tz: must be an IANA time zone name/) });
    }
    await expect(schedule(db.driver, { name: 'z', cron: '0 9 * * *', task: 'a.b', tz: 'CET' })).rejects
      .toMatchObject({ code: 'invalid_argument', field: 'spec.tz', message: expect.stringMatching(/^spec\.tz: 'CET' is an abbreviation/) });
    expect(await sql(`select count(*)::int as n from jobs.recurring`)).toEqual([{ n: 0 }]);
    // UTC and its aliases are no time zone to the schedule: stored as UTC.
    expect(await sql(`select jobs.cron_next('0 9 * * *', '2026-03-29T12:00Z', 'Etc/UTC') as r`))
      .toEqual([{ r: new Date('2026-03-30T09:00:00Z') }]);
  });

  it('the database and checkCron reject the same bad expressions, naming the field and the rule', async () => {
    const bad: [string, RegExp][] = [
      ['61 * * * *', /minute field '61' is out of range 0-59/], ['* 24 * * *', /hour field '24' is out of range/],
      ['* * 0 * *', /day-of-month field '0' is out of range 1-31/], ['* * * 13 *', /month field '13'/],
      ['* * * * 8', /day-of-week field '8'/], ['5/10 * * * *', /step needs \* or a range/],
      ['* * * *', /must have 5 fields/], ['* * * * * *', /must have 5 fields/], ['0 0 * * fri-mon', /range that goes down/], ['0 10 * * sat-sun', /range that goes down/], ['0 9 * * 1,mon-sun', /range that goes down/],
      ['*/0 * * * *', /minute field '\*\/0': the step must be 1 or more/], ['0 0 * * 1-5/0', /day-of-week field '1-5\/0': the step must be 1 or more/],
      ['0 0 */00 * *', /day-of-month field '\*\/00': the step must be 1 or more/], ['*/10000 * * * *', /must be \*, a value/], ['0 0 L * *', /must be \*, a value/], ['@reboot', /must have 5 fields/],
      ['0 0 31 2 *', /never fires/], ['0 0 30 2 */1', /never fires/], ['', /must be a cron expression/], ['x * * * *', /out of range|must be/],
      ['* * * 12-13 *', /month field '12-13' is out of range 1-12/], ['* * 1-32 * *', /day-of-month field '1-32' is out of range 1-31/],
      ['0 0 * feb-jan *', /month field 'feb-jan' is a range that goes down/], ['0 0 * foo *', /month field 'foo' is out of range 1-12/],
    ];
    for (const [expr, rule] of bad) {
      const e = await sqlError('select jobs.cron_next($1)', [expr]);
      expect(e.code, expr).toBe('PDC01');
      expect(e.column).toBe('cron');
      expect(e.message, expr).toMatch(rule);
      expect(() => checkCron(expr), expr).toThrow(ValidationError);
      // A zero step, a value out of range, a range that goes down: worded the same in both
      // (croner's own words named its parsed value, month 13 as 12 and day 0 as -1).
      // A range down to sun says more in TypeScript: its "(in …)" aside.
      if (/step must be|out of range \d|goes down/.test(rule.source)) {
        expect(() => checkCron(expr), expr).toThrow(/-sun\b/.test(expr) ? e.message.replace(/ \(in '.*'\)$/, '') : e.message);
      }
    }
    expect(() => nextTicks('* * * * *', 1, new Date('x'))).toThrow(expect.objectContaining({ field: 'from' }));
  });

  it('a null after is refused naming after (jobs.cron_next and jobs.cron_tick), not taken for a cron that never fires', async () => {
    for (const call of [`select jobs.cron_next('* * * * *', null)`, `select jobs.cron_next('0 9 * * *', null, 'Europe/Paris')`,
                        `select jobs.cron_tick('* * * * *', null, null)`]) {
      const e = await sqlError(call);
      expect([call, e.code, e.column]).toEqual([call, 'PDC03', 'after']);
      expect(e.message).toBe('after: must be a timestamp to count from, such as now(), got null');
    }
    // A bad expression is still named first.
    expect((await sqlError(`select jobs.cron_next('61 * * * *', null)`)).column).toBe('cron');
  });

  it('jobs.cron_text, what every function hands pg_cron: trimmed, an @ name in lower case, the rest as written', async () => {
    // jobs.schedule_http_drain needs pg_net, which this machine lacks: the text
    // it passes pg_cron is this function's (through jobs.pg_cron_schedule).
    expect(await sql(`select jobs.cron_text($1) as a, jobs.cron_text($2) as b, jobs.cron_text($3) as c, jobs.cron_text($4) as d`,
                     ['@HOURLY', ' \t@Daily\n', ' 0 9 * * MON-FRI  ', '*/5 * * * *']))
      .toEqual([{ a: '@hourly', b: '@daily', c: '0 9 * * MON-FRI', d: '*/5 * * * *' }]);
    // Every edge takes the same texts, upper-case and padded @ names included.
    for (const expr of ['@HOURLY', ' @HOURLY', '\t@daily ', ' 0 9 * * MON-FRI ']) {
      expect(await sql(`select jobs.cron_next($1, '2030-01-01T00:30Z') = jobs.cron_next(jobs.cron_text($1), '2030-01-01T00:30Z') as same`, [expr]))
        .toEqual([{ same: true }]);
      expect(checkCron(expr), JSON.stringify(expr)).toBe(expr.trim());
    }
  });
});

describe('schedules run by drains (no pg_cron in this database)', () => {
  it("a claim that fires a tick into a bounded queue and settles a serial key's head does not deadlock with a publish of that key to that queue", async () => {
    const client = () => new pg.Client({ connectionString: db.url });
    const [x, c, p] = [client(), client(), client()] as const;
    await Promise.all([x.connect(), c.connect(), p.connect()]);
    try {
      await sql(`select jobs.create_queue('bq', 100)`);
      await sql(`select jobs.schedule('tick', '* * * * *', 'tick.run', queue => 'bq', runner => 'drains', now => now() - interval '5 minutes')`);
      const head = (await sql<{ id: string }>(`select jobs.publish('a.task', serial_key => 'k')::text as id`))[0]!.id;
      const next = (await sql<{ id: string }>(`select jobs.publish('a.task', serial_key => 'k')::text as id`))[0]!.id;
      await sql(`select * from jobs.claim(1, worker_id => 'w')`);
      // x holds the key's next job, so the claim's settle waits holding the key's lock (and the queue's, once it fired the tick).
      await x.query('begin');
      await x.query('select 1 from jobs.job_queue where job_id = $1 for update', [next]);
      const waits = async (client: pg.Client) => {
        const pid = (await client.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
        return async () => (await sql(`select 1 from pg_stat_activity where pid = $1 and wait_event_type = 'Lock'`, [pid])).length > 0;
      };
      const [cWaits, pWaits] = [await waits(c), await waits(p)];
      const claimed = c.query(`select jobs.claim_json(1, ids => array[$1::bigint], attempts => '{1}', outcomes => '{ack}',
                                                     worker_id => 'w') as r`, [head]).then(() => 'ok', (e: Error) => e.message);
      await until(cWaits, 'the claim to wait on the next job');
      const published = p.query(`select jobs.publish('b.task', queue => 'bq', serial_key => 'k')`)
        .then(() => 'ok', (e: Error) => e.message);
      await until(async () => (await pWaits()) || (await Promise.race([published, sleep(50).then(() => null)])) !== null,
                  'the publish to wait or end');
      await x.query('commit');
      expect([await claimed, await published]).toEqual(['ok', 'ok']);
      // The claim publishes its ticks after its settle (it locks no schedule's row before a key's wait):
      // the publish held the queue's lock by then, so the tick stayed due, and the next claim publishes it.
      expect(await sql(`select count(*)::int as n from jobs.job_queue where task = 'tick.run'`)).toEqual([{ n: 0 }]);
      await sql(`select jobs.claim_json(1, 'nothing.matches.%')`);
      expect(await sql(`select count(*)::int as n from jobs.job_queue where task = 'tick.run'`)).toEqual([{ n: 1 }]);
      expect(await sql(`select last_error from jobs.recurring`)).toEqual([{ last_error: null }]);
    } finally {
      await x.query('rollback').catch(() => {});
      await Promise.all([x.end(), c.end(), p.end()]);
      await sql(`delete from jobs.job_queue where queue = 'bq'; delete from jobs.queue where name = 'bq'`);
    }
  });

  const claim = (now: string) => sql(`select jobs.claim_json(10, 'nothing.matches.%', null, $1::timestamptz)`, [now]);
  const ticks = () => sql<{ task: string; scheduled_at: Date }>(`select task, scheduled_at from jobs.job_queue order by job_id`);

  it('jobs.schedule picks drains, lists the schedule, is idempotent and keeps a pending tick', async () => {
    expect(await sql(`select jobs.schedule('every-5', '*/5 * * * *', 'report.tick', '{"a":1}', now => $1)`, [minute(1)]))
      .toEqual([{ schedule: 'drains' }]);
    // Called again later with the same arguments (an app restart): the 00:05 tick is not skipped.
    await sql(`select jobs.schedule('every-5', '*/5 * * * *', 'report.tick', '{"a":1}', now => $1)`, [minute(7)]);
    expect(await sql(`select name, cron, task, body, runner, pg_cron_job, next_run_at from jobs.schedules`)).toEqual([
      { name: 'every-5', cron: '*/5 * * * *', task: 'report.tick', body: { a: 1 }, runner: 'drains', pg_cron_job: null,
        next_run_at: new Date(minute(5)) }]);
    // A changed expression starts over from now.
    await sql(`select jobs.schedule('every-5', '0 * * * *', 'report.tick', '{"a":1}', now => $1)`, [minute(7)]);
    expect(await sql(`select next_run_at from jobs.schedules`)).toEqual([{ next_run_at: new Date(minute(60)) }]);
  });

  it('schedule() again with the expression changed (even only respelled) publishes the tick that was due first', async () => {
    await sql('truncate jobs.job_queue');
    // 2030-01-07 is a Monday.
    await sql(`select jobs.schedule('wk', '0 9 * * mon-fri', 'wk.run', runner => 'drains', now => '2030-01-07 08:50Z')`);
    await sql(`select jobs.schedule('wk', '0 9 * * MON-FRI', 'wk.run', runner => 'drains', now => '2030-01-07 09:00:30Z')`);
    const next = await sql(`select next_run_at from jobs.recurring where name = 'wk'`);
    await sql(`select jobs.unschedule('wk')`);
    expect(await sql(`select scheduled_at from jobs.job_queue where task = 'wk.run'`))
      .toEqual([{ scheduled_at: new Date('2030-01-07T09:00:00Z') }]);
    expect(next).toEqual([{ next_run_at: new Date('2030-01-08T09:00:00Z') }]);
  });

  it('a claim publishes each due tick once, at its tick time; missed ticks become one job', async () => {
    await sql(`select jobs.schedule('m', '* * * * *', 'clock.tick', '{"k":1}', timeout => 9, priority => 4, max_retries => 1, now => $1)`, [T0]);
    await claim(minute(0));
    expect(await ticks()).toEqual([]);
    await claim(minute(1));
    await claim(minute(1));
    expect(await ticks()).toEqual([{ task: 'clock.tick', scheduled_at: new Date(minute(1)) }]);
    expect(await sql(`select body, timeout::float8 as timeout, priority, max_retries from jobs.job_queue`))
      .toEqual([{ body: { k: 1 }, timeout: 9, priority: 4, max_retries: 1 }]);
    await claim(minute(10)); // nine ticks missed: one job, scheduled at the first of them
    expect((await ticks()).map((t) => t.scheduled_at)).toEqual([new Date(minute(1)), new Date(minute(2))]);
    expect(await sql(`select next_run_at, last_run_at from jobs.recurring`))
      .toEqual([{ next_run_at: new Date(minute(11)), last_run_at: new Date(minute(2)) }]);
  });

  it("overlap 'skip': no tick publishes while the schedule's job is pending (a paused queue) or running; the first tick after it ended does", async () => {
    await sql(`select jobs.create_queue('held'); select jobs.pause_queue('held')`);
    await sql(`select jobs.schedule('single', '* * * * *', 'held.single', queue => 'held', overlap => 'skip', now => $1)`, [T0]);
    await sql(`select jobs.schedule('piles', '* * * * *', 'held.piles', queue => 'held', now => $1)`, [T0]); // overlap 'allow'
    for (const k of [1, 2, 3]) await claim(minute(k));
    const count = async () => Object.fromEntries((await sql<{ task: string; n: number }>(
      `select task, count(*)::int as n from jobs.job_queue group by task`)).map((r) => [r.task, r.n]));
    expect(await count()).toEqual({ 'held.single': 1, 'held.piles': 3 });
    expect(await sql(`select dedupe_key from jobs.job_queue where task = 'held.single'`)).toEqual([{ dedupe_key: 'pgdrain:schedule:single' }]);
    const info = async () => Object.fromEntries((await listSchedules(db.driver)).map((s) => [s.name, s]));
    expect((await info()).single).toMatchObject({ overlap: 'skip', skippedTicks: 2, lastSkippedAt: new Date(minute(3)),
                                                  lastRunAt: new Date(minute(1)), nextRunAt: new Date(minute(4)), lastError: null });
    expect((await info()).piles).toMatchObject({ overlap: 'allow', skippedTicks: 0, lastSkippedAt: null, lastRunAt: new Date(minute(3)) });

    // Running: still active, so the 00:04 tick publishes nothing either.
    await sql(`select jobs.resume_queue('held')`);
    const [job] = await sql<{ job_id: string }>(`select job_id from jobs.claim(1, 'held.single', null, $1, 'held')`,
                                                [new Date(Date.parse(minute(3)) + 30_000)]);
    await claim(minute(4));
    expect((await count())['held.single']).toBe(1);
    expect((await info()).single).toMatchObject({ skippedTicks: 3, lastSkippedAt: new Date(minute(4)) });
    // Once it ended, the next tick publishes.
    await sql(`select jobs.ack($1::bigint, null, $2::timestamptz)`, [job!.job_id, minute(4)]);
    await claim(minute(5));
    expect(await sql(`select task, scheduled_at from jobs.job_queue where task = 'held.single'`))
      .toEqual([{ task: 'held.single', scheduled_at: new Date(minute(5)) }]);
    expect((await info()).single).toMatchObject({ skippedTicks: 3, lastRunAt: new Date(minute(5)) });
    // Changing its definition keeps the pending tick's place, as for any schedule; 'allow' again publishes beside it.
    await sql(`select jobs.schedule('single', '* * * * *', 'held.single', queue => 'held', now => $1)`, [minute(5)]);
    await claim(minute(6));
    expect((await count())['held.single']).toBe(2);
    await sql(`delete from jobs.job_queue where queue = 'held'; delete from jobs.queue where name = 'held'`);
  });

  it('a schedule in a time zone is run by the drains, at its wall-clock time across a DST change', async () => {
    // 2026-03-27 is a Friday; Paris moves from UTC+1 to UTC+2 on Sunday 2026-03-29.
    expect(await schedule(db.driver, { name: 'paris', cron: '0 9 * * mon-fri', task: 'office.open', tz: 'Europe/Paris' })).toBe('drains');
    await sql(`update jobs.recurring set next_run_at = jobs.cron_next(cron, '2026-03-27 07:30Z', tz)`);
    expect(await listSchedules(db.driver)).toMatchObject([{ name: 'paris', tz: 'Europe/Paris', nextRunAt: new Date('2026-03-27T08:00:00Z') }]);
    for (const now of ['2026-03-27 08:00:30Z', '2026-03-30 06:00:30Z', '2026-03-30 07:00:30Z']) await claim(now);
    expect((await ticks()).map((t) => t.scheduled_at)).toEqual([new Date('2026-03-27T08:00:00Z'), new Date('2026-03-30T07:00:00Z')]);
    expect(await sql(`select next_run_at from jobs.recurring`)).toEqual([{ next_run_at: new Date('2026-03-31T07:00:00Z') }]);
  });

  it('many drains at the same moment publish each tick exactly once', async () => {
    const pool = new pg.Pool({ connectionString: db.url, max: 12 });
    try {
      for (let i = 0; i < 10; i++) {
        await sql(`select jobs.schedule($1, '* * * * *', 'load.tick', jsonb_build_object('s', $1::text), now => $2)`, [`s${i}`, T0]);
      }
      for (let k = 1; k <= 30; k++) {
        await Promise.all(Array.from({ length: 12 }, () =>
          pool.query(`select jobs.claim_json(10, 'nothing.matches.%', null, $1::timestamptz)`, [minute(k)])));
      }
      // One job per (schedule, tick): 10 schedules x 30 ticks, no duplicates.
      expect(await sql(`select count(*)::int as jobs, count(distinct (body, scheduled_at))::int as distinct_ticks,
                               count(distinct scheduled_at)::int as minutes from jobs.job_queue`))
        .toEqual([{ jobs: 300, distinct_ticks: 300, minutes: 30 }]);
      expect(await sql(`select count(*)::int as n from jobs.recurring where next_run_at = $1`, [minute(31)])).toEqual([{ n: 10 }]);
    } finally {
      await pool.end();
    }
  });

  it('a drain never waits for another publishing the same tick: it skips the locked row', async () => {
    await sql(`select jobs.schedule('m', '* * * * *', 'clock.tick', now => $1)`, [T0]);
    const a = new pg.Client({ connectionString: db.url });
    await a.connect();
    try {
      await a.query('begin');
      expect((await a.query(`select jobs.publish_due_schedules($1) as n`, [minute(1)])).rows).toEqual([{ n: 1 }]);
      // a holds the row until it commits; this claim returns without it instead of blocking.
      expect(await sql(`select jobs.publish_due_schedules($1) as n`, [minute(1)])).toEqual([{ n: 0 }]);
      await a.query('commit');
      expect(await sql(`select jobs.publish_due_schedules($1) as n`, [minute(1)])).toEqual([{ n: 0 }]);
      expect(await sql(`select count(*)::int as n from jobs.job_queue`)).toEqual([{ n: 1 }]);
    } finally {
      await a.end();
    }
  });

  it('with nothing due a claim costs one index probe of jobs.recurring, however many schedules pg_cron runs', async () => {
    await sql(`insert into jobs.recurring (name, cron, task, runner, created_at, updated_at)
               select 'c' || i, '* * * * *', 'x.y', 'pg_cron', now(), now() from generate_series(1, 500) i`);
    await sql(`select jobs.schedule('later', '0 0 1 1 *', 'x.y', now => $1)`, [T0]);
    await sql('analyze jobs.recurring');
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      const stats = async () => (await c.query(
        `select seq_scan::int, idx_scan::int, idx_tup_fetch::int from pg_stat_xact_user_tables where relid = 'jobs.recurring'::regclass`)).rows[0];
      await c.query('begin');
      await c.query(`select jobs.claim_json(10, null, null, $1::timestamptz)`, [minute(5)]);
      const before = await stats();
      await c.query(`select jobs.claim_json(10, null, null, $1::timestamptz)`, [minute(6)]);
      const after = await stats();
      await c.query('rollback');
      expect({ seq: after.seq_scan - before.seq_scan, idx: after.idx_scan - before.idx_scan,
               fetched: after.idx_tup_fetch - before.idx_tup_fetch }).toEqual({ seq: 0, idx: 1, fetched: 0 });
    } finally {
      await c.end();
    }
  });

  it('a schedule that cannot publish records why and never breaks the claim', async () => {
    await sql(`select jobs.create_queue('tiny', 1)`);
    await sql(`select jobs.publish('fill.it', queue => 'tiny')`);
    await sql(`select jobs.schedule('full', '* * * * *', 'clock.tick', queue => 'tiny', now => $1)`, [T0]);
    await sql(`select jobs.publish('other.work', now => $1)`, [T0]);
    const { r } = (await sql<{ r: { jobs: { task: string[] } } }>(
      `select jobs.claim_json(10, 'other.%', null, $1::timestamptz) as r`, [minute(3)]))[0]!;
    expect(r.jobs.task).toEqual(['other.work']);
    const [row] = await sql<{ last_error: string; next_run_at: Date }>(`select last_error, next_run_at from jobs.recurring`);
    expect(row!.last_error).toMatch(/queue 'tiny' is full.*SQLSTATE PD010/);
    expect(row!.next_run_at).toEqual(new Date(minute(4)));
  });

  it('TS schedule/unschedule/listSchedules validate at the edge and write nothing on bad input', async () => {
    expect(await schedule(db.driver, { name: 'nightly', cron: '0 3 * * *', task: 'report.daily', body: { x: 1 },
                                       timeoutSeconds: 30, maxRetries: 2 })).toBe('drains');
    const bad: [object, string][] = [
      [{ name: 'has space', cron: '* * * * *', task: 'a.b' }, 'spec.name'],
      [{ name: 'n', cron: '* * * *', task: 'a.b' }, 'spec.cron'],
      [{ name: 'n', cron: '0 0 31 2 *', task: 'a.b' }, 'spec.cron'],
      [{ name: 'n', cron: '* * * * *', task: 'bad task' }, 'spec.task'],
      [{ name: 'n', cron: '* * * * *', task: 'a.b', timeoutSeconds: 0 }, 'spec.timeoutSeconds'],
      [{ name: 'n', cron: '* * * * *', task: 'a.b', runner: 'systemd' }, 'spec.runner'],
      [{ name: 'n', cron: '* * * * *', task: 'a.b', extra: 1 }, 'spec'],
      [{ name: 'n', cron: '* * * * *', task: 'a.b', body: { s: 'nul\u0000' } }, 'spec.body'],
      [{ name: 'n', cron: '* * * * *', task: 'a.b', body: { s: '\ud800' } }, 'spec.body'],
    ];
    for (const [spec, field] of bad) {
      await expect(schedule(db.driver, spec as never), JSON.stringify(spec)).rejects.toMatchObject({ code: 'invalid_argument', field });
    }
    // The database's own checks, reached through TS: an unknown queue, a forced pg_cron that is missing.
    await expect(schedule(db.driver, { name: 'n', cron: '* * * * *', task: 'a.b', queue: 'nope' }))
      .rejects.toMatchObject({ code: 'invalid_argument', field: 'spec.queue' });
    await expect(schedule(db.driver, { name: 'n', cron: '* * * * *', task: 'a.b', runner: 'pg_cron' }))
      .rejects.toMatchObject({ name: 'PgDrainError', code: 'unsupported', message: expect.stringMatching(/^pg_cron is not installed in this database/) });
    expect(await listSchedules(db.driver)).toMatchObject([
      { name: 'nightly', cron: '0 3 * * *', task: 'report.daily', body: { x: 1 }, runner: 'drains', pgCronJob: null }]);
    expect(await unschedule(db.driver, 'nightly')).toBe(true);
    expect(await unschedule(db.driver, 'nightly')).toBe(false);
    expect(await listSchedules(db.driver)).toEqual([]);
  });

  // A fresh PGlite costs about 6 CPU-seconds (its wasm and initdb): on a loaded
  // 2-core machine it took 47 to 99 s to start, near or past the default 60 s.
  it('on PGlite, a drain publishes the due tick and runs it in the same pass', async () => {
    const driver = await pgliteDriver();
    try {
      await migrate(driver);
      const ran: unknown[] = [];
      const queue = createQueue({ driver, tasks: { clock: { tick: (body: unknown) => void ran.push(body) } } });
      expect(await schedule(driver, { name: 'each-minute', cron: '* * * * *', task: 'clock.tick', body: { from: 'pglite' },
                                      timeoutSeconds: 5 })).toBe('drains');
      await driver.query(`update jobs.recurring set next_run_at = now() - interval '1 minute'`);
      const report = await queue.drain(10, Date.now() + 30_000);
      expect(report).toMatchObject({ claimed: 1, succeeded: 1, stoppedBy: 'empty' });
      expect(ran).toEqual([{ from: 'pglite' }]);
      const again = await queue.drain(10, Date.now() + 30_000); // the next tick is a minute away
      expect(again.claimed).toBe(0);
    } finally {
      await driver.close();
    }
  }, 180_000);
});

describe('jobs.drain_sql: sql:<schema>.<function> tasks drained inside the database', () => {
  const drainSql = async (batch: number, budget: number) =>
    (await sql<{ report: Record<string, unknown> }>(`call jobs.drain_sql(${batch}, ${budget})`))[0]!.report;
  const seen = async () => (await sql<{ b: unknown }>(`select b from app.seen order by id`)).map((r) => r.b);

  beforeEach(async () => {
    await sql(`create schema if not exists app;
      create table if not exists app.seen (id serial primary key, b jsonb);
      truncate app.seen;
      create or replace function app.record(b jsonb) returns jsonb language plpgsql as $$
      begin
        insert into app.seen (b) values (b);
        if b ? 'fail' then raise exception 'failed on purpose: %', b->>'fail'; end if;
        return jsonb_build_object('echo', b);
      end $$;
      create or replace function app.record_void(b jsonb) returns void language sql as $$ insert into app.seen (b) values (b) $$;
      create or replace function app.slow(b jsonb) returns void language plpgsql as $$
      begin perform pg_sleep((b->>'s')::float8); insert into app.seen (b) values (b); end $$;
      -- Its own start and end on the database's clock, in its body's place.
      create or replace function app.timed(b jsonb) returns void language plpgsql as $$
      declare t0 timestamptz := clock_timestamp();
      begin perform pg_sleep((b->>'s')::float8);
        insert into app.seen (b) values (jsonb_build_object('job', b->'job', 'from', t0, 'to', clock_timestamp()));
        if b ? 'fail' then raise exception 'failed on purpose'; end if; end $$;
      -- query_canceled is not caught by WHEN OTHERS: it ends the whole CALL, as a cancel or lost session would.
      create or replace function app.abort_call(b jsonb) returns void language plpgsql as $$
      begin insert into app.seen (b) values (b); raise exception 'cancelled mid-job' using errcode = 'query_canceled'; end $$;
      -- Only allowed functions run as SQL tasks (sql-task-security.test.ts).
      select jobs.allow_sql_task(f) from unnest(array['app.record', 'app.record_void', 'app.slow', 'app.timed', 'app.abort_call']) f;`);
  });

  it('runs each function with the job body, commits its work with the ack, nacks errors with their SQLSTATE', async () => {
    await sql(`select jobs.publish('sql:app.record', '{"x":1}')`);
    await sql(`select jobs.publish('sql:app.record', '{"fail":"boom"}', max_retries => 1)`);
    await sql(`select jobs.publish('sql:app.record_void', '{"y":2}')`);
    // On a list edited by hand (jobs.allow_sql_task refuses both): drain_sql checks again.
    await sql(`insert into jobs.sql_task (name) values ('pg_catalog.jsonb_pretty'), ('app.missing') on conflict do nothing`);
    await sql(`select jobs.publish('sql:pg_catalog.jsonb_pretty', '{}', max_retries => 0)`);
    await sql(`select jobs.publish('sql:app.missing', '{}', max_retries => 0)`);
    await sql(`select jobs.publish('email.send', '{}')`); // not an SQL task: left for TS drains
    expect(await drainSql(50, 300)).toEqual({ claimed: 5, succeeded: 2, failed: 2, retried: 1, stale: 0, stoppedBy: 'empty',
                                               skipped: 0, skippedTimeouts: null });
    expect(await sql(`select task, status, result, error from jobs.job order by job_id`)).toEqual([
      { task: 'sql:app.record', status: 'success', result: { echo: { x: 1 } }, error: null },
      { task: 'sql:app.record_void', status: 'success', result: null, error: null },
      { task: 'sql:pg_catalog.jsonb_pretty', status: 'failure', result: null,
        error: 'task sql:pg_catalog.jsonb_pretty: functions in schema pg_catalog cannot be task handlers (SQLSTATE 42501)' },
      { task: 'sql:app.missing', status: 'failure', result: null,
        error: 'task sql:app.missing: no function app.missing(jsonb) to run it (SQLSTATE 42883)' },
    ]);
    expect(await sql(`select task, attempt, last_error from jobs.job_queue order by job_id`)).toEqual([
      { task: 'sql:app.record', attempt: 1, last_error: 'failed on purpose: boom (SQLSTATE P0001)' },
      { task: 'email.send', attempt: 0, last_error: null },
    ]);
    expect(await seen()).toEqual([{ x: 1 }, { y: 2 }]); // the failed run's insert was rolled back
  });

  it('commits per job: a call that dies mid-job keeps what it finished, and the lease of the rest expires into a retry', async () => {
    for (const [task, body] of [['record', '{"n":1}'], ['record', '{"n":2}'], ['abort_call', '{"n":3}'], ['record', '{"n":4}']]) {
      await sql(`select jobs.publish($1, $2::jsonb, timeout_seconds => 5)`, [`sql:app.${task}`, body]);
    }
    const e = await sqlError(`call jobs.drain_sql(10, 60)`);
    expect(e.code).toBe('57014');
    expect(await sql(`select body from jobs.job where status = 'success' order by job_id`)).toEqual([{ body: { n: 1 } }, { body: { n: 2 } }]);
    expect(await seen()).toEqual([{ n: 1 }, { n: 2 }]);
    expect(await sql(`select body, attempt, lease_until is not null as leased from jobs.job_queue order by job_id`)).toEqual([
      { body: { n: 3 }, attempt: 1, leased: true }, { body: { n: 4 }, attempt: 0, leased: false }]);
    expect(await sql(`select jobs.expire(10, now() + interval '1 minute') as n`)).toEqual([{ n: 1 }]);
    expect((await sql<{ last_error: string }>(`select last_error from jobs.job_queue where body->>'n' = '3'`))[0]!.last_error)
      .toMatch(/^timed out: no ack within 5 seconds \(attempt 1 of 4\)/);
  });

  it('a function that outlives its lease is rolled back and nacked as timed out', async () => {
    await sql(`select jobs.publish('sql:app.slow', '{"s":1.5}', timeout_seconds => 1, max_retries => 0)`);
    expect(await drainSql(10, 30)).toMatchObject({ claimed: 1, failed: 1 });
    expect(await sql(`select error from jobs.job`)).toEqual([{ error: 'timed out: ran past its 1-second lease (SQLSTATE PDC98)' }]);
    expect(await seen()).toEqual([]);
  });

  it('claims only jobs that fit the budget left, so each ends by its deadline', async () => {
    await sql(`select jobs.publish('sql:app.slow', '{"s":0.25}', timeout_seconds => 1) from generate_series(1, 20)`);
    // Under the whole budget, over what is left of it once the others ran (a timeout not under the
    // whole budget fails the call: drain-sql-skipped-timeouts.test.ts).
    await sql(`select jobs.publish('sql:app.record', '{"long":true}', timeout_seconds => 2.5)`);
    const report = await drainSql(100, 3);
    expect(report).toMatchObject({ failed: 0, retried: 0, stoppedBy: 'deadline', skipped: 21 - (report.claimed as number) });
    expect(report.succeeded).toBe(report.claimed);
    expect(report.claimed as number).toBeGreaterThan(0);
    expect(report.claimed as number).toBeLessThan(20);
    expect(await sql(`select count(*)::int as n from jobs.job_queue where attempt = 0`)).toEqual([{ n: 21 - (report.claimed as number) }]);
    // The deadline contract, on the database's clock: the call's deadline is its budget after it began, which
    // was before its first claim (the first started_at). No job was claimed with a timeout past it, so every
    // one ended by then too; the long job never fitted.
    expect(await sql(`select bool_and(started_at + make_interval(secs => timeout::float8) <= first + interval '3 seconds') as fitted,
                             bool_and(ended_at <= first + interval '3 seconds') as ended, bool_and(body->>'long' is null) as short
                      from jobs.job, (select min(started_at) as first from jobs.job) f`))
      .toEqual([{ fitted: true, ended: true, short: true }]);
  });

  it("records each job's start and end around its function's run: ended_at when it returned, not when it began", async () => {
    // A success and a failure (no retry left: it ends), each running 0.3 s; the failure's span is rolled back
    // with its work, but its sleep bounds it from below.
    await sql(`select jobs.publish('sql:app.timed', '{"job":1,"s":0.3}', timeout_seconds => 30)`);
    await sql(`select jobs.publish('sql:app.timed', '{"job":2,"s":0.3,"fail":true}', timeout_seconds => 30, max_retries => 0)`);
    expect(await drainSql(10, 60)).toMatchObject({ claimed: 2, succeeded: 1, failed: 1 });
    const [ok] = await sql<{ covered: boolean; ms_ok: boolean }>(
      `select j.started_at <= (s.b->>'from')::timestamptz and j.ended_at >= (s.b->>'to')::timestamptz as covered,
              j.duration_ms >= extract(epoch from (s.b->>'to')::timestamptz - (s.b->>'from')::timestamptz) * 1000 as ms_ok
       from jobs.job j join app.seen s on s.b->>'job' = j.body->>'job' where j.status = 'success'`);
    expect(ok).toEqual({ covered: true, ms_ok: true });
    expect(await sql(`select ended_at >= started_at + interval '0.3 seconds' as ran, duration_ms >= 300 as ms
                      from jobs.job where status = 'failure'`)).toEqual([{ ran: true, ms: true }]);
  });

  it("says 'empty', not 'deadline', when the only long job left is blocked or its queue paused", async () => {
    // Longer than the budget, but not claimable anyway: waiting on a dependency, or in a paused queue.
    const { id } = (await sql<{ id: string }>(`select jobs.publish('sql:app.record', '{}', timeout_seconds => 600) as id`))[0]!;
    await sql(`select jobs.publish('sql:app.record', '{}', timeout_seconds => 600, depends_on => array[$1::bigint])`, [id]);
    await sql(`select jobs.create_queue('held'); select jobs.pause_queue('held')`);
    await sql(`select jobs.publish('sql:app.record', '{}', timeout_seconds => 600, queue => 'held')`);
    await sql(`update jobs.job_queue set scheduled_at = now() + interval '1 hour' where job_id = $1`, [id]);
    expect(await drainSql(10, 2)).toMatchObject({ claimed: 0, stoppedBy: 'empty' });
    expect((await sql<{ report: Record<string, unknown> }>(`call jobs.drain_sql(10, 2, 'held')`))[0]!.report)
      .toMatchObject({ claimed: 0, stoppedBy: 'empty' });
  });

  it('publishes due drain-run ticks first, and checks its arguments', async () => {
    await sql(`select jobs.schedule('sql-tick', '* * * * *', 'sql:app.record', '{"tick":true}', timeout => 5,
                                    now => now() - interval '2 minutes')`);
    expect(await drainSql(10, 30)).toMatchObject({ claimed: 1, succeeded: 1 });
    expect(await seen()).toEqual([{ tick: true }]);
    for (const [call, field] of [['call jobs.drain_sql(0, 10)', 'batch'], ['call jobs.drain_sql(10, 0)', 'budget']]) {
      const e = await sqlError(call!);
      expect([e.code, e.column]).toEqual(['PDC03', field]);
    }
  });
});

describe('jobs.maintain', () => {
  const endedJobs = (n: number, task: string, daysAgo: number) => sql(
    `select jobs.ack(c.job_id, null, now() - make_interval(days => $3))
     from jobs.claim($1, $2, null, now() - make_interval(days => $3)) c`,
    [n, task, daysAgo]);

  it('settles expired leases, publishes due ticks, and deletes or archives old ended jobs', async () => {
    for (const task of ['old.a', 'old.b', 'fresh.c']) await sql(`select jobs.publish($1, now => now() - interval '40 days') from generate_series(1, 3)`, [task]);
    await endedJobs(3, 'old.a', 30);
    await endedJobs(3, 'old.b', 20);
    await endedJobs(3, 'fresh.c', 1);
    await sql(`select jobs.publish('stuck.job', timeout_seconds => 1, now => now() - interval '1 hour')`);
    await sql(`select jobs.claim(1, 'stuck.job', null, now() - interval '1 hour')`);
    // One tick due, the next a year on: a minute's schedule was due again in the maintain calls below
    // once a minute turned between them (their passes read the real clock), as a loaded machine made likely.
    await sql(`select jobs.schedule('m', '0 0 1 1 *', 'clock.tick', now => now() - interval '1 year')`);

    expect(await sql(`select jobs.maintain('25 days') as r`)).toEqual([{ r: { expired: 1, ticks: 1, deleted: 3, archived: 0, windows: 0, misses: 0, left: 0 } }]);
    // Passes of at most 2 rows, until one finds less to do.
    expect(await maintain(db.driver, { retentionSeconds: 7 * 86400, archive: true, maxRows: 2 }))
      .toEqual({ expired: 0, ticks: 0, deleted: 0, archived: 3, windows: 0, misses: 0, left: 0, passes: 2, caughtUp: true });
    expect(await maintain(db.driver, { retentionSeconds: 7 * 86400, archive: true })).toMatchObject({ archived: 0, passes: 1 });
    expect(await sql(`select task, count(*)::int as n from jobs.job group by task`)).toEqual([{ task: 'fresh.c', n: 3 }]);
    expect(await sql(`select task, status, count(*)::int as n from jobs.job_archive group by task, status`))
      .toEqual([{ task: 'old.b', status: 'success', n: 3 }]);
    expect(await sql(`select task, attempt, lease_until from jobs.job_queue order by task`)).toMatchObject([
      { task: 'clock.tick', attempt: 0 }, { task: 'stuck.job', attempt: 1, lease_until: null }]);
  });

  it('checks its arguments, in SQL and in TS', async () => {
    const e = await sqlError(`select jobs.maintain('-1 day')`);
    expect([e.code, e.column]).toEqual(['PDC03', 'retention']);
    await expect(maintain(db.driver, { retentionSeconds: -1 })).rejects.toMatchObject({ field: 'options.retentionSeconds' });
    // Past what an interval subtracted from now can hold: named here, not as the database's range error.
    for (const retentionSeconds of [1e12, 1e308]) {
      await expect(maintain(db.driver, { retentionSeconds })).rejects.toMatchObject({
        field: 'options.retentionSeconds', message: 'options.retentionSeconds: must be at most 3153600000 (a hundred years)' });
    }
    await expect(maintain(db.driver, { maxRows: 0 })).rejects.toMatchObject({ field: 'options.maxRows' });
  });
});
