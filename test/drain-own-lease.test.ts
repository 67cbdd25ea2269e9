// A drain's own claims leave the passed leases of the jobs it still runs to
// it (jobs.claim_json's holder, one per drain call): its timer settles them,
// as timed out with their backoff. Every other claim still expires them:
// another drain's, and a crashed drain's successor's, under the same worker
// id too. Leases are set to have passed in SQL while the handler waits on a
// promise the test holds; no timing is asserted. A session probes only the
// leases that passed since its last claim found none (jobs.remembered_lease_floor),
// and a lease written as passed may pass before a claim that began meanwhile:
// the other drain has sessions of its own, as another process would. Over a
// real PostgreSQL; the crash is a built `pgdrain drain` process killed with -9.
import { beforeEach, expect, it, onTestFinished } from 'vitest';
import { createQueue } from '../src/index.js';
import type { JobContext } from '../src/index.js';
import { pgDriver } from '../src/db/pg.js';
import { testDb } from './support/db.js';
import { killDrainMidJob, until } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
await sql('create table if not exists fault_runs (key text not null, job_id bigint not null, attempt int not null, pid int not null)');
beforeEach(async () => void (await sql('truncate jobs.job_queue, jobs.job, fault_runs')));

const newQueue = () => createQueue({ driver: { ...db.driver, close: async () => {} } });
const deadline = () => Date.now() + 120_000;
/** A lingering drain claims again every 100 ms. */
const lingering = (signal: AbortSignal, workerId?: string) => ({ lingerMs: 120_000, pollMs: 100, signal, ...workerId && { workerId } });
/** A promise the test holds, and what resolves it. */
const gate = () => {
  let open!: () => void;
  const shut = new Promise<void>((resolve) => (open = resolve));
  return { open, shut };
};
const signalled = (ctx: JobContext) => new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
const row = async (id: string) => (await sql<{ attempt: number; leased: boolean; passed: boolean; last_error: string | null }>(
  `select attempt, lease_until is not null as leased, lease_until <= now() as passed, last_error from jobs.job_queue where job_id = $1`,
  [id]))[0];

it("a drain's own claim leaves its running job's passed lease to it: its timer nacks it as timed out, with its backoff", async () => {
  const reasons: string[] = [];
  const [leasePassed, markerRan] = [gate(), gate()];
  const q = newQueue();
  q.defineTask('marker', async () => markerRan.open());
  q.defineTask('slow', async (_body: unknown, ctx: JobContext) => {
    if (ctx.job.attempt > 1) return;
    // Its lease passes in the database while its 4 s timer is still to fire.
    await sql(`update jobs.job_queue set lease_until = now() where job_id = $1`, [ctx.job.id]);
    leasePassed.open();
    await signalled(ctx);
    reasons.push((ctx.signal.reason as Error).message);
  });
  const id = await q.publish('slow', null, { timeoutSeconds: 4, retryDelaySeconds: 3600, retryBackoff: false, maxRetries: 3 });
  const stop = new AbortController();
  onTestFinished(() => stop.abort()); // a drain left lingering by a failure
  const drained = q.drain(5, deadline(), lingering(stop.signal));
  await leasePassed.shut;
  // A job published now runs once a claim of this drain ran with the lease passed.
  await q.publish('marker');
  await markerRan.shut;
  // Its first delivery over: nacked here, or (before) expired by this drain's claim and claimed again.
  await until(async () => { const r = await row(id); return !r || !r.leased || r.attempt > 1; }, 'the first delivery to end');
  stop.abort();
  const report = await drained;
  // Before, this drain's claim expired the lease: retried at once ('timed out: no ack within 4 seconds'), its
  // backoff skipped, and handed out again to it (its first delivery's signal 'lease lost', its nack stale).
  expect(reasons).toEqual(['timed out after 4 s']);
  expect(report).toMatchObject({ claimed: 2, succeeded: 1, retried: 1, stale: 0 });
  expect(await sql(`select attempt, lease_until, last_error, scheduled_at > now() + interval '3000 seconds' as backed_off
                    from jobs.job_queue where job_id = $1`, [id]))
    .toEqual([{ attempt: 1, lease_until: null, last_error: 'timed out after 4 s', backed_off: true }]);
});

it("another drain's claim expires the passed lease and takes the job, under the same worker id too", async () => {
  const [leasePassed, markerRan, letFirstGo] = [gate(), gate(), gate()];
  const q = newQueue();
  q.defineTask('marker', async () => markerRan.open());
  q.defineTask('held', async (_body: unknown, ctx: JobContext) => {
    // Its lease passes in the database, its 60 s timer far off.
    await sql(`update jobs.job_queue set lease_until = now() where job_id = $1`, [ctx.job.id]);
    leasePassed.open();
    await letFirstGo.shut;
    return 'first';
  });
  const id = await q.publish('held', null, { timeoutSeconds: 60 });
  const stop = new AbortController();
  onTestFinished(() => { stop.abort(); letFirstGo.open(); }); // a drain left lingering by a failure
  const first = q.drain(5, deadline(), lingering(stop.signal, 'shared'));
  await leasePassed.shut;
  await q.publish('marker');
  await markerRan.shut;
  // The first drain's claims (the marker's, at least) left its delivery running.
  expect(await row(id)).toEqual({ attempt: 1, leased: true, passed: true, last_error: null });
  // A second drain, in a process of its own (its own sessions), with the worker id the
  // first has (a shared one, a restarted container's host:pid).
  const other = createQueue({ driver: pgDriver(db.url, { max: 2 }) });
  onTestFinished(() => other.close());
  other.defineTask('held', async () => 'second');
  expect(await other.drain(1, deadline(), { workerId: 'shared' })).toMatchObject({ claimed: 1, succeeded: 1, stale: 0 });
  letFirstGo.open();
  stop.abort();
  // The first delivery's ack comes after the second drain's claim expired it.
  expect(await first).toMatchObject({ claimed: 2, succeeded: 1, stale: 1 });
  expect(await sql('select status, attempts, result, worker_id from jobs.job where job_id = $1', [id]))
    .toEqual([{ status: 'success', attempts: 2, result: 'second', worker_id: 'shared' }]);
});

it('a drain killed -9 mid-job leaves the job to the next drain, under the same worker id', async () => {
  // A restarted container's drain: same host name, same pid, so the same worker id.
  const worker = 'box:1';
  const q = newQueue();
  q.defineTask('fault.record', async () => 'again');
  const id = await q.publish('fault.record', { key: 'k', ms: 600_000 }, { timeoutSeconds: 60 });
  await killDrainMidJob(sql, db.url, id, 'own-lease-victim', worker);
  // Its lease passes (as its 60 s would).
  await sql(`update jobs.job_queue set lease_until = now() where job_id = $1`, [id]);
  expect(await q.drain(5, deadline(), { workerId: worker })).toMatchObject({ claimed: 1, succeeded: 1 });
  expect(await sql('select status, attempts, result from jobs.job where job_id = $1', [id]))
    .toEqual([{ status: 'success', attempts: 2, result: 'again' }]);
});
