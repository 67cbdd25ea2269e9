// A transactional task's job, run by a drain (JobRun.runHandler): its turn for a connection of the pool (released
// unstarted if its time ends first: unstarted.ts), then its handler and its ack in one transaction (run-transactional.ts).
import type { DrainJobContext } from './job-context.js';
import type { Outcome } from './outcome-arrays.js';
import type { RunHost } from './run-host.js';
import type { JobRun } from './run-handler.js';
import { endedMeanwhile, runTransactional } from './run-transactional.js';
import { thrownOutcome } from './thrown-outcome.js';
import type { Handler } from './types.js';

/** Runs it; answers its outcome: null when its transaction acked it (counted into host.settler), else what it threw. */
export async function inTransaction(host: RunHost, handler: Handler, run: JobRun, ctx: DrainJobContext): Promise<Outcome | null> {
  const { job } = run;
  let disarm: (() => void) | undefined;
  try {
    const { db } = host.deps;
    if (!('transaction' in db)) throw new TypeError('a transactional task needs a driver with transactions');
    // Its turn for a connection, then its BEGIN, its timeout running: given up before its handler begins, it is released.
    run.waitsForConnection = true;
    disarm = run.releaseAhead();
    if (!await host.connect(() => run.signal.signal)) throw run.signal.abortedWith;
    // A COMMIT whose answer was lost: asked whether it landed before a nack is made of its error.
    const counts = await runTransactional(db, handler, job, host.progress.workerId, ctx, () => host.settler.endedAsSuccess(job.id, job.attempt),
                                          () => { run.waitsForConnection = false; })
      .finally(() => host.disconnect());
    host.settler.count(run.ended ? endedMeanwhile(counts) : counts);
    return null;
  } catch (error) {
    return thrownOutcome(job.id, job.attempt, error);
  } finally {
    disarm?.();
  }
}
