// SERIALIZABLE's read/write-dependency 40001 (detail 'Reason code: …') in a
// tick's publish is the whole transaction's, not one schedule's: a claim
// that is a dangerous structure's pivot fails so on every write. Caught as a
// changed row's 40001, it left the tick due and committed as if it had
// published every due tick (a drain did not send it again: the tick waited
// for the next claim, and a schedule without backfill then published one job
// for it and the tick due by then), and jobs.schedule's own tick was
// recorded as failed and dropped. Such a call now fails with that 40001,
// nothing written, as docs/scheduling.md says concurrent SERIALIZABLE claims
// may (a drain sends the claim again). Three real sessions on a real
// PostgreSQL.
import { beforeEach, expect, it } from 'vitest';
import { createQueue, defineTask } from '../src/index.js';
import { pgDriver } from '../src/db/pg.js';
import { testDb } from './support/db.js';
import { lockSessions, outcome } from './support/lock-sessions.js';
import { minute, T0 } from './support/schedule-clock.js';
import { asPivot } from './support/ssi-pivot.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.recurring, jobs.tick_miss');
  await sql(`select jobs.schedule('a', '*/10 * * * *', 'a.run', runner => 'drains', now => $1)`, [T0]);
});

/** call's rows or error (as text) in a SERIALIZABLE app transaction that is a dangerous structure's pivot (ssi-pivot.ts). */
async function asPivotOf(table: string, call: string) {
  const answer = await asPivot(session, table, async (app) => {
    const answer = await outcome(app.query(call));
    await app.query('commit').catch(() => {});
    return answer;
  });
  return typeof answer === 'string' ? answer : JSON.stringify(answer);
}

const jobs = async () => sql(`select task, scheduled_at from jobs.job_queue order by task, scheduled_at`);
const schedule = async () => sql(`select next_run_at, last_error, skipped_ticks::int from jobs.recurring`);

for (const table of ['jobs.job_queue', 'jobs.recurring']) {
  it(`a claim whose tick's writes to ${table} fail for read/write dependencies fails whole (40001), its tick due`, async () => {
    const answer = await asPivotOf(table, `select jobs.claim_json(1, 'nothing.%', null, '${minute(10)}')->>'count' as r`);
    // Unfixed: [{"r":"0"}], committed: the tick left due as another call's, though none had it.
    expect(answer).toMatch(/^error 40001 .*read\/write dependencies/);
    expect(await jobs()).toEqual([]);
    expect(await schedule()).toEqual([{ next_run_at: new Date(minute(10)), last_error: null, skipped_ticks: 0 }]);
    // Sent again (as a drain sends a claim rolled back whole), it publishes the tick at its minute.
    expect(await sql(`select jobs.claim_json(1, 'nothing.%', null, $1)->>'count' as r`, [minute(10)])).toEqual([{ r: '0' }]);
    expect(await jobs()).toEqual([{ task: 'a.run', scheduled_at: new Date(minute(10)) }]);
    expect(await schedule()).toEqual([{ next_run_at: new Date(minute(20)), last_error: null, skipped_ticks: 0 }]);
  });
}

it("jobs.schedule's own tick whose publish fails for read/write dependencies fails the call (40001), the tick not dropped", async () => {
  const answer = await asPivotOf('jobs.job_queue', `select jobs.schedule('a', '*/5 * * * *', 'a.run', runner => 'drains',
                                                                        now => '${minute(20)}') is not null as ok`);
  // Unfixed: [{"ok":true}], committed: the tick recorded as failed (last_error) and dropped, next_run_at 20:21.
  expect(answer).toMatch(/^error 40001 .*read\/write dependencies/);
  expect(await jobs()).toEqual([]);
  expect(await sql(`select cron, next_run_at, last_error from jobs.recurring`))
    .toEqual([{ cron: '*/10 * * * *', next_run_at: new Date(minute(10)), last_error: null }]);
});

// A drain's claim (its own transaction, under a database default of
// SERIALIZABLE) whose tick's publish fails so is sent again, as any claim
// rolled back whole: the tick is published and run by the same drain. A
// trigger raises that 40001 once, standing in for the dangerous structure.
it('a drain() whose claim fails so sends it again: the tick published and run', async () => {
  await sql(`create sequence ssi_once;
             create function ssi_once() returns trigger language plpgsql as $$
             begin
               if nextval('public.ssi_once') = 1 then  -- a sequence: the failure's rollback does not undo it
                 raise exception 'could not serialize access due to read/write dependencies among transactions'
                   using errcode = '40001', detail = 'Reason code: Canceled on identification as a pivot, during write.';
               end if;
               return new;
             end $$;
             create trigger ssi_once before insert on jobs.job_queue for each row execute function ssi_once()`);
  await sql(`update jobs.recurring set next_run_at = now() - interval '1 minute', task = 'tick', timeout = 5`);
  await sql(`alter database "${db.name}" set default_transaction_isolation = 'serializable'`);
  try {
    const driver = pgDriver(db.url, { max: 2 });
    try {
      const tick = defineTask('tick', async () => {});
      const report = await createQueue({ driver, tasks: { tick } }).drain(10, Date.now() + 10_000);
      // Unfixed: claimed 0 (the first claim committed, its tick left due, the drain found nothing).
      expect(report).toMatchObject({ claimed: 1, succeeded: 1 });
    } finally {
      await driver.close();
    }
  } finally {
    await sql(`alter database "${db.name}" reset default_transaction_isolation`);
    await sql('drop trigger ssi_once on jobs.job_queue; drop function ssi_once(); drop sequence ssi_once');
  }
  expect(await sql(`select next_run_at > now() as moved from jobs.recurring`)).toEqual([{ moved: true }]);
});
