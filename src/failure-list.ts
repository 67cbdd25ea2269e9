import type { Outcome, SettleListener } from './outcome-arrays.js';
import type { FailedJob, Job } from './types.js';

/**
 * How many failed deliveries a report lists: a drain of a failing backlog
 * would otherwise hold (and an HTTP drain answer, as Lambda's 6 MB cap,
 * carry) an error per job. The rest are counted; jobs.job has them all.
 */
export const MAX_REPORTED_FAILURES = 100;

/**
 * A drain report's failures and failuresOmitted: what its settles did with
 * the nacks and fails it sent. willRetry is what the drain sent (a nack with
 * retries left), until its settle answers that it ended the job cancelled
 * instead (a cancel requested while it ran): endedCancelled. One its settle
 * found stale (the delivery had ended without it: a transactional ack that
 * committed first, another drain's claim after its lease passed) did not
 * happen: it leaves the list, or failuresOmitted (stale).
 */
export class FailureList implements SettleListener {
  readonly list: FailedJob[] = [];
  omitted = 0;
  /** The listed entries, by the outcome their settle carries. */
  private listed: Map<Outcome, FailedJob> | undefined;
  /** The outcomes counted in omitted, made with the first (no entry, nothing kept past their settle). */
  private omittedOnes: WeakSet<Outcome> | undefined;

  add(job: Job, outcome: Outcome): void {
    if (outcome.outcome !== 'nack' && outcome.outcome !== 'fail') return;
    if (this.list.length >= MAX_REPORTED_FAILURES) {
      this.omitted++;
      (this.omittedOnes ??= new WeakSet()).add(outcome);
    } else {
      const entry = {
        id: job.id, task: job.task, attempt: job.attempt, error: outcome.error,
        willRetry: outcome.outcome === 'nack' && job.attempt <= job.maxRetries,
      };
      this.list.push(entry);
      (this.listed ??= new Map()).set(outcome, entry);
    }
  }

  /** Its settle ended this outcome's job cancelled: it will not run again. */
  endedCancelled(outcome: Outcome): void {
    const entry = this.listed?.get(outcome);
    if (entry) entry.willRetry = false;
  }

  /** Its settle found this outcome stale: it is no failure of this drain's. */
  stale(outcome: Outcome): void {
    const entry = this.listed?.get(outcome);
    if (entry) {
      this.listed!.delete(outcome);
      this.list.splice(this.list.indexOf(entry), 1);
    } else if (this.omittedOnes?.delete(outcome)) {
      this.omitted--;
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
