import type { LazySignal } from './job-context.js';
import type { Outcome } from './outcome-arrays.js';
import type { Job } from './types.js';

/** A job drain() has started and not yet settled. */
export interface Running {
  job: Job;
  startedAt: number;
  /** The handler's signal, made if it ever asked for one. */
  signal: LazySignal;
  /** null: already settled in the handler's own transaction. */
  finish(outcome: Outcome | null): void;
}

/**
 * Waits for running jobs; after graceMs (if given), or at once when
 * hardSignal fires, aborts and releases the rest.
 */
export async function windDown(running: Map<string, Running>, graceMs: number | undefined,
                                changed: () => Promise<void>, hardSignal?: AbortSignal): Promise<void> {
  let graceOver = false;
  const giveBack = () => {
    graceOver = true;
    for (const r of [...running.values()]) {
      r.signal.abort(new Error('drain stopped'));
      r.finish({ id: r.job.id, attempt: r.job.attempt, outcome: 'release' });
    }
  };
  const timer = graceMs === undefined ? undefined : setTimeout(giveBack, graceMs);
  hardSignal?.addEventListener('abort', giveBack, { once: true });
  if (hardSignal?.aborted) giveBack();
  while (running.size > 0 && !graceOver) await changed();
  clearTimeout(timer);
  hardSignal?.removeEventListener('abort', giveBack);
}
