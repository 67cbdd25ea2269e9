// jobs.cron_next's `after` and `tz` at their edges. An infinite after was
// taken: a cron expression then "never fires: no date matches it" (PDC01
// naming cron, about an expression that fires every minute), a recurrence
// rule ran out of a tick's steps searching "up to" nothing (after
// infinity) or answered 1970 (after -infinity). A right/ zone (leap
// seconds: not in pg_timezone_names, so jobs.schedule refused it) was taken
// by jobs.cron_next and as a rule's TZID: ticks 27 s off the minute.
import { describe, expect, it } from 'vitest';
import { sqlErrorOf, testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const sqlError = (text: string, params?: unknown[]) => sqlErrorOf(sql, text, params);

describe('jobs.cron_next at the edges of after and tz', () => {
  for (const after of ['infinity', '-infinity']) {
    for (const [expr, tz] of [['* * * * *', null], ['0 9 * * *', 'Europe/Paris'], ['FREQ=DAILY;BYHOUR=9', null],
                              [`DTSTART:20260101T090000\nRRULE:FREQ=DAILY;COUNT=3`, null]] as const) {
      it(`refuses after ${after} naming after (${JSON.stringify(expr)}${tz ? ` in ${tz}` : ''})`, async () => {
        const e = await sqlError(`select jobs.cron_next($1, $2, $3)`, [expr, after, tz]);
        expect([e.code, e.column, e.message]).toEqual(['PDC03', 'after', `after: must be a timestamp to count from, such as now(), got ${after}`]);
      });
    }
  }

  it('a bad expression is still named first', async () => {
    expect((await sqlError(`select jobs.cron_next('61 * * * *', 'infinity')`)).column).toBe('cron');
    expect((await sqlError(`select jobs.cron_next('FREQ=DAILY;BYHOUR=24', 'infinity')`)).column).toBe('cron');
  });

  it('a finite after far out is taken as before', async () => {
    expect(await sql(`select jobs.cron_next('0 9 * * *', '2999-12-31T12:00Z') as r`)).toEqual([{ r: new Date('3000-01-01T09:00:00Z') }]);
  });

  it('refuses a leap-second right/ zone naming tz, and as a rule\'s TZID naming cron', async () => {
    const e = await sqlError(`select jobs.cron_next('0 9 * * *', '2030-01-01Z', 'right/Europe/Paris')`);
    expect([e.code, e.column]).toEqual(['PDC03', 'tz']);
    expect(e.message).toMatch(/^tz: must be an IANA time zone name/);
    const r = await sqlError(`select jobs.cron_next($1, '2030-01-01Z')`, ['DTSTART;TZID=right/Europe/Paris:20300101T090000\nRRULE:FREQ=DAILY']);
    expect([r.code, r.column]).toEqual(['PDC01', 'cron']);
    expect(r.message).toMatch(/DTSTART TZID 'right\/Europe\/Paris' must be an IANA time zone name/);
    // The zone itself is taken, on whole minutes.
    expect(await sql(`select jobs.cron_next('0 9 * * *', '2030-01-01Z', 'Europe/Paris') as r`)).toEqual([{ r: new Date('2030-01-01T08:00:00Z') }]);
  });
});
