// jobs.drain_sql under a statement_timeout (set per role or database on
// managed PostgreSQL): the whole CALL is one statement to it, so the drain
// must end before it, with its report, rather than be cancelled mid-job.
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { testDb } from './support/db.js';

const db = await testDb();
const session = new pg.Client({ connectionString: db.url });

beforeAll(async () => {
  await session.connect();
  await db.sql(`create schema if not exists app;
    create table app.seen (id serial primary key, b jsonb);
    create function app.slow(b jsonb) returns void language plpgsql as $$
    begin perform pg_sleep((b->>'s')::float8); insert into app.seen (b) values (b); end $$;
    select jobs.allow_sql_task('app.slow');`);
});
afterAll(() => session.end());

it('ends by 80% of statement_timeout with its report, claiming only jobs that fit before it', async () => {
  // 4 jobs of 1 s each would take the call past the 4 s statement_timeout.
  await db.sql(`select jobs.publish('sql:app.slow', '{"s":1}', timeout_seconds => 2) from generate_series(1, 4)`);
  await session.query(`set statement_timeout = '4s'`);
  const { rows } = await session.query<{ report: Record<string, unknown> }>(`call jobs.drain_sql(10, 50)`);
  const report = rows[0]!.report;
  // The budget is 3.2 s: a 2 s job fits at 0 s and at about 1 s, not at about 2 s.
  expect(report).toMatchObject({ failed: 0, retried: 0, stale: 0, stoppedBy: 'deadline' });
  expect(report.claimed).toBe(report.succeeded);
  expect(report.claimed as number).toBeGreaterThan(0);
  expect(report.claimed as number).toBeLessThan(4);
  // What it did not claim is untouched: no lease, no attempt spent.
  expect((await db.sql<{ n: number }>(`select count(*)::int as n from jobs.job_queue where attempt = 0 and lease_until is null`))[0]!.n)
    .toBe(4 - (report.claimed as number));
  expect((await db.sql<{ n: number }>(`select count(*)::int as n from app.seen`))[0]!.n).toBe(report.claimed);
});
