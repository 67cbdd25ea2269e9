// The plans PostgreSQL picks for listJobs' statement over 100,000 ended jobs
// (analyzed) and a few thousand queued ones: a state reads only the table
// that can hold it, and queue + state + limit walks jobs.job's primary key
// back from the newest job, stopping at the limit, rather than reading the
// history whole. A body search does read it whole (README: Finding jobs).
import { beforeAll, expect, it } from 'vitest';
import type { Queryable } from '../src/db/driver.js';
import { listJobs, type ListJobsFilter } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;

/** listJobs' statement and parameters for filter, as sent. */
async function statementOf(filter: ListJobsFilter): Promise<{ text: string; params: readonly unknown[] }> {
  let sent: { text: string; params: readonly unknown[] } | undefined;
  const recording: Queryable = { query: (text, params = [], o) => {
    sent = { text, params };
    return db.driver.query(text, params, o);
  } };
  await listJobs(recording, filter);
  return sent!;
}

/** The plan's text as EXPLAIN (ANALYZE) prints it, with the values bound as node-postgres binds them. */
async function planOf(filter: ListJobsFilter): Promise<string> {
  const { text, params } = await statementOf(filter);
  const rows = await sql<{ 'QUERY PLAN': string }>(`explain (analyze, costs off, timing off, summary off) ${text}`, [...params]);
  return rows.map((r) => r['QUERY PLAN']).join('\n');
}

/**
 * The scans of jobs.job_queue and jobs.job that find the jobs: the plan
 * under the first Limit, up to the retry policy's look-ups by id (the
 * next node at that Limit's depth).
 */
function listScans(plan: string): string[] {
  const lines = plan.split('\n');
  const start = lines.findIndex((l) => l.includes('->  Limit'));
  const depth = lines[start]!.indexOf('->');
  const end = lines.findIndex((l, i) => i > start && l.indexOf('->') === depth);
  return lines.slice(start, end).join('\n').match(/(Seq Scan|Index Scan Backward using \w+|Index Scan using \w+|Bitmap Heap Scan) on (job_queue|job)\b/g) ?? [];
}

beforeAll(async () => {
  await sql(`select jobs.create_queue('q1'), jobs.create_queue('q2')`);
  await sql(`insert into jobs.job (job_id, task, body, status, error, attempts, priority, max_retries, timeout, scheduled_at,
                                   created_at, started_at, ended_at, queue)
             select g, 't.' || (g % 10), jsonb_build_object('user', g % 5000, 'n', g),
                    (array['success', 'success', 'success', 'failure', 'cancelled'])[1 + g % 5],
                    case when g % 5 = 3 then 'boom' end, 1, 0, 3, 60, now(), now(), now(), now(),
                    (array['default', 'q1', 'q2'])[1 + g % 3]
             from generate_series(1, 100000) g`);
  await sql(`select setval(pg_get_serial_sequence('jobs.job_queue', 'job_id'), 100001)`);
  await sql(`select jobs.publish('t.' || (g % 10), jsonb_build_object('user', g % 5000), queue => (array['default', 'q1', 'q2'])[1 + g % 3])
             from generate_series(1, 3000) g`);
  await sql('analyze jobs.job; analyze jobs.job_queue');
});

it('queue + ended state + limit: a walk of jobs.job\'s key from the newest job, never jobs.job_queue', async () => {
  const plan = await planOf({ queue: 'q1', state: 'failure', limit: 100 });
  expect(listScans(plan), plan).toEqual(['Index Scan Backward using job_pkey on job']);
  // It stopped at the limit: about 100 × 15 rows (q1's failures are one job in 15), not 100,000.
  const removed = Number(/Rows Removed by Filter: (\d+)/.exec(plan)?.[1]);
  expect(removed, plan).toBeLessThan(2000);
  expect(await listJobs(db.driver, { queue: 'q1', state: 'failure', limit: 100 })).toHaveLength(100);
});

it('a queued state reads jobs.job_queue only', async () => {
  const plan = await planOf({ queue: 'q1', state: 'pending', limit: 100 });
  expect(listScans(plan).every((s) => s.endsWith(' on job_queue')), plan).toBe(true);
  expect(listScans(plan), plan).not.toEqual([]);
});

it('a body search reads the history whole, as documented (by a sequential scan or a walk of the key: the planner picks)', async () => {
  const plan = await planOf({ body: { user: 42 }, limit: 100 });
  // The scan of jobs.job: the rows it answered and those its filter removed are all 100,000.
  const lines = plan.split('\n');
  const at = lines.findIndex((l) => / on job\b/.test(l) && !l.includes('job_queue'));
  expect(at, plan).toBeGreaterThan(-1);
  const answered = Number(/actual rows=(\d+)/.exec(lines[at]!)?.[1]);
  const removed = Number(/Rows Removed by Filter: (\d+)/.exec(lines.slice(at + 1, at + 3).join('\n'))?.[1]);
  expect(answered + removed, plan).toBe(100_000);
  // 20 ended jobs and 1 queued one have user 42.
  expect((await listJobs(db.driver, { body: { user: 42 } })).map((j) => j.body)).toEqual(
    Array.from({ length: 21 }, () => expect.objectContaining({ user: 42 })));
});
