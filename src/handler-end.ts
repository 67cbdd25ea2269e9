// When a claimed job's handler must end (drain.ts), or, when it cannot start, the outcome that gives it back.
import type { Job } from './types.js';
import type { Outcome } from './outcome-arrays.js';
import { timerEnd } from './timeouts.js';

/**
 * Its end (epoch ms): its timer's, a margin before its lease's end (timerEnd), or stopAt if sooner. An outcome
 * instead when it cannot start: a nack when its timeout passed while the claim was out (given back, it would be
 * claimed and given back again without end), a release when the drain stops (stopping) or its end has come.
 */
export function handlerEnd(job: Job, claimSentAt: number, now: number, stopAt: number, stopping: boolean): number | Outcome {
  const ownEnd = timerEnd(claimSentAt, job.timeout);
  const end = Math.min(ownEnd, stopAt);
  if (!stopping && ownEnd <= now) {
    return { id: job.id, attempt: job.attempt, outcome: 'nack',
             error: `timed out after ${job.timeout} s, before it could start (its claim took longer)` };
  }
  if (stopping || end <= now) return { id: job.id, attempt: job.attempt, outcome: 'release' };
  return end;
}
