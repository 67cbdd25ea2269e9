// drain() when something happens while one of its statements is out: a stop,
// or an outcome. Each race is made deterministic by holding a job's row lock
// in another session, so the drain's statement waits on it in the server.
import pg from 'pg';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { createQueue, type JobContext, type TaskMap } from '../src/index.js';
import { Settler } from '../src/settler.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const holder = new pg.Client({ connectionString: db.url });
await holder.connect();
afterAll(() => holder.end());

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
});

function queueWith(tasks: TaskMap) {
  return createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });
}

/** A promise and the function that resolves it. */
function gate(): [Promise<void>, () => void] {
  let open!: () => void;
  return [new Promise<void>((resolve) => (open = resolve)), () => open()];
}

const leased = async (n: number) =>
  (await sql<{ n: number }>('select count(*)::int as n from jobs.job_queue where lease_until is not null'))[0]!.n === n;

/** Whether a statement calling fn waits on a lock. */
const waitingOnLock = async (fn: string) =>
  (await sql(`select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'
              and query like $1`, [`%${fn}%`])).length > 0;

/**
 * quick's ack rides on the drain's next claim: held on quick's row lock (taken here; lockTaken then lets
 * quick's handler end), that claim's connection is killed, and the lock let go.
 */
async function killClaimCarryingAck(quick: string, lockTaken: () => void): Promise<void> {
  await holder.query('begin');
  await holder.query('select 1 from jobs.job_queue where job_id = $1 for update', [quick]);
  lockTaken();
  await until(() => waitingOnLock('claim_json'), 'the claim carrying the ack to wait on the row lock');
  await sql(`select pg_terminate_backend(pid) from pg_stat_activity
             where datname = current_database() and wait_event_type = 'Lock' and query like '%claim_json%'`);
  await holder.query('commit');
}

