// jobs.maintain deletes the jobs.tick_miss rows (claims' misses of a
// bounded queue's tick) whose tick is no longer due, at most max_rows a
// pass. Their count was in no answer, so jobs.run_maintenance (what pg_cron
// runs) and TS maintain() stopped after one full share of them and said
// they had caught up, the rest left to the next run. A pass counts them
// ("misses"), and one that deleted a full share is not the last.
import { beforeEach, expect, it } from 'vitest';
import { maintain } from '../src/index.js';
import { testDb } from './support/db.js';
import { minute } from './support/schedule-clock.js';

const db = await testDb();
const sql = db.sql;

beforeEach(async () => {
  await sql('truncate jobs.tick_miss, jobs.recurring');
});

/** n misses of ticks of a schedule since removed: nothing reads them. */
const staleMisses = (n: number) => sql(
  `insert into jobs.tick_miss select 'gone', $2::timestamptz + g * interval '1 minute', $2 from generate_series(1, $1::int) g`,
  [n, minute(0)]);
const missesLeft = async () => (await sql<{ n: number }>(`select count(*)::int as n from jobs.tick_miss`))[0]!.n;

it('jobs.maintain counts the misses it deletes', async () => {
  await staleMisses(3);
  expect(await sql(`select jobs.maintain(max_rows => 2) as r`))
    .toEqual([{ r: { expired: 0, ticks: 0, deleted: 0, archived: 0, windows: 0, misses: 2, left: 0 } }]);
  expect(await missesLeft()).toBe(1);
});

it('jobs.run_maintenance goes on while a pass deletes a full share of misses, and says when it has caught up', async () => {
  await staleMisses(10_500);  // passes of 10,000
  // Unfixed: one pass, 'caughtUp' true, 500 misses left.
  expect(await sql(`call jobs.run_maintenance('7 days', false, 50)`)).toEqual([{ report:
    { expired: 0, ticks: 0, deleted: 0, archived: 0, windows: 0, misses: 10_500, left: 0, passes: 2, caughtUp: true } }]);
  expect(await missesLeft()).toBe(0);
});

it('TS maintain() goes on while a pass deletes a full share of misses', async () => {
  await staleMisses(250);
  expect(await maintain(db.driver, { maxRows: 100 }))
    .toEqual({ expired: 0, ticks: 0, deleted: 0, archived: 0, windows: 0, misses: 250, left: 0, passes: 3, caughtUp: true });
  expect(await missesLeft()).toBe(0);
});
