// An admin call that ends one waiting job (jobs.cancel, cancel_bulk, fail,
// complete, delete_jobs; purge_queue through cancel_bulk) and a redrive of
// a cancelled dependant (include_cancelled) read only that job's own
// dependency rows and its dependants', never the whole jobs.dependency
// (every blocked job waiting anywhere: about 0.3 s per single cancel at
// 200,000 rows, measured). Two shapes: many parents of two children each
// (the rows found by job_id: jobs.end_waiting's and redrive's deletes,
// jobs.lock_jobs' lock, need dependency_job_idx), and one parent of them
// all (jobs.lock_jobs' walk of the dependants, started from the job itself,
// was planned as a scan of the whole table). Plans captured with
// auto_explain inside the functions; the planner decides alone.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capturePlans, explainSession } from '../bench/explain.js';
import { testDb } from './support/db.js';

const db = await testDb();
const client = new pg.Client({ connectionString: db.url });
const N = 40_000;

beforeAll(async () => {
  await client.connect();
  await explainSession(client);
});
afterAll(() => client.end());

/** N blocked jobs ('child'), `perParent` of them per dependency ('parent', scheduled a day ahead); analyzed. */
async function fill(perParent: number): Promise<void> {
  await client.query('truncate jobs.job_queue, jobs.job, jobs.dependency');
  await client.query(`select jobs.publish_arrays(array_fill('parent'::text, array[${N / perParent}]),
                                                 delays => array_fill(86400::float8, array[${N / perParent}]))`);
  await client.query(`insert into jobs.job_queue (task, scheduled_at, timeout, priority, max_retries, created_at, waiting_deps)
                      select 'child', now(), 60, 0, 3, now(), 1 from generate_series(1, ${N})`);
  await client.query(`insert into jobs.dependency (depends_on, job_id)
                      select p.job_id, c.job_id
                      from (select job_id, row_number() over (order by job_id) as k from jobs.job_queue where task = 'child') c
                      join (select job_id, row_number() over (order by job_id) as k from jobs.job_queue where task = 'parent') p
                        on p.k = (c.k + ${perParent} - 1) / ${perParent}`);
  await client.query('analyze jobs.dependency');
  await client.query('analyze jobs.job_queue');
}

const child = async (n: number) => (await client.query<{ id: string }>(
  `select job_id::text as id from jobs.job_queue where task = 'child' order by job_id offset $1 limit 1`, [n])).rows[0]!.id;

/**
 * The scans of jobs.dependency in the plans of `text` that read more than a
 * thousand of its rows (returned or removed by a filter): a scan a hash join
 * starts and stops at its first row, its other side being empty, reads one.
 */
async function wholeTableReads(text: string, params: unknown[]): Promise<string[]> {
  const plans = await capturePlans(client, async () => { await client.query(text, params); });
  expect(plans.length).toBeGreaterThan(0);
  return plans.flatMap((p) => {
    const lines = p.text.split('\n');
    return lines.flatMap((line, i) => {
      const scan = /Seq Scan on dependency\b.*actual time=\S+ rows=(\d+) loops=(\d+)/.exec(line);
      if (!scan) return [];
      // Its detail lines (Filter, Rows Removed by Filter) come before the next node.
      const next = lines.findIndex((l, j) => j > i && l.trim().startsWith('->'));
      const detail = lines.slice(i + 1, next < 0 ? undefined : next).join('\n');
      const removed = /Rows Removed by Filter: (\d+)/.exec(detail)?.[1] ?? '0';
      const read = (Number(scan[1]) + Number(removed)) * Number(scan[2]);
      return read > 1000 ? [`${read} rows read in: ${p.statement}`] : [];
    });
  });
}

const calls = [
  ['jobs.cancel', 'select jobs.cancel($1::bigint)'],
  ['jobs.cancel_bulk', 'select jobs.cancel_bulk(array[$1::bigint])'],
  ['jobs.fail', 'select jobs.fail(array[$1::bigint])'],
  ['jobs.complete', 'select jobs.complete(array[$1::bigint])'],
  ['jobs.delete_jobs', 'select * from jobs.delete_jobs(array[$1::bigint])'],
];

describe.each([['many parents of two children', 2], ['one parent of all', N]])('%s: ending one blocked job', (_shape, perParent) => {
  beforeAll(() => fill(perParent));

  it.each(calls)('%s reads only its own dependency rows', async (_name, text) => {
    const id = await child(100 + Math.floor(Math.random() * 1000));
    expect(await wholeTableReads(text, [id])).toEqual([]);
  });

  it('a redrive of a cancelled dependant (include_cancelled) deletes its rows by index', async () => {
    const id = await child(2000);
    await client.query('select jobs.cancel($1::bigint)', [id]);
    expect(await wholeTableReads('select jobs.redrive(job_ids => array[$1::bigint], include_cancelled => true)', [id])).toEqual([]);
  });
});
