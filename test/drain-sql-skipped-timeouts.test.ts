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

it('a budget spent by a job that ran past it takes a last look with none: every due job left is skipped', async () => {
  await db.sql(`create function app.nap(b jsonb) returns void language sql as $$ select pg_sleep((b->>'s')::float8) $$;
    select jobs.allow_sql_task('app.nap');
    select jobs.create_queue('spent', retry_delay => 3600, retry_backoff => 'fixed');`);
  // The first runs 2.2 s on a 1-second lease in a 2-second budget: nacked as timed out, none left to claim with.
  await db.sql(`select jobs.publish('sql:app.nap', '{"s": 2.2}', scheduled_at => now() - interval '1 minute', timeout_seconds => 1, queue => 'spent');
    select jobs.publish('sql:app.nap', '{"s": 0}', timeout_seconds => t, queue => 'spent') from unnest(array[1, 30]) t`);
  const report = (await session.query<{ report: Record<string, unknown> }>(`call jobs.drain_sql(10, 2, 'spent')`)).rows[0]!.report;
  expect(report).toMatchObject({ claimed: 1, retried: 1, stoppedBy: 'deadline', skipped: 2,
                                 skippedTimeouts: { shortestSeconds: 1, longestSeconds: 30, budgetSeconds: 0 } });
});

it('counts from each priority\'s head: neither jobs scheduled for later nor other queues\' jobs are read', async () => {
  await db.sql(`select jobs.create_queue('later'); select jobs.create_queue('elsewhere');
    select jobs.publish_bulk(array(select row('sql:app.note', '{}'::jsonb, now() + interval '1 day', 60, 0, 3)::jobs.bulk_job
                                   from generate_series(1, 10000)), queue => 'later');
    select jobs.publish_bulk(array(select row('other.task', '{}'::jsonb, null, 60, 0, 3)::jobs.bulk_job
                                   from generate_series(1, 10000)), queue => 'elsewhere');
    select jobs.publish('sql:app.note', '{}', timeout_seconds => 600, queue => 'later');
    analyze jobs.job_queue`);
  // The buffers read in the table and its indexes by one call, in its own transaction's statistics.
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    await client.query('begin');
    const unfit = (await client.query(`select jobs.sql_unfit('later', 50) as u`)).rows[0].u as unknown;
    const { rows } = await client.query(`select sum(pg_stat_get_xact_blocks_fetched(r))::int as blocks
      from (select 'jobs.job_queue'::regclass::oid as r union all select indexrelid from pg_index where indrelid = 'jobs.job_queue'::regclass) x`);
    await client.query('rollback');
    expect(unfit).toEqual({ count: 1, shortest: 600, longest: 600 });
    // About 20 whatever the table holds (index descents, the one due job); one statement over the queue read 71 here.
    expect(rows[0].blocks).toBeLessThan(40);
  } finally {
    await client.end();
  }
});
