// What a drain tells of its work: the report drain() returns, and the
// events its onJobStart and onJobEnd hooks get per job.
import type { Job } from './types.js';

export interface FailedJob {
  id: string;
  task: string;
  attempt: number;
  error: string;
  /** true when the job will run again (its settle retried it), false when it ended (retries spent, FailJob, or a cancel requested while it ran: its settle ended it cancelled). */
  willRetry: boolean;
}

/**
 * Why a drain returned. 'empty': nothing was left to claim; a lingering drain
 * (DrainOptions.lingerMs) says so too when its linger or its deadline ends an
 * idle wait. 'deadline': it stopped for its deadline with work left (running,
 * or due jobs whose timeout no longer fit: `skipped`), or lingering, its linger
 * ended with due jobs left while its pool's other drains held every connection
 * (its last look with no budget counts them in `skipped`). 'signal': options.signal
 * or hardSignal, lingering or not.
 */
export type StoppedBy = 'empty' | 'deadline' | 'signal';

/**
 * Why a drain's `skipped` jobs did not fit, as the claim that counted them
 * saw it: a first drain with a short deadline and jobs of the default
 * timeout runs nothing, and this says what would run them.
 */
export interface SkippedTimeouts {
  /** The shortest timeout among them (seconds): a budget above it takes one. */
  shortestSeconds: number;
  /** The longest (seconds): a budget above it takes them all. */
  longestSeconds: number;
  /** What the drain had left of its budget then (seconds, its settle margin taken off; 0: a last look with none). */
  budgetSeconds: number;
}

/** What one drain did. */
export interface DrainReport {
  claimed: number;
  succeeded: number;
  /** Ended as failures (retries spent, or failed without retry). */
  failed: number;
  /** Failed this attempt and will run again. */
  retried: number;
  /** Ended as cancelled (jobs.cancel while they ran). */
  cancelled: number;
  /** Given back without spending an attempt: unstarted, or snoozed (SnoozeJob, ctx.rateLimit). A handler still running at a signal's grace end is nacked (retried, or failed once its retries are spent), not released. */
  released: number;
  /**
   * Of `released`: jobs claimed and never started (a transactional handler that waited in vain for a connection), given
   * back with why in their last_error. The 26th such release in a row of a job is a nack (counted in retried or failed), not here.
   * After one, the drain claims no more jobs than its pool has connections free for them (none free: it waits) until a
   * claim takes one come free, so a job is released here again only if a connection it was claimed for went to another
   * first, or if its claims bring plain jobs too (docs/tasks.md: it claims as ever then), or once after a claim that came
   * back full, by a drain with plain or batch tasks (plain jobs may wait behind the transactional ones).
   */
  releasedUnstarted: number;
  /**
   * Due jobs left alone because their timeout did not fit the remaining budget, as its last claim counted them: at most
   * 1000 (1000 or more). A last look with no budget (no budget left, a linger's end or a wait for a
   * connection until the deadline on a full pool) counts every due one.
   */
  skipped: number;
  /** Of the jobs `skipped` counts: their timeouts, and the budget they exceeded; null when none was skipped. */
  skippedTimeouts: SkippedTimeouts | null;
  /**
   * Outcomes not applied: their delivery had ended without them (its lease expired, another drain took it over, a cancel or
   * fail ended it). A job whose transactional ack and the drain's own nack (its timeout, the grace's end) both went is counted
   * once, as what the one that applied did.
   */
  stale: number;
  /** The drain's last claim found its queue paused (jobs.pause_queue): none of its jobs runs until resumed. */
  queuePaused: boolean;
  /**
   * The drain's last claim got none of its queue's jobs because the queue's
   * maxRunning were running already (in any drain): as on an empty queue, it
   * waited for its own running jobs and claimed again, else stopped 'empty'.
   */
  queueAtMaxRunning: boolean;
  /**
   * The drain's last claim got none of its queue's jobs because the due
   * ones it would take belong to groups at their cap (the queue's
   * groupConcurrency, in any drain): as on an empty queue, it waited for
   * its own running jobs and claimed again, else stopped 'empty'.
   */
  queueAtGroupConcurrency: boolean;
  stoppedBy: StoppedBy;
  /** Wall-clock time of the drain, a lingering drain's idle waits included. */
  durationMs: number;
  /** Claim statements sent. */
  batches: number;
  /** The first 100 failed deliveries (nacked, timed out, or failed after a cancel), in the order they ended; a stale nack or fail changed nothing: none. */
  failures: FailedJob[];
  /** Failed deliveries past those 100, counted only (jobs.job has every error). */
  failuresOmitted: number;
  /**
   * The jobs the stop after its signal cut short, at the grace's end (graceMs) or hardSignal: `nacked`, their
   * handler running (an attempt spent: counted in retried or failed; one its settle found stale, its lease taken back
   * by another expiry or its transaction's commit first, or ended cancelled, is not), and `released`, still waiting for a
   * connection, never begun (no attempt spent: counted in released; one its settle made a nack, the job's 26th release
   * unstarted in a row, is not: it is in failures). Both 0 when it cut none.
   */
  interrupted: { nacked: number; released: number };
}

/** DrainOptions.onJobStart's argument: a claimed job whose handler starts now. */
export interface JobStartEvent {
  job: Job;
}

/** DrainOptions.onJobEnd's argument: a claimed job whose outcome the drain now knows. */
export interface JobEndEvent {
  job: Job;
  /**
   * ack: it succeeded. nack: it failed and runs again unless willRetry is
   * false (a throw, RetryJob, a timeout, an unknown task). fail: FailJob.
   * A job still running when the drain's stop after its signal came is a
   * nack ("did not stop within graceMs=…"). release: given back without
   * spending the attempt (claimed and never started, or a SnoozeJob). One never
   * started is told after its settle answered: the 26th in a row is a nack (unstarted.ts).
   * cancelled: jobs.cancel while it ran.
   */
  outcome: 'ack' | 'nack' | 'fail' | 'release' | 'cancelled';
  /**
   * The error recorded (message and stack): nack, fail and cancelled. A release of a job that never started: why
   * ("its timeout (1 s) was all but spent while it waited for a connection …"), its last_error's first line after
   * 'released unstarted (N in a row): '; none for a SnoozeJob.
   */
  error?: string;
  /** What the handler threw, when it threw (for Sentry.captureException). */
  thrown?: unknown;
  /** From the handler's start (0 for a job that never started). */
  durationMs: number;
  /** The job runs again: a nack with retries left, or a release (not a stale one). */
  willRetry: boolean;
  /**
   * A release of a job that never started whose settle found its delivery already ended (its lease taken back
   * by another expiry, which retried or failed it): it changed nothing, and the report counts it in `stale`, not
   * `released`; willRetry false (this drain does not know). Else absent.
   */
  stale?: true;
}
