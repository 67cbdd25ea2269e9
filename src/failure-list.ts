import type { Outcome } from './outcome-arrays.js';
import type { FailedJob, Job } from './types.js';

/**
 * How many failed deliveries a report lists: a drain of a failing backlog
 * would otherwise hold (and an HTTP drain answer, as Lambda's 6 MB cap,
 * carry) an error per job. The rest are counted; jobs.job has them all.
 */
export const MAX_REPORTED_FAILURES = 100;

/** A drain report's failures and failuresOmitted. */
export class FailureList {
  readonly list: FailedJob[] = [];
  omitted = 0;

  add(job: Job, outcome: Outcome): void {
    if (outcome.outcome !== 'nack' && outcome.outcome !== 'fail') return;
    if (this.list.length >= MAX_REPORTED_FAILURES) this.omitted++;
    else {
      this.list.push({
        id: job.id, task: job.task, attempt: job.attempt, error: outcome.error,
        willRetry: outcome.outcome === 'nack' && job.attempt <= job.maxRetries,
      });
    }
  }
}
