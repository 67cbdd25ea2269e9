// jobs.drain_sql reports the jobs its last claim left for their timeout as
// drain() does (skipped, skippedTimeouts: what budget would take them): a
// scheduled drain_sql with a budget shorter than its jobs' timeouts ran
// nothing, and its report said only stoppedBy 'deadline'. Read by the one
// query that already told 'deadline' from 'empty' (jobs.sql_unfit), once,
// when a claim found nothing: no work per job.
// Before: no skipped nor skippedTimeouts in the report.
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { testDb } from './support/db.js';

const db = await testDb();
const session = new pg.Client({ connectionString: db.url });
const drainSql = async (budget: number) =>
  (await session.query<{ report: Record<string, unknown> }>(`call jobs.drain_sql(10, ${budget}, 'sqlq')`)).rows[0]!.report;

beforeAll(async () => {
  await session.connect();
  await db.sql(`create schema if not exists app;
    create table app.seen (id serial primary key, b jsonb);
    create function app.note(b jsonb) returns void language sql as $$ insert into app.seen (b) values (b) $$;
    select jobs.allow_sql_task('app.note');
    select jobs.create_queue('sqlq');`);
});
afterAll(() => session.end());

it('names the skipped jobs and their shortest and longest timeout, and the budget they exceeded', async () => {
  await db.sql(`select jobs.publish('sql:app.note', '{}', timeout_seconds => t, queue => 'sqlq') from unnest(array[1, 600, 900]) t`);
  const report = await drainSql(300);
  expect(report).toMatchObject({ claimed: 1, succeeded: 1, stoppedBy: 'deadline', skipped: 2,
                                 skippedTimeouts: { shortestSeconds: 600, longestSeconds: 900 } });
  const { budgetSeconds } = report.skippedTimeouts as { budgetSeconds: number };
  expect(budgetSeconds).toBeGreaterThan(0);
  expect(budgetSeconds).toBeLessThanOrEqual(300);
  // A budget that fits them takes them, and an empty queue skips none.
  expect(await drainSql(1000)).toMatchObject({ claimed: 2, succeeded: 2, stoppedBy: 'empty', skipped: 0, skippedTimeouts: null });
});
