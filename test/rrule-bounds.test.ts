// Recurrence rules at the bounds of what they take (sql/0037_rrule.sql,
// 0038_rrule_next.sql): the largest INTERVAL the README names, and the work
// a drain's claim does for a rule whose RRULE part is sparse but whose
// RDATEs give it a next tick, or whose EXDATE lines name a zone each
// (counted in function calls, not timed).
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { schedule } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
});

/**
 * Runs statement (with params) in a transaction of its own that counts calls
 * of PL/pgSQL functions (track_functions), and answers its first row and how
 * many times jobs.<funcname> was called in it.
 */
async function callsDuring<R>(statement: string, params: unknown[], funcname: string): Promise<{ row: R | undefined; calls: number }> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    await client.query('begin');
    await client.query(`set local track_functions = 'pl'`);
    const { rows: [row] } = await client.query<R & object>(statement, params);
    const { rows } = await client.query<{ calls: string }>(
      `select coalesce(sum(calls), 0) as calls from pg_stat_xact_user_functions where schemaname = 'jobs' and funcname = $1`,
      [funcname]);
    await client.query('commit');
    return { row, calls: Number(rows[0]!.calls) };
  } finally {
    await client.end();
  }
}

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
