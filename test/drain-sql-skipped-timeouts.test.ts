// jobs.drain_sql reports the jobs its last claim left for their timeout as
// drain() does (skipped, skippedTimeouts: what budget would take them): a
// scheduled drain_sql with a budget shorter than its jobs' timeouts ran
// nothing, and its report said only stoppedBy 'deadline'. Read by the one
// query that already told 'deadline' from 'empty' (jobs.sql_unfit), once,
// when a claim found nothing: no work per job.
// Before: no skipped nor skippedTimeouts in the report.
// A due job whose timeout is not under the call's whole budget is never
// claimed by any such call: the report said so, but pg_cron recorded
// 'succeeded' and the jobs piled up. drain_sql now runs what fits, then
// raises PDC03 naming budget, the task, its timeout and the budget.
// Before: no error (the call returned its report).
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { sqlErrorOf, testDb } from './support/db.js';

const db = await testDb();
const session = new pg.Client({ connectionString: db.url });
const drainSql = async (budget: number, queue = 'sqlq') =>
  (await session.query<{ report: Record<string, unknown> }>(`call jobs.drain_sql(10, ${budget}, '${queue}')`)).rows[0]!.report;
const drainSqlError = (budget: number, queue: string) => sqlErrorOf((text) => session.query(text), `call jobs.drain_sql(10, ${budget}, '${queue}')`);
const count = async (text: string) => (await db.sql<{ n: number }>(`select count(*)::int as n from ${text}`))[0]!.n;

beforeAll(async () => {
  await session.connect();
  await db.sql(`create schema if not exists app;
    create table app.seen (id serial primary key, b jsonb);
    create function app.note(b jsonb) returns void language sql as $$ insert into app.seen (b) values (b) $$;
    select jobs.allow_sql_task('app.note');
    select jobs.create_queue('sqlq');`);
});
afterAll(() => session.end());

