// A job's releases unstarted in a row (jobs.job_queue.unstarted: claimed,
// never started, given back with a reason; the 26th is a nack) were only in
// jobs.job_queue: jobs.all, getJob / listJobs, GET /jobs/:id and `pgdrain
// show` did not have them, beside attempts. They do now; null once the job
// ended (jobs.job keeps no count). On a real PostgreSQL, the CLI as a process.
import { expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const { sql } = db;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });

it('jobs.all, getJob, listJobs and pgdrain show show a queued job\'s unstarted count; null once it ended', async () => {
  const id = (await sql<{ id: string }>(`select jobs.publish('t', '{}')::text as id`))[0]!.id;
  for (let n = 1; n <= 2; n++) {
    const [{ attempt }] = await sql<{ attempt: number }>('select attempt from jobs.consume(1)') as [{ attempt: number }];
    await sql(`select jobs.settle_arrays(array[$1::bigint], array[$2::int], array['release'], null, array['no room'])`, [id, attempt]);
  }
  // Unfixed: no such column (42703), no such field.
  expect(await sql('select state, attempts, unstarted from jobs.all where job_id = $1', [id]))
    .toEqual([{ state: 'pending', attempts: 0, unstarted: 2 }]);
  expect(await queue.getJob(id)).toMatchObject({ attempts: 0, unstarted: 2, error: 'released unstarted (2 in a row): no room' });
  expect(await queue.listJobs({ ids: [id] })).toEqual([await queue.getJob(id)]);
  const shown = await runCli(db.url, 'show', id);
  expect(shown.code, shown.stderr).toBe(0);
  expect(shown.stdout.split('\n')).toContain(
    'unstarted     2 in a row (released never started, no attempt spent; the 26th is a nack)');
  // A job that never was released shows none.
  const other = (await sql<{ id: string }>(`select jobs.publish('u', '{}', now() + interval '1 hour')::text as id`))[0]!.id;
  expect(await queue.getJob(other)).toMatchObject({ unstarted: 0 });
  expect((await runCli(db.url, 'show', other)).stdout).not.toContain('unstarted');
  // Ended: null.
  const [{ attempt }] = await sql<{ attempt: number }>('select attempt from jobs.consume(1)') as [{ attempt: number }];
  await sql('select jobs.ack($1::bigint, attempt => $2)', [id, attempt]);
  expect(await sql('select state, unstarted from jobs.all where job_id = $1', [id])).toEqual([{ state: 'success', unstarted: null }]);
  expect(await queue.getJob(id)).toMatchObject({ state: 'success', unstarted: null });
});