describe('drain races', () => {
  it('a stop that comes while a claim is out ends the drain after its grace, not when the next job ends', async () => {
    const stop = new AbortController();
    const [locked, lockTaken] = gate();
    const q = queueWith({
      quick: async () => { await locked; return 'done'; },
      // Ends only when its signal fires: at the grace, or at its 600 s timeout.
      stuck: (_b: unknown, ctx: JobContext) => new Promise((resolve) => ctx.signal.addEventListener('abort', resolve)),
    });
    await q.publish('stuck', null, { priority: 1, timeoutSeconds: 600 });
    const quick = await q.publish('quick');
    let report: Awaited<ReturnType<typeof q.drain>> | undefined;
    const drained = q.drain(2, Date.now() + 900_000, { signal: stop.signal, graceMs: 100 })
      .then((r) => (report = r));
    await until(() => leased(2), 'both jobs claimed');

    // quick's ack rides on the next claim, which waits on quick's row lock.
    await holder.query('begin');
    await holder.query('select 1 from jobs.job_queue where job_id = $1 for update', [quick]);
    lockTaken();
    await until(() => waitingOnLock('claim_json'), 'the claim carrying the ack to wait on the row lock');
    stop.abort();
    await holder.query('commit');

    await until(async () => report, 'the drain to end after its 100 ms grace', 20_000);
    await drained;
    expect(report).toMatchObject({ stoppedBy: 'signal', claimed: 2, succeeded: 1, retried: 1 });
    expect(await sql(`select task, attempt, lease_until from jobs.job_queue`))
      .toEqual([{ task: 'stuck', attempt: 1, lease_until: null }]); // interrupted at the grace's end: its attempt spent
  });

  it('a claim that fails leaves running jobs leased until their handlers end, then settles them', async () => {
    const [locked, lockTaken] = gate();
    const [slowMayEnd, endSlow] = gate();
    let slowRuns = 0;
    const q = queueWith({
      slow: async () => { slowRuns++; await slowMayEnd; return 'slow done'; },
      quick: async () => { await locked; return 'quick done'; },
    });
    await q.publish('slow', null, { priority: 1 });
    const quick = await q.publish('quick');
    const drained = q.drain(2, Date.now() + 300_000).then(() => 'returned', (e: unknown) => e);
    await until(() => leased(2), 'both jobs claimed');
    await killClaimCarryingAck(quick, lockTaken);
    // Given back now, slow would be claimable while its handler still runs here.
    await until(async () => (await sql<{ n: number }>(
      `select count(*)::int as n from pg_stat_activity where datname = current_database() and query like '%claim_json%'
       and state = 'active' and pid <> pg_backend_pid()`))[0]!.n === 0, 'the killed claim to be gone');
    expect(await sql(`select task, attempt, lease_until is not null as leased from jobs.job_queue where task = 'slow'`))
      .toEqual([{ task: 'slow', attempt: 1, leased: true }]);
    endSlow();
    expect(await drained).toMatchObject({ code: 'database_unavailable' });
    expect(await sql(`select task, status, attempts from jobs.job order by task`)).toEqual([
      { task: 'quick', status: 'success', attempts: 1 }, { task: 'slow', status: 'success', attempts: 1 }]);
    expect(await sql(`select count(*)::int as n from jobs.job_queue`)).toEqual([{ n: 0 }]);
    expect(slowRuns).toBe(1);
  });

  it('the outcomes a failed claim carried are settled while their leases hold, not once the running handlers end', async () => {
    const [locked, lockTaken] = gate();
    const [slowMayEnd, endSlow] = gate();
    const q = queueWith({
      slow: async () => { await slowMayEnd; return 'slow done'; },
      quick: async () => { await locked; return 'quick done'; },
    });
    await q.publish('slow', null, { priority: 1, timeoutSeconds: 60 });
    const quick = await q.publish('quick', null, { timeoutSeconds: 3 }); // its lease: 3 s from its claim
    const drained = q.drain(2, Date.now() + 300_000).then(() => 'returned', (e: unknown) => e);
    try {
      await until(() => leased(2), 'both jobs claimed');
      await killClaimCarryingAck(quick, lockTaken);
      // The drain claims no more and waits for slow; quick's ack, put back, goes with the settler's timer
      // (50 ms), not with slow's end: by the end of quick's lease it has landed.
      await until(async () => (await sql<{ passed: boolean }>(
        `select coalesce(bool_and(lease_until < clock_timestamp()), true) as passed from jobs.job_queue where job_id = $1`,
        [quick]))[0]!.passed, "quick's ack or the end of its lease");
      // Had it not, another drain's claim (or jobs.maintain) would now take quick back: run again, its ack stale.
      expect(await sql('select jobs.expire() as n')).toEqual([{ n: 0 }]);
      expect(await sql(`select status, attempts from jobs.job where job_id = $1`, [quick]))
        .toEqual([{ status: 'success', attempts: 1 }]);
    } finally {
      endSlow();
    }
    expect(await drained).toMatchObject({ code: 'database_unavailable' });
    expect(await sql(`select task, status, attempts from jobs.job order by task`)).toEqual([
      { task: 'quick', status: 'success', attempts: 1 }, { task: 'slow', status: 'success', attempts: 1 }]);
  });

  it("a drain's settles, sent again after a lost reply, cannot release another drain's delivery of the same attempt", async () => {
    const q = queueWith({ a: async () => null });
    const id = await q.publish('a');
    await sql(`select jobs.claim_json(1, worker_id => 'drain-a')`);
    const mine = new Settler(db.driver, 10, 'drain-a');
    mine.add({ id, attempt: 1, outcome: 'release' });
    await mine.close();
    expect(mine.totals).toMatchObject({ released: 1 });
    await sql(`select jobs.claim_json(1, worker_id => 'drain-b')`); // attempt 1 again
    mine.add({ id, attempt: 1, outcome: 'release' }); // as the Settler sends a batch whose reply it lost
    await mine.close();
    expect(mine.totals).toMatchObject({ released: 1, stale: 1 });
    expect(await sql(`select worker_id, attempt, lease_until is not null as leased from jobs.job_queue`))
      .toEqual([{ worker_id: 'drain-b', attempt: 1, leased: true }]);
  });

  it('a job whose timeout passes while its claim is out is nacked as timed out, not given back again and again', async () => {
    const [locked, lockTaken] = gate();
    const q = queueWith({ first: async () => { await locked; return 1; }, tiny: async () => 2 });
    const first = await q.publish('first', null, { priority: 1 });
    await q.publish('tiny', null, { timeoutSeconds: 0.001, maxRetries: 0 });
    // batch 1: first alone, then tiny with the claim that carries first's ack, held on first's row lock.
    const drained = q.drain(1, Date.now() + 300_000);
    await until(() => leased(1), 'first claimed');
    await holder.query('begin');
    await holder.query('select 1 from jobs.job_queue where job_id = $1 for update', [first]);
    lockTaken();
    await until(() => waitingOnLock('claim_json'), 'the claim carrying the ack to wait on the row lock');
    await holder.query('commit');

    const report = await drained;
    expect(report).toMatchObject({ claimed: 2, succeeded: 1, failed: 1, released: 0, stoppedBy: 'empty' });
    expect(report.failures).toMatchObject([{ task: 'tiny', willRetry: false, error: expect.stringMatching(/^timed out after 0.001 s/) }]);
    expect(await sql(`select status, error from jobs.job where task = 'tiny'`))
      .toEqual([{ status: 'failure', error: 'timed out after 0.001 s, before it could start (its claim took longer)' }]);
  });

  it('an outcome added while a settle is in flight is settled within the flush interval, not when the batch ends', async () => {
    const [locked, lockTaken] = gate();
    const [second, secondEnds] = gate();
    const [rest, restEnds] = gate();
    const q = queueWith({
      first: async () => { await locked; return 1; },
      second: async () => { await second; return 2; },
      rest: async () => { await rest; return 3; },
    });
    const first = await q.publish('first');
    const b = await q.publish('second');
    await q.publishBulk([{ task: 'rest' }, { task: 'rest' }, { task: 'rest' }]);
    // Five at once: with two ended, three run, and the drain waits for them
    // instead of claiming (it refills at half the batch free).
    const drained = q.drain(5, Date.now() + 900_000, { flushIntervalMs: 20 });
    await until(() => leased(5), 'all five jobs claimed');

    await holder.query('begin');
    await holder.query('select 1 from jobs.job_queue where job_id = $1 for update', [first]);
    lockTaken();
    await until(() => waitingOnLock('settle_arrays'), "the settle of first's ack to wait on its row lock");
    secondEnds(); // while that settle is in flight
    await new Promise((resolve) => setImmediate(resolve));
    await holder.query('commit');

    await until(async () => (await sql('select 1 from jobs.job where job_id = $1', [b])).length > 0,
      "second's ack to be settled while the other three still run", 20_000);
    restEnds();
    expect(await drained).toMatchObject({ claimed: 5, succeeded: 5, stoppedBy: 'empty' });
  });
});

