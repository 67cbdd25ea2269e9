// How a handler's throw becomes its job's outcome: a plain one a retry after the backoff, or what a FailJob,
// RetryJob or SnoozeJob asks for (job-errors.ts). Shared by one job's run (run-handler.ts) and a batch's (batch-run.ts).
import type { Thrown } from './drain-hooks.js';
import { describe } from './error-text.js';
import { askedOutcome } from './job-errors.js';
import type { Outcome } from './outcome-arrays.js';

/**
 * A throw (a transactional one after its rollback) is retried after the
 * backoff, unless it is a FailJob (fail now), a RetryJob (retry at its time)
 * or a SnoozeJob (given back until its time, its attempt not spent).
 */
export function thrownOutcome(id: string, attempt: number, error: unknown): Outcome & Thrown {
  const asked = askedOutcome(error, Date.now());
  // thrown rides along for DrainOptions.onJobEnd (drain-hooks.ts); settling reads only the text.
  if (asked === undefined) return { id, attempt, outcome: 'nack', error: describe(error), thrown: error };
  if (asked === 'fail') return { id, attempt, outcome: 'fail', error: describe(error), thrown: error };
  if (asked.snooze) return { id, attempt, outcome: 'release', retryAt: asked.retryAt, thrown: error };
  return { id, attempt, outcome: 'nack', error: describe(error), retryAt: asked.retryAt, thrown: error };
}
