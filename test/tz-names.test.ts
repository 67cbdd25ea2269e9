// Time zone names: TypeScript (checkTz, Intl before any round trip) and the
// database (jobs.check_tz, sql/0020) take the same ones. Before, the database
// took the files of its zone directory that name no zone, which Intl refuses
// (posix/… copies, posixrules, Factory, localtime: the server's own zone),
// and TS passed on the zones Intl takes that PostgreSQL reads as
// abbreviations (CET, EST: fixed offsets there), which the database refused.
// Every name of pg_timezone_names and Intl.supportedValuesOf, on a real PostgreSQL.
import { beforeAll, describe, expect, it } from 'vitest';
import { checkTz, schedule } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;

const tsTakes = (tz: string) => {
  try {
    checkTz(tz);
    return true;
  } catch {
    return false;
  }
};

beforeAll(async () => {
  await sql(`create function public.db_takes(p_tz text, p_lookup boolean) returns boolean language plpgsql as $$
             begin perform jobs.check_tz(p_tz, p_lookup); return true; exception when sqlstate 'PDC03' then return false; end $$`);
});

describe('time zone names', () => {
  it('TS and the database take the same: every name PostgreSQL knows and every one Intl does', async () => {
    const pgNames = (await sql<{ name: string }>(`select name from pg_timezone_names`)).map((r) => r.name);
    const names = [...new Set([...pgNames, ...Intl.supportedValuesOf('timeZone'), 'cet', 'est', 'FACTORY', 'Localtime', 'posix/asia/tokyo'])];
    // Without the lookup (jobs.cron_next's way; jobs.schedule's looks the name up).
    const db = await sql<{ name: string; takes: boolean }>(`select n as name, public.db_takes(n, false) as takes from unnest($1::text[]) n`, [names]);
    const disagree = db.filter((r) => r.takes !== tsTakes(r.name)).map((r) => `${r.name}: db ${r.takes}`);
    // Before: some 600 (posix/…, posixrules, Factory, localtime taken by the database; CET, EST, … by TS).
    expect(disagree).toEqual([]);
    expect(names.length).toBeGreaterThan(1000);
  });

  it('refuses posix/…, posixrules, Factory and localtime naming tz (PDC03) in SQL, and spec.tz in TS: nothing written', async () => {
    const cases: [string, RegExp][] = [
      ['posix/Europe/Paris', /^tz: 'posix\/Europe\/Paris' is no IANA time zone name .*: give one such as 'Europe\/Paris'$/],
      ['Factory', /^tz: 'Factory' is no IANA time zone name/], ['localtime', /^tz: 'localtime' is no IANA/], ['posixrules', /^tz: 'posixrules' is no/],
    ];
    for (const [tz, message] of cases) {
      for (const call of [`select jobs.cron_next('0 9 * * *', now(), $1)`, `select jobs.schedule('z', '0 9 * * *', 'a.b', tz => $1)`]) {
        const e = await sqlErrorOf(sql, call, [tz]);
        expect([e.code, e.column], `${call} ${tz}`).toEqual(['PDC03', 'tz']);
        expect(e.message, tz).toMatch(message);
      }
      // A rule's TZID: its part named, as for any zone it refuses.
      const rule = await sqlErrorOf(sql, `select jobs.schedule('z', E'DTSTART;TZID=' || $1 || E':20300101T090000\\nRRULE:FREQ=DAILY', 'a.b')`, [tz]);
      expect([rule.code, rule.column, rule.message.split(' (in ')[0]], tz)
        .toEqual(['PDC01', 'cron', `cron: DTSTART TZID '${tz}' must be an IANA time zone name such as Europe/Paris`]);
      await expect(schedule(db.driver, { name: 'z', cron: '0 9 * * *', task: 'a.b', tz }), tz).rejects
        .toMatchObject({ code: 'invalid_argument', field: 'spec.tz', message: expect.stringMatching(/^spec\.tz: must be an IANA time zone name/) });
    }
    expect(() => checkTz('est', 'spec.tz')).toThrow(/^spec\.tz: 'est' is an abbreviation, which PostgreSQL reads as a fixed offset/);
    expect(await sql(`select count(*)::int as n from jobs.recurring`)).toEqual([{ n: 0 }]);
  });
});
