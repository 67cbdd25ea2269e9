import type { Outcome, SettleListener } from './outcome-arrays.js';
import type { FailedJob, Job } from './types.js';
import { sliceUnits } from './error-text.js';
import { neverStartedError } from './unstarted.js';

/**
 * How many failed deliveries a report lists: a drain of a failing backlog
 * would otherwise hold (and an HTTP drain answer, as Lambda's 6 MB cap,
 * carry) an error per job. The rest are counted; jobs.job has them all.
 */
export const MAX_REPORTED_FAILURES = 100;

/** A failure kept: its entry, and whether its settle has yet to answer (until then it may turn out stale). */
interface Kept {
  entry: FailedJob;
  outcome: Outcome;
  pending: boolean;
}

/**
 * A drain report's failures and failuresOmitted: what its settles did with
 * the nacks and fails it sent. willRetry is what the drain sent (a nack with
 * retries left), until its settle answers that it ended the job cancelled
 * instead (a cancel requested while it ran): endedCancelled. One its settle
 * found stale (the delivery had ended without it: a transactional ack that
 * committed first, another drain's claim after its lease passed) did not
 * happen: stale takes it out. The list is the first MAX_REPORTED_FAILURES
 * failures that happened, in order, and omitted counts exactly the rest: a
 * listed one found stale makes room for the next that happened. So failures
 * past the list are kept while enough failures before them may still turn out
 * stale (their settle has not answered) for them to move up; the others are
 * only counted. A drain whose settles answer keeps little more than the list.
 */
export class FailureList implements SettleListener {
  /** The failures that happened, in order, as far as any may still be listed. */
  private readonly kept: Kept[] = [];
  /** Of kept, by the outcome their settle carries. */
  private byOutcome: Map<Outcome, Kept> | undefined;
  /** How many of kept are pending. */
  private pending = 0;
  /** Failures after kept, counted only: they can no longer be listed. */
  private dropped = 0;
  /** Those of them whose settle has not answered, made with the first (a stale one leaves the count). */
  private droppedPending: WeakSet<Outcome> | undefined;
  /** The jobs of releases with a reason, made with the first: their settle may make them nacks. */
  private releases: WeakMap<Outcome, Job> | undefined;
  /** Releases with a reason (never started) that stayed releases: sent, less those made nacks, ended cancelled or stale. */
  private unstartedCount = 0;
  /** Nacks and fails their settle found stale or ended cancelled: in stale or cancelled, not retried or failed. */
  private notKept: WeakSet<Outcome> | undefined;

  /** The first MAX_REPORTED_FAILURES failures that happened, in order. */
  get list(): FailedJob[] {
    return this.kept.slice(0, MAX_REPORTED_FAILURES).map((k) => k.entry);
  }

  /** How many failures happened past the list. */
  get omitted(): number {
    return this.dropped + Math.max(0, this.kept.length - MAX_REPORTED_FAILURES);
  }

  add(job: Job, outcome: Outcome): void {
    if (outcome.outcome === 'release') {
      // Released unstarted (with a reason): its settle may make it a nack (neverStarted).
      if (outcome.error !== undefined) {
        (this.releases ??= new WeakMap()).set(outcome, job);
        this.unstartedCount++;
      }
      return;
    }
    if (outcome.outcome === 'ack') return;
    this.keep(job, outcome, outcome.error, outcome.outcome === 'nack' && job.attempt <= job.maxRetries);
  }

  /** Whether this release with a reason is one of releasedUnstarted: its settle kept it a release (or has not answered). */
  keptRelease(outcome: Outcome): boolean {
    return this.releases?.has(outcome) ?? false;
  }

  /** Whether this nack's settle kept it one (counted in retried or failed), or has not answered: not stale, not cancelled. */
  keptNack(outcome: Outcome): boolean {
    return !this.notKept?.has(outcome);
  }

  /** The report's releasedUnstarted: releases with a reason whose settle kept them releases (or has not answered). */
  get unstarted(): number {
    return this.unstartedCount;
  }

  /** Its settle made this release a nack, released unstarted too often in a row: a failure, its attempt spent. */
  neverStarted(outcome: Outcome): void {
    const job = this.notUnstarted(outcome);
    if (job && outcome.outcome === 'release') this.keep(job, outcome, neverStartedError(outcome.error!), job.attempt <= job.maxRetries);
  }

  /** A release with a reason its settle did not keep a release: no longer counted in unstarted; its job. */
  private notUnstarted(outcome: Outcome): Job | undefined {
    const job = this.releases?.get(outcome);
    if (job && this.releases!.delete(outcome)) this.unstartedCount--;
    return job;
  }

  private keep(job: Job, outcome: Outcome, error: string, willRetry: boolean): void {
    // Past the list by more than the failures before it that may turn out stale: it can never be listed.
    if (this.pending <= this.kept.length - MAX_REPORTED_FAILURES) {
      this.dropped++;
      (this.droppedPending ??= new WeakSet()).add(outcome);
      return;
    }
    const entry = { id: job.id, task: job.task, attempt: job.attempt, error, willRetry };
    const kept = { entry, outcome, pending: true };
    this.kept.push(kept);
    (this.byOutcome ??= new Map()).set(outcome, kept);
    this.pending++;
  }

  /** Its settle ended this outcome's job cancelled: it will not run again. */
  endedCancelled(outcome: Outcome): void {
    this.notUnstarted(outcome);
    if (outcome.outcome !== 'release') (this.notKept ??= new WeakSet()).add(outcome);
    const kept = this.byOutcome?.get(outcome);
    if (kept) kept.entry.willRetry = false;
  }

  /** Its settle found this outcome stale: it is no failure of this drain's. */
  stale(outcome: Outcome): void {
    this.notUnstarted(outcome);
    if (outcome.outcome !== 'release') (this.notKept ??= new WeakSet()).add(outcome);
    const kept = this.byOutcome?.get(outcome);
    if (kept) {
      this.byOutcome!.delete(outcome);
      this.kept.splice(this.kept.indexOf(kept), 1);
      if (kept.pending) this.pending--;
    } else if (this.droppedPending?.delete(outcome)) {
      this.dropped--;
    }
  }

  /**
   * A settle of these outcomes answered (after its endedCancelled and stale):
   * what it did not find stale happened. Failures past the list that can no
   * longer move up are then only counted. Nothing to do while none is pending.
   */
  answered(batch: readonly Outcome[]): void {
    if (this.pending === 0) return;
    for (const o of batch) {
      const kept = this.byOutcome?.get(o);
      if (kept?.pending) {
        kept.pending = false;
        this.pending--;
      }
    }
    // From the last: one with no more pending before it than its distance past the list goes, and so then do all after it.
    for (let last = this.kept.at(-1); last && this.pending - (last.pending ? 1 : 0) <= this.kept.length - 1 - MAX_REPORTED_FAILURES;
         last = this.kept.at(-1)) {
      this.kept.pop();
      this.byOutcome!.delete(last.outcome);
      this.dropped++;
      if (last.pending) {
        this.pending--;
        (this.droppedPending ??= new WeakSet()).add(last.outcome);
      }
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
  return line.length > FAILURE_LINE ? `${sliceUnits(line, FAILURE_LINE)}…` : line;
}
