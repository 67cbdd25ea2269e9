// An admin call that ends one waiting job (jobs.cancel, cancel_bulk, fail,
// complete, delete_jobs; purge_queue through cancel_bulk) and a redrive of
// a cancelled dependant (include_cancelled) find the job's own dependency
// rows by jobs.dependency.job_id: jobs.end_waiting and jobs.redrive delete
// them, jobs.lock_jobs locks them. The primary key leads with depends_on, so
// without an index of job_id each such statement read the whole table: with
// 40,000 blocked jobs waiting, every single cancel paid for all of them
// (about 0.3 s per call at 200,000 rows, measured). Plans captured with
// auto_explain inside the functions; the planner decides alone.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capturePlans, explainSession, scans } from '../bench/explain.js';
import { testDb } from './support/db.js';

const db = await testDb();
const client = new pg.Client({ connectionString: db.url });
const N = 40_000;

beforeAll(async () => {
  await client.connect();
  // N blocked jobs, two per parent (each parent scheduled a day ahead): a
  // dependency table of N rows over N / 2 distinct dependencies.
  await client.query(`select jobs.publish_arrays(array_fill('parent'::text, array[${N / 2}]),
                                                 delays => array_fill(86400::float8, array[${N / 2}]))`);
  await client.query(`insert into jobs.job_queue (task, scheduled_at, timeout, priority, max_retries, created_at, waiting_deps)
                      select 'child', now(), 60, 0, 3, now(), 1 from generate_series(1, ${N})`);
  await client.query(`insert into jobs.dependency (depends_on, job_id)
                      select p.job_id, c.job_id
                      from (select job_id, row_number() over (order by job_id) as k from jobs.job_queue where task = 'child') c
                      join (select job_id, row_number() over (order by job_id) as k from jobs.job_queue where task = 'parent') p
                        on p.k = (c.k + 1) / 2`);
  await client.query('analyze jobs.dependency');
  await client.query('analyze jobs.job_queue');
  await explainSession(client);
});
afterAll(() => client.end());

const child = async (n: number) => (await client.query<{ id: string }>(
  `select job_id::text as id from jobs.job_queue where task = 'child' order by job_id offset $1 limit 1`, [n])).rows[0]!.id;

/** The scans of jobs.dependency that read all of it, in the plans of `text`. */
async function wholeTableReads(text: string, params: unknown[]): Promise<string[]> {
  const plans = await capturePlans(client, async () => { await client.query(text, params); });
  expect(plans.length).toBeGreaterThan(0);
  return plans.flatMap((p) => scans(p).filter((s) => s === 'Seq Scan on dependency').map((s) => `${s} in: ${p.statement}`));
}

describe('ending one blocked job among many', () => {
  it.each([
    ['jobs.cancel', 'select jobs.cancel($1::bigint)'],
    ['jobs.cancel_bulk', 'select jobs.cancel_bulk(array[$1::bigint])'],
    ['jobs.fail', 'select jobs.fail(array[$1::bigint])'],
    ['jobs.complete', 'select jobs.complete(array[$1::bigint])'],
    ['jobs.delete_jobs', 'select * from jobs.delete_jobs(array[$1::bigint])'],
  ])('%s reads only its own dependency rows', async (_name, text) => {
    const id = await child(Math.floor(Math.random() * 1000));
    expect(await wholeTableReads(text, [id])).toEqual([]);
  });

  it('a redrive of a cancelled dependant (include_cancelled) deletes its rows by index', async () => {
    const id = await child(2000);
    await client.query('select jobs.cancel($1::bigint)', [id]);
    expect(await wholeTableReads('select jobs.redrive(job_ids => array[$1::bigint], include_cancelled => true)', [id])).toEqual([]);
  });
});
