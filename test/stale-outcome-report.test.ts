// A drain's report leaves out what a stale outcome claims: a transactional
// handler whose ack waits for the job's row (another session holds it FOR
// UPDATE) when a signalled drain's grace ends is nacked by the drain; the nack
// queues behind the ack, the ack commits, the nack comes back stale. The job
// ended a success, so the report must not list it as failing (willRetry), and
// its counts must add up to one job. The settle answers which outcomes were
// stale (stale_ids), only when any was.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import type { Driver, Queryable } from '../src/db/driver.js';
import { FailureList, MAX_REPORTED_FAILURES } from '../src/failure-list.js';
import { createQueue, defineTask, type Job } from '../src/index.js';
import type { Outcome } from '../src/outcome-arrays.js';
import { Settler } from '../src/settler.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
beforeEach(async () => void (await sql('truncate jobs.job_queue, jobs.job')));

/** How many settle statements wait for a row lock. */
const settlesWaiting = async () => Number((await sql<{ n: string }>(
  `select count(*) as n from pg_stat_activity
   where datname = current_database() and wait_event_type = 'Lock' and query like '%jobs.settle_arrays%'`))[0]!.n);

describe('a stale outcome in the drain report', () => {
  it("a transactional ack that commits after the grace's nack: no failure listed, the job counted once", async () => {
    let returned!: () => void;
    const handlerReturned = new Promise<void>((r) => (returned = r));
    let go!: () => void;
    const mayReturn = new Promise<void>((r) => (go = r));
    const tx = defineTask('tx.held', async () => {
      await mayReturn;
      returned();
      return 'done';
    }, { transactional: true });
    const q = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: { tx } });
    const id = await q.publish('tx.held', null, { maxRetries: 3, timeoutSeconds: 30 });
    const stop = new AbortController();
    const drained = q.drain(5, Date.now() + 120_000, { signal: stop.signal, graceMs: 100 });
    await until(async () => (await sql('select 1 from jobs.job_queue where job_id = $1 and lease_until is not null', [id])).length > 0,
      'the job to be claimed');
    const locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    try {
      await locker.query('begin');
      await locker.query('select 1 from jobs.job_queue where job_id = $1 for update', [id]);
      go();
      await handlerReturned;
      await until(async () => (await settlesWaiting()) === 1, 'its ack to wait for the row');
      stop.abort(); // the grace (100 ms) ends with the handler's ack still waiting: the drain nacks it
      await until(async () => (await settlesWaiting()) === 2, "the drain's nack to wait behind the ack");
      await locker.query('commit');
    } finally {
      await locker.end();
    }
    const report = await drained;
    expect(report.failures).toEqual([]);
    expect(report).toMatchObject({ claimed: 1, failed: 0, cancelled: 0, retried: 0, released: 0, failuresOmitted: 0 });
    expect(report.succeeded + report.stale).toBe(1); // succeeded 1 once the ack's COMMIT answer came before the nack's
    expect(await sql(`select status, result from jobs.job where job_id = $1`, [id])).toEqual([{ status: 'success', result: 'done' }]);
  });

  it('a transactional ack that lands after the timeout\'s nack ended the job: counted once, as the nack did', async () => {
    // The ack statement is held back (every statement still runs) until the test lets it go.
    let ackSent!: () => void;
    const ackWaits = new Promise<void>((r) => (ackSent = r));
    let letAckGo!: () => void;
    const ackMayGo = new Promise<void>((r) => (letAckGo = r));
    let txEnded!: () => void;
    const txDone = new Promise<void>((r) => (txEnded = r));
    const driver: Driver = {
      ...db.driver, close: async () => {},
      transaction: (fn) => db.driver.transaction((tx) => fn({
        query: async (text, params, options) => {
          if (text.includes('jobs.settle_arrays')) {
            ackSent();
            await ackMayGo;
          }
          return tx.query(text, params, options);
        },
      } as Queryable)).finally(txEnded),
    };
    const tx = defineTask('tx.late', async () => 'done', { transactional: true });
    // Keeps the drain running until the late ack's transaction has ended: its counts go in the report.
    const hold = async () => { await txDone; };
    const q = createQueue({ driver, tasks: { tx, hold } });
    const id = await q.publish('tx.late', null, { maxRetries: 0, timeoutSeconds: 1 });
    await q.publish('hold', null, { timeoutSeconds: 30 });
    const drained = q.drain(5, Date.now() + 120_000);
    await ackWaits;
    // Its timeout (1 s) passes with the ack on its way: the drain nacks it, its retries spent: failed.
    await until(async () => (await sql(`select 1 from jobs.job where job_id = $1 and status = 'failure'`, [id])).length > 0,
      "the timeout's nack to end the job");
    letAckGo(); // it finds the delivery over: rolled back, stale
    const report = await drained;
    expect(report).toMatchObject({ claimed: 2, succeeded: 1, failed: 1, retried: 0, stale: 0 });
    expect(report.failures).toMatchObject([{ id, error: 'timed out after 1 s', willRetry: false }]);
    expect(await sql(`select status, error from jobs.job where job_id = $1`, [id])).toEqual([{ status: 'failure', error: 'timed out after 1 s' }]);
  });

  it("one settle carrying a job's stale nack and its next delivery's: only the next one is listed", async () => {
    // Attempt 1's nack was made as its timer fired, its lease passed meanwhile and another drain's claim gave it
    // back; this drain's claim, already out, took attempt 2, which failed before the nack of attempt 1 was sent.
    const { t0 } = (await sql<{ t0: Date }>(`select now() + interval '1 second' as t0`))[0]!;
    const id = (await sql<{ id: string }>(`select jobs.publish('again', null, null, 10, 0, 5)::text as id`))[0]!.id;
    const claim = async (now: Date) =>
      (await sql<{ attempt: number }>(`select attempt from jobs.claim(1, 'again', null, $1, null, null, 'w')`, [now]))[0]!.attempt;
    expect(await claim(t0)).toBe(1);
    expect(await sql('select jobs.expire(100, $1) as n', [new Date(t0.getTime() + 30_000)])).toEqual([{ n: 1 }]);
    expect(await claim(new Date(t0.getTime() + 31_000))).toBe(2);
    const failures = new FailureList();
    const settler = new Settler(db.driver, 60_000, 'w', undefined, failures);
    for (const attempt of [1, 2]) {
      const o: Outcome = { id, attempt, outcome: 'nack', error: `timed out after 10 s (attempt ${attempt})` };
      failures.add({ id, task: 'again', attempt, maxRetries: 5 } as Job, o);
      settler.add(o);
    }
    await settler.close();
    expect(settler.totals).toMatchObject({ retried: 1, stale: 1 });
    expect(failures.list.map((f) => [f.attempt, f.willRetry])).toEqual([[2, true]]);
    expect(failures.omitted).toBe(0);
  });

  const failing = (n: number) => Array.from({ length: n }, (_, i): Outcome =>
    ({ id: String(i + 1), attempt: 1, outcome: i % 2 ? 'fail' : 'nack', error: `boom ${i + 1}` }));
  const added = (failures: FailureList, outcomes: Outcome[]) => {
    for (const o of outcomes) failures.add({ id: o.id, task: 't', attempt: 1, maxRetries: 3 } as Job, o);
  };

  it('leaves the failures list, or failuresOmitted past the first 100, and keeps the others', () => {
    const failures = new FailureList();
    const nacks = failing(MAX_REPORTED_FAILURES + 2);
    added(failures, nacks);
    expect([failures.list.length, failures.omitted]).toEqual([MAX_REPORTED_FAILURES, 2]);
    failures.stale(nacks[0]!); // a listed nack
    failures.stale(nacks[1]!); // a listed fail
    failures.stale(nacks[MAX_REPORTED_FAILURES + 1]!); // an omitted one
    failures.stale(nacks[0]!); // told twice: nothing more
    // 99 failures happened: all listed, the first one omitted before moved up.
    expect(failures.list.map((f) => f.id)).toEqual(nacks.slice(2, MAX_REPORTED_FAILURES + 1).map((o) => o.id));
    expect(failures.omitted).toBe(0);
  });

  it('lists the first 100 failures that happened, in order, and counts exactly the rest, whichever turn out stale', () => {
    const failures = new FailureList();
    const nacks = failing(MAX_REPORTED_FAILURES + 3);
    added(failures, nacks);
    failures.stale(nacks[MAX_REPORTED_FAILURES + 2]!); // the last omitted one
    failures.stale(nacks[5]!); // a listed one: the first omitted one (not a later) takes its place
    expect(failures.list.map((f) => f.id))
      .toEqual([...nacks.slice(0, 5), ...nacks.slice(6, MAX_REPORTED_FAILURES + 1)].map((o) => o.id));
    expect(failures.omitted).toBe(1);
    // Their settles answer: what was not found stale happened, the list is final; what comes after is only counted.
    failures.answered(nacks);
    const later = failing(MAX_REPORTED_FAILURES + 5).slice(MAX_REPORTED_FAILURES + 3);
    added(failures, later);
    expect([failures.list.length, failures.omitted]).toEqual([MAX_REPORTED_FAILURES, 3]);
    failures.stale(later[0]!); // its settle found it stale: no longer counted
    expect([failures.list.length, failures.omitted]).toEqual([MAX_REPORTED_FAILURES, 2]);
    expect(failures.list.at(-1)!.id).toBe(nacks[MAX_REPORTED_FAILURES]!.id);
  });

  it('matches a list that keeps every failure, over many settles answering out of order', () => {
    let seed = 7;
    const random = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    for (let round = 0; round < 20; round++) {
      const failures = new FailureList();
      const nacks = failing(400);
      const happened: Outcome[] = []; // what the list must hold the first 100 of
      let unsettled: Outcome[] = [];
      for (const o of nacks) {
        added(failures, [o]);
        happened.push(o);
        unsettled.push(o);
        if (random(4) > 0) continue;
        // A settle answers some of those still unsettled, any of them, finding some stale.
        const batch = unsettled.filter(() => random(3) === 0);
        unsettled = unsettled.filter((u) => !batch.includes(u));
        for (const b of batch) {
          if (random(round % 2 ? 2 : 10) > 0) continue;
          failures.stale(b);
          happened.splice(happened.indexOf(b), 1);
        }
        failures.answered(batch);
      }
      expect(failures.list.map((f) => f.id)).toEqual(happened.slice(0, MAX_REPORTED_FAILURES).map((o) => o.id));
      expect(failures.omitted).toBe(happened.length - Math.min(happened.length, MAX_REPORTED_FAILURES));
    }
  });
});
