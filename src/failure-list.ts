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

/** The most characters of a failure's first line an HTTP drain answer carries (the dashboard shows 200). */
export const FAILURE_LINE = 1000;

/**
 * A failure's error as an HTTP drain answer gives it: its first line, no
 * stack, cut to FAILURE_LINE characters (… marks a cut). One line can be a
 * whole upstream answer; jobs.job keeps the error whole.
 */
export function firstLine(error: string): string {
  const end = error.indexOf('\n');
  const line = end < 0 ? error : error.slice(0, end);
  return line.length > FAILURE_LINE ? `${line.slice(0, FAILURE_LINE)}…` : line;
}
