// A claim that fails to publish a bounded queue's tick records the miss
// (jobs.tick_miss: schedule, due, missed_at), and later claims' waits for
// that tick grow from it. The row outlived its schedule: removed and added
// again (jobs.unschedule, then jobs.schedule of the same name) with a tick
// at the same due time, the new schedule's first claim read the old miss
// and waited longer. A schedule's misses go when it is removed or its timing
// (expression, zone, runner) changes; a call that changes nothing keeps them.
// Moved to another queue, it kept them too: a miss is a claim's failure to
// take the old queue's publishers' lock, and the new queue's first claim
// waited up to ten times the setting for its tick. A move drops them.
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { minute, T0 } from './support/schedule-clock.js';

const db = await testDb();
const misses = async () => db.sql(`select schedule, due from jobs.tick_miss order by schedule, due`);
const missed = (schedule: string) => db.sql(`insert into jobs.tick_miss values ($1, $2, $2)`, [schedule, minute(10)]);

it('removed and added again with a tick at the same due time, a schedule has no miss of the old one', async () => {
  await db.sql(`select jobs.create_queue('capped', max_size => 100)`);
  const add = () => db.sql(`select jobs.schedule('sweep', '*/10 * * * *', 'sweep.run', queue => 'capped', now => $1)`, [T0]);
  await add();
  await missed('sweep');
  await add();  // the same definition again: its pending tick's miss stays
  expect(await misses()).toEqual([{ schedule: 'sweep', due: new Date(minute(10)) }]);
  await db.sql(`select jobs.unschedule('sweep')`);
  await add();
  expect(await db.sql(`select next_run_at from jobs.recurring where name = 'sweep'`)).toEqual([{ next_run_at: new Date(minute(10)) }]);
  // Unfixed: [{ schedule: 'sweep', due: minute 10 }].
  expect(await misses()).toEqual([]);
});

it("a schedule whose expression or zone changes loses its misses; another schedule's stay", async () => {
  await db.sql(`select jobs.schedule('other', '*/10 * * * *', 'other.run', runner => 'drains', now => $1)`, [T0]);
  await missed('other');
  for (const change of [`'*/5 * * * *', 'sweep.run', runner => 'drains'`, `'*/5 * * * *', 'sweep.run', tz => 'Europe/Paris'`]) {
    await db.sql(`select jobs.schedule('sweep', '*/10 * * * *', 'sweep.run', runner => 'drains', now => $1)`, [T0]);
    await db.sql(`delete from jobs.tick_miss where schedule = 'sweep'`);
    await missed('sweep');
    await db.sql(`select jobs.schedule('sweep', ${change}, now => $1)`, [T0]);
    expect(await misses()).toEqual([{ schedule: 'other', due: new Date(minute(10)) }]);
  }
});

it('a schedule moved to another queue loses its misses; one given the same queue (null or its name) keeps them', async () => {
  await db.sql(`select jobs.create_queue(q, max_size => 100) from unnest(array['capped', 'capped2']) q
                where not exists (select from jobs.queue where name = q)`);
  await db.sql(`truncate jobs.tick_miss, jobs.recurring`);
  const move = (queue: string | null) =>
    db.sql(`select jobs.schedule('sweep', '*/10 * * * *', 'sweep.run', queue => $2, runner => 'drains', now => $1)`, [T0, queue]);
  await move(null);
  await missed('sweep');
  await move('default');  // the queue it was in, named
  expect(await misses()).toEqual([{ schedule: 'sweep', due: new Date(minute(10)) }]);
  await move('capped');
  // Unfixed: [{ schedule: 'sweep', due: minute 10 }], the old queue's miss.
  expect(await misses()).toEqual([]);
  await missed('sweep');
  await move('capped2');
  expect(await misses()).toEqual([]);
  expect(await db.sql(`select queue, next_run_at from jobs.recurring`)).toEqual([{ queue: 'capped2', next_run_at: new Date(minute(10)) }]);
});
