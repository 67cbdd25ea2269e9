// jobs.schedule changing a drain-run schedule (its expression, its zone)
// on a clock behind the tick a claim has already published: `now` is the
// transaction's start (jobs.clock), so a deploy that calls jobs.schedule in
// a transaction opened before that claim committed reads the row after it.
// The new expression's first tick is the first after the last one
// published, never that one again. Before, a changed expression started
// from the call's now only, so the tick the claim had published was due
// again and published twice.
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const T0 = '2030-01-01T00:00:00Z';
const at = (seconds: number) => new Date(Date.parse(T0) + seconds * 1000).toISOString();

const ticks = async () => (await sql<{ tick: string }>(
  `select attributes->>'tick' as tick from jobs.job_queue where task = 'e.run' order by job_id`)).map((r) => r.tick);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
  await sql(`select jobs.schedule('e', '* * * * *', 'e.run', runner => 'drains', now => $1)`, [at(0)]);
  // A claim at 00:01 publishes the 00:01 tick.
  expect(await sql(`select jobs.publish_due_schedules($1) as n`, [at(60)])).toEqual([{ n: 1 }]);
});

describe('jobs.schedule changing a schedule on a clock behind its last tick', () => {
  for (const [what, change] of [
    ['its expression respelled', `select jobs.schedule('e', '*/1 * * * *', 'e.run', runner => 'drains', now => $1)`],
    ['another expression', `select jobs.schedule('e', '0-59 * * * *', 'e.run', runner => 'drains', now => $1)`],
    ['its zone', `select jobs.schedule('e', '* * * * *', 'e.run', runner => 'drains', tz => 'Europe/Paris', now => $1)`],
    ['a recurrence rule', `select jobs.schedule('e', 'FREQ=MINUTELY', 'e.run', runner => 'drains', now => $1)`],
  ] as const) {
    it(`(${what}) goes on after the tick published, which is not published again`, async () => {
      // In a transaction that began at 00:00:30, before the claim.
      await sql(change, [at(30)]);
      expect(await sql(`select next_run_at, last_run_at from jobs.recurring`))
        .toEqual([{ next_run_at: new Date(at(120)), last_run_at: new Date(at(60)) }]);
      await sql(`select jobs.publish_due_schedules($1)`, [at(120)]);
      expect(await ticks()).toEqual(['2030-01-01T00:01:00.000Z', '2030-01-01T00:02:00.000Z']);
    });
  }

  it('on a clock ahead of it, the new expression starts from now, as before', async () => {
    await sql(`select jobs.schedule('e', '*/5 * * * *', 'e.run', runner => 'drains', now => $1)`, [at(90)]);
    expect(await sql(`select next_run_at from jobs.recurring`)).toEqual([{ next_run_at: new Date(at(300)) }]);
  });
});
