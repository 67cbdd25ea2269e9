// A recurrence rule's DTSTART TZID and the schedule's tz name a zone in any
// case, as tz alone does (pg_timezone_names' spelling is stored). Before,
// TZID=europe/paris with tz => 'Europe/Paris' was refused as "the rule's
// DTSTART names TZID 'europe/paris'", a zone other than the schedule's.
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
});

describe("a rule's TZID in another case than the schedule's tz", () => {
  for (const [tzid, tz] of [['europe/paris', 'Europe/Paris'], ['EUROPE/PARIS', 'europe/paris'], ['europe/paris', null]] as const) {
    it(`TZID=${tzid} with tz ${tz}: taken, stored as Europe/Paris, ticks at 09:00 Paris`, async () => {
      const rule = `DTSTART;TZID=${tzid}:20300101T090000\nRRULE:FREQ=DAILY`;
      expect(await sql(`select jobs.schedule('p', $1, 'p.run', tz => $2, now => '2030-01-01T12:00Z')`, [rule, tz]))
        .toEqual([{ schedule: 'drains' }]);
      expect(await sql(`select tz, next_run_at from jobs.schedules`))
        .toEqual([{ tz: 'Europe/Paris', next_run_at: new Date('2030-01-02T08:00:00Z') }]);
      // Its ticks go on (each tick parses the rule again).
      await sql(`select jobs.publish_due_schedules('2030-01-02T08:00Z')`);
      expect(await sql(`select next_run_at from jobs.recurring`)).toEqual([{ next_run_at: new Date('2030-01-03T08:00:00Z') }]);
      // And again with the same arguments changes nothing.
      await sql(`select jobs.schedule('p', $1, 'p.run', tz => $2, now => '2030-01-02T09:00Z')`, [rule, tz]);
      expect(await sql(`select next_run_at from jobs.recurring`)).toEqual([{ next_run_at: new Date('2030-01-03T08:00:00Z') }]);
    });
  }

  it('another zone is still refused, naming tz', async () => {
    await expect(sql(`select jobs.schedule('p', $1, 'p.run', tz => 'America/New_York')`, ['DTSTART;TZID=europe/paris:20300101T090000\nRRULE:FREQ=DAILY']))
      .rejects.toMatchObject({ code: 'PDC03', column: 'tz', message: expect.stringMatching(/^tz: is 'America\/New_York', but the rule's DTSTART names TZID 'Europe\/Paris'/) });
  });
});