it('a due job whose timeout is not under the whole budget: the rest runs and stays, then PDC03 names the task, its timeout and the budget', async () => {
  await db.sql(`create function app.long(b jsonb) returns void language sql as $$ insert into app.seen (b) values (b) $$;
    select jobs.allow_sql_task('app.long');
    select jobs.publish('sql:app.note', '{}', timeout_seconds => 600, queue => 'sqlq');
    select jobs.publish('sql:app.long', '{}', timeout_seconds => 900, queue => 'sqlq');
    select jobs.publish('sql:app.note', '{"fits": true}', timeout_seconds => 1, queue => 'sqlq')`);
  const e = await drainSqlError(300, 'sqlq');
  expect([e.code, e.column]).toEqual(['PDC03', 'budget']);
  expect(e.message).toBe('budget: 300 seconds is not over the 900-second timeout of a due job of task sql:app.long, '
    + 'and drain_sql claims only jobs whose timeout fits the budget left: it never runs that job');
  expect(e.hint).toMatch(/^Call jobs\.drain_sql with a budget over 900 seconds/);
  expect(JSON.parse(e.detail!.replace(/^[^{]*/, ''))).toMatchObject({ claimed: 1, succeeded: 1, stoppedBy: 'deadline', skipped: 2,
    skippedTimeouts: { shortestSeconds: 600, longestSeconds: 900 } });
  // The job that fit ran, its work and ack committed; the two left are untouched.
  expect(await db.sql(`select b from app.seen`)).toEqual([{ b: { fits: true } }]);
  expect(await count(`jobs.job where status = 'success'`)).toBe(1);
  expect(await count(`jobs.job_queue where attempt = 0 and lease_until is null`)).toBe(2);
  // A budget over them takes them, and an empty queue skips none.
  expect(await drainSql(1000)).toMatchObject({ claimed: 2, succeeded: 2, stoppedBy: 'empty', skipped: 0, skippedTimeouts: null });
});

it('a timeout equal to the budget never fits (the budget left at a claim is less): refused too, and no job is claimed', async () => {
  await db.sql(`select jobs.create_queue('equal'); select jobs.publish('sql:app.note', '{}', timeout_seconds => 5, queue => 'equal')`);
  const e = await drainSqlError(5, 'equal');
  expect([e.code, e.column]).toEqual(['PDC03', 'budget']);
  expect(e.message).toMatch(/^budget: 5 seconds is not over the 5-second timeout of a due job of task sql:app\.note,/);
  expect(await count(`jobs.job_queue where queue = 'equal' and attempt = 0 and lease_until is null`)).toBe(1);
});

it('a budget cut to 80% of statement_timeout says so, and the hint names the setting', async () => {
  await db.sql(`select jobs.create_queue('cut'); select jobs.publish('sql:app.note', '{}', timeout_seconds => 20, queue => 'cut')`);
  await session.query(`set statement_timeout = '20s'`);
  try {
    const e = await drainSqlError(50, 'cut');
    expect([e.code, e.column]).toEqual(['PDC03', 'budget']);
    expect(e.message).toMatch(/^budget: 16 seconds \(50 cut to 80% of statement_timeout\) is not over the 20-second timeout of a due job of task sql:app\.note,/);
    expect(e.hint).toMatch(/statement_timeout over 25 seconds/);
  } finally {
    await session.query(`reset statement_timeout`);
  }
  expect(await drainSql(50, 'cut')).toMatchObject({ claimed: 1, succeeded: 1, stoppedBy: 'empty' });
});

it('names the skipped jobs that fit the whole budget but not what was left of it, and that budget, with no error', async () => {
  await db.sql(`create function app.nap(b jsonb) returns void language sql as $$ select pg_sleep((b->>'s')::float8) $$;
    select jobs.allow_sql_task('app.nap');
    select jobs.create_queue('left');
    select jobs.publish('sql:app.nap', '{"s": 2}', scheduled_at => now() - interval '1 minute', timeout_seconds => 10, queue => 'left');
    select jobs.publish('sql:app.nap', '{"s": 0}', timeout_seconds => t, queue => 'left') from unnest(array[28.5, 29.5]) t`);
  // The first runs 2 s of the 30: the two left need more than the 28 left.
  const report = await drainSql(30, 'left');
  expect(report).toMatchObject({ claimed: 1, succeeded: 1, stoppedBy: 'deadline', skipped: 2,
                                 skippedTimeouts: { shortestSeconds: 28.5, longestSeconds: 29.5 } });
  const { budgetSeconds } = report.skippedTimeouts as { budgetSeconds: number };
  expect(budgetSeconds).toBeGreaterThanOrEqual(0);
  expect(budgetSeconds).toBeLessThan(28.5);
});

it('a budget spent by a job that ran past it takes a last look with none: every due job left is skipped', async () => {
  await db.sql(`select jobs.create_queue('spent', retry_delay => 3600, retry_backoff => 'fixed');`);
  // The first runs 2.2 s on a 1-second lease in a 2-second budget: nacked as timed out, none left to claim with
  // (the two left fit a 2-second budget: no error).
  await db.sql(`select jobs.publish('sql:app.nap', '{"s": 2.2}', scheduled_at => now() - interval '1 minute', timeout_seconds => 1, queue => 'spent');
    select jobs.publish('sql:app.nap', '{"s": 0}', timeout_seconds => t, queue => 'spent') from unnest(array[1, 1.5]) t`);
  const report = (await session.query<{ report: Record<string, unknown> }>(`call jobs.drain_sql(10, 2, 'spent')`)).rows[0]!.report;
  expect(report).toMatchObject({ claimed: 1, retried: 1, stoppedBy: 'deadline', skipped: 2,
                                 skippedTimeouts: { shortestSeconds: 1, longestSeconds: 1.5, budgetSeconds: 0 } });
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
    expect(unfit).toEqual({ count: 1, shortest: 600, longest: 600, longestTask: 'sql:app.note' });
    // About 20 whatever the table holds (index descents, the one due job); one statement over the queue read 71 here.
    expect(rows[0].blocks).toBeLessThan(40);
  } finally {
    await client.end();
  }
});

// The claim that found nothing ended stale leases and expired jobs first (jobs.pick: any queue's): the raise rolled that
// back, at every call while the too-long job waits, so a job whose lease passed stayed 'running' and one past its
// expires_at stayed pending. Both now end (committed before the raise).
it('what the last claim ended before it found nothing (a passed lease, a job past its expiry) stays ended after PDC03', async () => {
  await db.sql(`select jobs.create_queue('stale'); select jobs.create_queue('stale_other');
    select jobs.publish('sql:app.note', '{}', scheduled_at => now() - interval '2 hours', timeout_seconds => 1, max_retries => 0, queue => 'stale');
    select jobs.claim(1, 'sql:%', null, now() - interval '1 hour', 'stale');
    select jobs.publish('sql:app.long', '{}', timeout_seconds => 900, queue => 'stale');
    select jobs.publish('other.task', '{}', queue => 'stale_other', expires_at => clock_timestamp() + interval '10 milliseconds');
    select pg_sleep(0.05)`);
  const e = await drainSqlError(300, 'stale');
  expect([e.code, e.column]).toEqual(['PDC03', 'budget']);
  expect(await db.sql(`select queue, status, error from jobs.job where queue like 'stale%' order by queue`)).toEqual([
    { queue: 'stale', status: 'failure', error: expect.any(String) },
    { queue: 'stale_other', status: 'failure', error: expect.stringMatching(/^expired: not started before/) }]);
  expect(await count(`jobs.job_queue where queue like 'stale%'`)).toBe(1);
});
