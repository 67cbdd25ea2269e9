// jobs.maintain outside READ COMMITTED (sql/0041) whose snapshot is stale
// for the rows it lists: another pass took them and committed after this
// pass's snapshot. Each is left to that pass, and the pass says so: its
// "left" counts them, and neither jobs.run_maintenance nor TS maintain()
// calls such a pass caught up (0 done read as "nothing more to do", and a
// loop "until caught up" stopped with a backlog behind). The pass stays
// bounded in the subtransactions it opens (more than 64 live in one
// transaction overflow its PGPROC cache, and every other session's
// snapshots slow down). Real sessions on a real PostgreSQL.
import { beforeEach, expect, it } from 'vitest';
import { maintain } from '../src/index.js';
import { testDb } from './support/db.js';
import { lockSessions, outcome } from './support/lock-sessions.js';
import { T0 } from './support/schedule-clock.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.job_archive, jobs.throttle, jobs.recurring, jobs.tick_miss');
});

/** Ended jobs 1..n, ended 8 days before `at` (past a 7-day retention), in job_id order. */
const oldJobs = (n: number, at = T0) => sql(
  `insert into jobs.job (job_id, task, status, attempts, priority, max_retries, timeout, scheduled_at, created_at, ended_at)
   select g, 'x.y', 'success', 1, 0, 3, 60, $2::timestamptz - interval '9 days', $2::timestamptz - interval '9 days',
          $2::timestamptz - interval '8 days' + g * interval '1 ms'
   from generate_series(1, $1::int) g`, [n, at]);

/** An app session in a REPEATABLE READ transaction, its snapshot taken. */
async function snapshot() {
  const app = await session();
  await app.query('begin isolation level repeatable read');
  await app.query('select count(*) from jobs.job');
  return app;
}

const jobsLeft = async () => (await sql<{ n: number }>('select count(*)::int as n from jobs.job'))[0]!.n;

it('a pass that finds every row it lists taken since its snapshot does none, says how many it left, and is not caught up', async () => {
  await oldJobs(6);
  const app = await snapshot();
  // Another pass takes the three oldest, commits.
  expect(await sql(`select jobs.maintain(now => '${T0}', max_rows => 3) as r`)).toMatchObject([{ r: { deleted: 3 } }]);
  const answer = await outcome(app.query(`select jobs.maintain(now => '${T0}', max_rows => 3) as r`));
  await app.query('commit');
  // Unfixed: { deleted: 0, ... } with nothing saying 3 were left: caught up, three jobs behind.
  expect(answer).toEqual([{ r: { expired: 0, ticks: 0, deleted: 0, archived: 0, windows: 0, misses: 0, left: 3 } }]);
  expect(await jobsLeft()).toBe(3);
});

it('TS maintain() in a stale snapshot reports the rows left and not caught up', async () => {
  await oldJobs(6, new Date().toISOString());  // maintain() passes no clock
  const app = await snapshot();
  await sql(`select jobs.maintain(max_rows => 3)`);
  // Its passes share the app's snapshot (docs: not in a transaction of your own): each leaves the same three.
  const report = await maintain(app, { retentionSeconds: 0, maxRows: 3, budgetMs: 200 });
  await app.query('commit');
  // Unfixed: caughtUp true after one pass that did nothing.
  expect(report).toMatchObject({ deleted: 0, caughtUp: false });
  expect(report.left).toBe(3 * report.passes);
  // A pass of its own, its snapshot new, does the rest.
  expect(await maintain(db.driver, { retentionSeconds: 0, maxRows: 3 })).toMatchObject({ deleted: 3, left: 0, caughtUp: true });
});

it('a pass where every other listed row changed since its snapshot opens a bounded number of subtransactions', async () => {
  await oldJobs(400);
  const app = await snapshot();
  await sql(`update jobs.job set error = 'x' where job_id % 2 = 0`);  // every other row changed, committed
  // xids given out while the pass runs (the observer's snapshot takes none): its subtransactions that wrote or locked.
  const xmax = async () => BigInt((await sql<{ x: string }>('select pg_snapshot_xmax(pg_current_snapshot())::text as x'))[0]!.x);
  const before = await xmax();
  const answer = await outcome(app.query(`select jobs.maintain(now => '${T0}') as r`));
  const xids = Number(await xmax() - before);
  await app.query('commit');
  // Unfixed: 406 (each unchanged row done in a block of its own, each changed one failing alone too).
  expect(xids).toBeLessThan(64);
  const r = (answer as [{ r: { deleted: number; left: number } }])[0].r;
  // Every job done or left, none twice; the left ones done by the next pass.
  expect(r.deleted + r.left).toBe(400);
  expect(r.deleted).toBeGreaterThan(0);
  expect(await sql(`select jobs.maintain(now => '${T0}') as r`)).toMatchObject([{ r: { deleted: r.left, left: 0 } }]);
  expect(await jobsLeft()).toBe(0);
});

it('TS maintain() inside a REPEATABLE READ transaction of its caller stops after two passes that only left rows, not at its budget', async () => {
  await oldJobs(6, new Date().toISOString());
  const app = await snapshot();
  await sql(`update jobs.job set error = 'x' where job_id = 2`);  // changed after the app's snapshot, committed
  // Pass 1 does the other five and leaves job 2; every later pass shares the snapshot and leaves it again.
  const report = await maintain(app, { retentionSeconds: 0, maxRows: 6, budgetMs: 5_000 });
  await app.query('commit');
  // Unfixed: a pass after pass until the 5 s budget ran out (hundreds here), the same row left by each.
  expect(report).toMatchObject({ deleted: 5, left: 3, passes: 3, caughtUp: false });
  expect(await maintain(db.driver, { retentionSeconds: 0, maxRows: 6 })).toMatchObject({ deleted: 1, left: 0, caughtUp: true });
});

it('rows another session holds before a changed one are not counted as changed: the pass does the rest', async () => {
  await oldJobs(100);
  const holder = await session();
  await holder.query('begin');
  await holder.query('select from jobs.job where job_id <= 8 for update');  // a pass or claim at work on them
  const app = await snapshot();
  await sql(`update jobs.job set error = 'x' where job_id = 9`);  // one row changed since the snapshot, committed
  const answer = await outcome(app.query(`select jobs.maintain(now => '${T0}') as r`));
  await app.query('commit');
  await holder.query('rollback');
  // Unfixed: { deleted: 0, left: 100 }: each held row blamed as changed, eight in a row gave the pass up.
  expect(answer).toMatchObject([{ r: { deleted: 91, left: 1 } }]);  // the held eight skipped, as under READ COMMITTED
  expect(await jobsLeft()).toBe(9);
});