describe('a job claimed again while its earlier attempt still runs', () => {
  it("the late return of attempt 1 leaves attempt 2 running, and attempt 2's ack settles the job", async () => {
    // Retries at once, so the drain's next claim takes the job back while attempt 1 (deaf to its signal) runs on.
    await sql(`create or replace function jobs.backoff(attempt integer) returns interval language sql as $$ select interval '0' $$`);
    const [secondStarted, startSecond] = gate();
    const [firstReturned, returnFirst] = gate();
    const runs: number[] = [];
    try {
      const q = queueWith({
        flaky: async (_b: unknown, ctx: JobContext) => {
          runs.push(ctx.job.attempt);
          if (ctx.job.attempt === 1) {
            await secondStarted; // long past its 2 s timeout: nacked, retried, claimed again
            returnFirst();
            return 'late';
          }
          startSecond();
          await firstReturned;
          await new Promise((resolve) => setTimeout(resolve, 50)); // attempt 1's return has been handled
          return 'second';
        },
      });
      // 2 s, not 0.3 s: a claim answered after the job's timer ended (0.27 s on, a loaded machine's round trip)
      // nacks it unstarted (handler-end.ts), its handler never run.
      const id = await q.publish('flaky', null, { timeoutSeconds: 2, maxRetries: 1 });
      const report = await q.drain(5, Date.now() + 60_000);
      expect(runs).toEqual([1, 2]);
      expect(report).toMatchObject({ claimed: 2, succeeded: 1, retried: 1, stale: 0 });
      expect(await sql('select status, result, attempts from jobs.job where job_id = $1', [id]))
        .toEqual([{ status: 'success', result: 'second', attempts: 2 }]);
    } finally {
      await sql(`create or replace function jobs.backoff(attempt integer) returns interval language sql volatile as $$
        select make_interval(secs => d / 2 + random() * d / 2)
        from (select least(3600.0, 5.0 * power(2, greatest(backoff.attempt, 1) - 1)) as d) s $$`);
    }
  });
});
