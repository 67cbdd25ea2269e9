import type { Queryable } from './db/driver.js';
import { CANCELLED_ERROR } from './drain-hooks.js';
import type { RunningJobs } from './running-jobs.js';

/**
 * Best-effort cancellation for running jobs: every intervalMs, asks the
 * database (jobs.cancel_requested, one statement) which of the jobs that have
 * run longer than intervalMs were cancelled, and calls onCancel for each.
 * Short jobs are never asked about, so the claim/ack path pays nothing; a
 * cancel reaches a handler within about two intervals. Errors are ignored:
 * the next tick asks again, and a missed cancel still ends the job as
 * cancelled when it settles.
 */
export function watchCancels(db: Queryable, intervalMs: number,
                             running: () => Iterable<{ id: string; startedAt: number }>,
                             onCancel: (id: string) => void): () => void {
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    const cutoff = Date.now() - intervalMs;
    const ids = [...running()].filter((r) => r.startedAt <= cutoff).map((r) => r.id);
    if (ids.length === 0) return;
    busy = true;
    db.query<{ id: string }>('select id::text from jobs.cancel_requested($1::bigint[]) as id', [ids])
      .then(({ rows }) => rows.forEach((r) => onCancel(r.id)), () => {})
      .finally(() => (busy = false));
  }, intervalMs);
  return () => clearInterval(timer);
}

/** watchCancels over a drain's running jobs: a cancelled one's signal aborted, its job failed as cancelled. */
export function watchRunningCancels(db: Queryable, intervalMs: number, running: RunningJobs): () => void {
  return watchCancels(db, intervalMs,
    () => [...running.values()].map((r) => ({ id: r.job.id, startedAt: r.startedAt })),
    (id) => {
      const r = running.get(id);
      if (!r) return;
      r.signal.abort(new Error('job cancelled'));
      r.finish({ id, attempt: r.job.attempt, outcome: 'fail', error: CANCELLED_ERROR });
    });
}
