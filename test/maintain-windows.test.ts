// Maintenance catches up with ended throttle windows (sql/0032) as it does
// with ended jobs: a pass that deleted a full share of them is not the last,
// in jobs.run_maintenance (what pg_cron runs) and in TS maintain().
import { beforeEach, describe, expect, it } from 'vitest';
import { maintain } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.job_archive, jobs.throttle');
});

/** n throttle windows that ended an hour ago, and no job. */
const endedWindows = (n: number) => sql(
  `insert into jobs.throttle (dedupe_key, job_id, until)
   select 'k' || g, g, now() - interval '1 hour' from generate_series(1, $1::int) g`, [n]);
const windowsLeft = async () => (await sql<{ n: number }>(`select count(*)::int as n from jobs.throttle`))[0]!.n;

describe('ended throttle windows past one pass', () => {
  it('jobs.maintain counts the windows it deletes', async () => {
    await endedWindows(3);
    expect(await sql(`select jobs.maintain(max_rows => 2) as r`))
      .toEqual([{ r: { expired: 0, ticks: 0, deleted: 0, archived: 0, windows: 2, misses: 0, left: 0 } }]);
    expect(await windowsLeft()).toBe(1);
  });

  it('jobs.run_maintenance goes on while a pass deletes a full share, and says when it has caught up', async () => {
    await endedWindows(25_000); // passes of 10,000
    expect(await sql(`call jobs.run_maintenance('7 days', false, 50)`)).toEqual([{ report:
      { expired: 0, ticks: 0, deleted: 0, archived: 0, windows: 25_000, misses: 0, left: 0, passes: 3, caughtUp: true } }]);
    expect(await windowsLeft()).toBe(0);
  });

  it('TS maintain() goes on while a pass deletes a full share, and says when it has caught up', async () => {
    await endedWindows(250);
    expect(await maintain(db.driver, { maxRows: 100 }))
      .toEqual({ expired: 0, ticks: 0, deleted: 0, archived: 0, windows: 250, misses: 0, left: 0, passes: 3, caughtUp: true });
    expect(await windowsLeft()).toBe(0);
  });

  it('a windows-only backlog the budget cuts short is reported as not caught up', async () => {
    await endedWindows(250);
    // Each delete from jobs.throttle sleeps 50 ms: the first pass alone outlasts a 10 ms budget.
    await sql(`create function public.slow() returns trigger language plpgsql as $$ begin perform pg_sleep(0.05); return null; end $$;
      create trigger slow after delete on jobs.throttle for each statement execute function public.slow();`);
    try {
      expect(await maintain(db.driver, { maxRows: 100, budgetMs: 10 }))
        .toEqual({ expired: 0, ticks: 0, deleted: 0, archived: 0, windows: 100, misses: 0, left: 0, passes: 1, caughtUp: false });
    } finally {
      await sql(`drop trigger slow on jobs.throttle; drop function public.slow()`);
    }
    expect(await windowsLeft()).toBe(150);
  });
});
