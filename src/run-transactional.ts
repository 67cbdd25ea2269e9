// A transactional task's run: its handler and its ack in one transaction
// (defineTask(name, handler, { transactional: true }), define-task.ts).
import { rolledBackWhole } from './claim-call.js';
import type { Driver } from './db/driver.js';
import { leaseSeconds } from './job-context.js';
import { resultJson } from './result-json.js';
import { publish } from './publish.js';
import { rateLimiter } from './rate-limit.js';
import { outcomeArrays, type SettleCounts } from './outcome-arrays.js';
import type { Handler, JobContext } from './types.js';

/** The delivery was no longer this drain's when its transaction tried to ack. */
class StaleDelivery extends Error {}

/**
 * SETTLE_ARRAYS_SQL at the clock's time: inside the handler's transaction
 * now() is when the transaction began, which would be the job's ended_at.
 * Never before now(): a server clock stepped back would give a time outside
 * the transaction's own, which jobs.check_now refuses a worker (42501).
 */
const TRANSACTIONAL_ACK_SQL =
  'select jobs.settle_arrays($1::bigint[], $2::integer[], $3::text[], $4::jsonb[], $5::text[], $6::timestamptz[], $7::float8[], ' +
  'now => greatest(clock_timestamp(), now()), worker_id => $8) as r';

/** Runs after the first whose transaction was rolled back whole, before its error is thrown (a nack). */
const RERUNS = 3;

type TransactionalJob = { id: string; attempt: number; body: unknown };

const notStored = async (): Promise<boolean> => false;
const notExtended = (seconds: number): Promise<Date | null> => (leaseSeconds(seconds), Promise.resolve(null));

/**
 * Runs a transactional handler and acks its job, as the delivery of drain
 * workerId, in the same transaction.
 * Returns the settle counts of the commit; throws the handler's error after
 * a rollback, as it was thrown, so a FailJob or RetryJob still decides the
 * outcome (runHandler reads it). A delivery that is no longer current (its
 * lease passed to another drain) rolls back and counts as stale, so its work
 * is not kept. When the COMMIT itself fails, its answer may have been lost
 * after it landed (a dropped connection): `committed` asks the database
 * whether the job ended as this delivery's success; if so the commit's
 * counts are returned, else (or when it cannot tell) the COMMIT's error is
 * thrown, as a handler's would be.
 * A transaction rolled back whole as a deadlock victim or a serialization
 * failure (40P01, 40001: often lock orders the user cannot choose; docs/tasks.md
 * "Typed tasks") runs the handler again at once, up to RERUNS times, with
 * the same ctx (same job, same attempt); then its error is thrown.
 * starting: called as the handler is about to be called, its transaction open
 * (before, it waited for a connection: drain() releases a job given up then).
 */
export async function runTransactional(
  driver: Driver, handler: Handler, job: TransactionalJob, workerId: string,
  ctx: JobContext, committed?: () => Promise<boolean>, starting?: () => void,
): Promise<SettleCounts> {
  const began = Date.now();
  for (let reruns = 0; ; reruns++) {
    try {
      return await runOnce(driver, handler, job, workerId, ctx, began, committed, starting);
    } catch (error) {
      // Rolled back whole for another transaction's sake (a deadlock victim,
      // a serialization failure): nothing of this run stayed, so the handler
      // runs again in a new transaction, the attempt not spent. Not once the
      // signal aborted: the drain has settled the job (or is giving it back).
      if (reruns < RERUNS && !ctx.signal.aborted && rolledBackWhole(error)) continue;
      throw error;
    }
  }
}

/** One transaction of runTransactional: the handler and the ack; began is the first run's start (the ack's ms). */
async function runOnce(
  driver: Driver, handler: Handler, job: TransactionalJob, workerId: string,
  ctx: JobContext, began: number, committed?: () => Promise<boolean>, starting?: () => void,
): Promise<SettleCounts> {
  let acked: SettleCounts | undefined; // set as the callback returns: a later error is the COMMIT's
  try {
    return await driver.transaction(async (tx) => {
      // Its timeout may have passed while it waited for a connection: the drain
      // has nacked it then, and it must not start (another drain may run it).
      if (ctx.signal.aborted) throw ctx.signal.reason;
      starting?.();
      // Spelled out: a spread would drop ctx's signal (an accessor on its prototype).
      // progress, extendLease and rateLimit go through the drain's connections, not this
      // transaction: progress shows while the job runs, a token taken stays taken.
      // On one session (PGlite, a pool of 1) this transaction holds it: a token
      // is taken in the transaction, progress is not stored (answers false), nor a lease extended (null).
      const oneSession = driver.maxConnections === 1;
      const result = await handler(job.body, {
        job: ctx.job, signal: ctx.signal, db: tx, publish: (task, body, options) => publish(tx, task, body, options),
        progress: oneSession ? notStored : ctx.progress, rateLimit: oneSession ? rateLimiter(tx) : ctx.rateLimit,
        extendLease: oneSession ? notExtended : ctx.extendLease,
      });
      // Past its timeout (or cancelled) the drain has already settled it: roll its work back.
      if (ctx.signal.aborted) throw ctx.signal.reason;
      // This drain's delivery only: the abort check above cannot see a give-back
      // that lands while this statement is on its way, after which another
      // drain's claim holds the same attempt (a release does not spend one).
      const { rows } = await tx.query<{ r: SettleCounts }>(TRANSACTIONAL_ACK_SQL, [...outcomeArrays([
        { id: job.id, attempt: job.attempt, outcome: 'ack', result: resultJson(result), ms: Date.now() - began }]), workerId]);
      if (Number(rows[0]!.r.succeeded) !== 1) throw new StaleDelivery();
      return acked = rows[0]!.r;
    });
  } catch (error) {
    if (error instanceof StaleDelivery) {
      return { succeeded: 0, failed: 0, cancelled: 0, retried: 0, released: 0, stale: 1 };
    }
    if (acked !== undefined && committed && await committed().catch(() => false)) return acked;
    throw error;
  }
}

/**
 * A transactional ack's counts for a delivery the drain ended meanwhile with
 * an outcome of its own (its timeout, the grace's end, a cancel: the ack was
 * on its way, waiting for the job's row). Both are bound to the running
 * delivery, so exactly one applies and the other is stale: the job counts
 * once. An ack that committed counts as succeeded and takes the drain's
 * outcome off stale (its settle answers it stale, before or after this); a
 * stale ack counts nothing (the drain's outcome counts as what it did).
 */
export function endedMeanwhile(counts: SettleCounts): SettleCounts {
  return counts.succeeded > 0 ? { ...counts, stale: counts.stale - 1 }
    : { succeeded: 0, failed: 0, cancelled: 0, retried: 0, released: 0, stale: 0 };
}
