// A job that ran, failed or lost its drain, and then waited past its
// expiry for its next attempt ends as 'expired: not started before …'
// (jobs.expire_due, sql/0009). Its last error, why it was waiting to run
// again, is kept on the next line, as jobs.cancel and jobs.fail keep a waiting
// job's: dropped, the history said only that the job never started, though
// it had run (attempts 1), and what ended that run (a handler's error, a
// drain killed with its lease) was recorded nowhere. The kill is a built
// `pgdrain drain` process killed with -9; its lease is set to have passed in
// SQL, and the expiry comes by jobs.expire's `now`: no timing is asserted.
import { beforeEach, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { killDrainMidJob } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
await sql('create table if not exists fault_runs (key text not null, job_id bigint not null, attempt int not null, pid int not null)');
beforeEach(async () => void (await sql('truncate jobs.job_queue, jobs.job, fault_runs')));

const newQueue = () => createQueue({ driver: { ...db.driver, close: async () => {} } });
const ended = async (id: string) => (await sql<{ status: string; attempts: number; error: string }>(
  'select status, attempts, error from jobs.job where job_id = $1', [id]))[0];
/** Ends what waits past its expiry (an hour from now), as the next claim or jobs.maintain would then. */
const expireLater = () => sql(`select jobs.expire(now => now() + interval '2 hours')`);

it("a job whose drain was killed -9 mid-run, then expired waiting for its retry, keeps the lease's error", async () => {
  const q = newQueue();
  const id = await q.publish('fault.record', { key: 'k', ms: 600_000 }, { timeoutSeconds: 60, expiresInSeconds: 3600 });
  await killDrainMidJob(sql, db.url, id, 'expiry-victim', 'box:1');
  // Its lease passes (as its 60 s would): taken back, to run again at once.
  await sql('update jobs.job_queue set lease_until = now() where job_id = $1', [id]);
  await sql('select jobs.expire()');
  // Nothing ran it before its expiry.
  await expireLater();
  expect(await ended(id)).toEqual({ status: 'failure', attempts: 1, error: expect.stringMatching(new RegExp(
    '^expired: not started before [^\\n]+\\ntimed out: no ack within 60 seconds \\(attempt 1 of 4\\): '
    + 'its lease passed with no outcome from worker box:1 '))});
});

it("a job whose handler threw, then expired waiting for its retry, keeps the handler's error", async () => {
  const q = newQueue();
  q.defineTask('flaky', async () => { throw new Error('boom: the partner API answered 503'); });
  const id = await q.publish('flaky', null, { timeoutSeconds: 10, expiresInSeconds: 3600, retryDelaySeconds: 86_400, retryBackoff: false });
  expect(await q.drain(5, Date.now() + 60_000)).toMatchObject({ claimed: 1, retried: 1 });
  await expireLater();
  expect(await ended(id)).toEqual({ status: 'failure', attempts: 1, error: expect.stringMatching(
    /^expired: not started before [^\n]+\nError: boom: the partner API answered 503\n/) });
});

it('a job that never ran keeps its error as it was: the expiry alone', async () => {
  const id = await newQueue().publish('never', null, { expiresInSeconds: 3600 });
  await expireLater();
  expect(await ended(id)).toEqual({ status: 'failure', attempts: 0, error: expect.stringMatching(/^expired: not started before [^\n]+$/) });
});
