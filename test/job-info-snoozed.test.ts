// A job's snoozes in a row (jobs.job_queue.snoozed: SnoozeJob, ctx.rateLimit,
// a release with retry_at and no reason) were only in jobs.job_queue, though
// its count heads last_error ('snoozed until … (3 in a row)') as unstarted's
// does: jobs.all, getJob / listJobs, GET /jobs/:id and `pgdrain show` showed
// unstarted beside attempts, not snoozed. They do now; null once the job
// ended (jobs.job keeps no count), archived too. On a real PostgreSQL, the CLI
// (dist/cli.mjs: `npm run build` first) as a process.
import { expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const { sql } = db;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });
const TOKEN = 'job-info-snoozed-token-0123456789';
const app = createApp({ queue, token: TOKEN });
const get = async (path: string) => {
  const res = await app.request(path, { headers: { authorization: `Bearer ${TOKEN}` } });
  return { status: res.status, body: (await res.json()) as any };
};
const claim = async () => (await sql<{ attempt: number }>('select attempt from jobs.consume(1)'))[0]!.attempt;

it("jobs.all, getJob, listJobs, GET /jobs/:id and pgdrain show show a queued job's snooze count; null once it ended", async () => {
  const id = (await sql<{ id: string }>(`select jobs.publish('t', '{}')::text as id`))[0]!.id;
  for (let n = 1; n <= 3; n++) {
    await sql(`select jobs.settle_arrays(array[$1::bigint], array[$2::int], array['release'], retry_at => array[now()])`, [id, await claim()]);
  }
  // Unfixed: no such column (42703), no such field.
  expect(await sql('select state, attempts, unstarted, snoozed from jobs.all where job_id = $1', [id]))
    .toEqual([{ state: 'pending', attempts: 0, unstarted: 0, snoozed: 3 }]);
  expect(await queue.getJob(id)).toMatchObject({ attempts: 0, unstarted: 0, snoozed: 3, error: expect.stringMatching(/\(3 in a row\)$/) });
  expect(await queue.listJobs({ ids: [id] })).toEqual([await queue.getJob(id)]);
  expect(await get(`/jobs/${id}`)).toMatchObject({ status: 200, body: { job: { id, unstarted: 0, snoozed: 3 } } });
  const shown = await runCli(db.url, 'show', id);
  expect(shown.code, shown.stderr).toBe(0);
  expect(shown.stdout.split('\n')).toContain('snoozed       3 in a row (SnoozeJob or a rate limit: run later, no attempt spent)');
  // A job that never snoozed shows none.
  const other = (await sql<{ id: string }>(`select jobs.publish('u', '{}', now() + interval '1 hour')::text as id`))[0]!.id;
  expect(await queue.getJob(other)).toMatchObject({ snoozed: 0 });
  expect((await runCli(db.url, 'show', other)).stdout).not.toContain('snoozed');
  // Ended, then archived: null.
  await sql('select jobs.ack($1::bigint, attempt => $2)', [id, await claim()]);
  expect(await sql('select state, snoozed from jobs.all where job_id = $1', [id])).toEqual([{ state: 'success', snoozed: null }]);
  expect(await queue.getJob(id)).toMatchObject({ state: 'success', unstarted: null, snoozed: null });
  await sql(`update jobs.job set ended_at = now() - interval '30 days'`);
  await sql(`select jobs.maintain(retention => '7 days', archive => true)`);
  expect(await sql('select job_id::text as id from jobs.job_archive')).toEqual([{ id }]);
  expect(await queue.getJob(id)).toMatchObject({ state: 'success', unstarted: null, snoozed: null });
});
