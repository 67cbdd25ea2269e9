/**
 * Glossary
 * - task: a dotted name (`email.send`) naming the handler that runs a job.
 * - job: one unit of work: a task, a JSON body and options; a row in
 *   jobs.job_queue while pending or running, in jobs.job once ended.
 * - delivery / attempt: one hand-out of a job to a consumer. attempt 1 is the
 *   first run; a job runs at most max_retries + 1 times.
 * - lease: how long a delivery may run (the job's timeout) before the queue
 *   hands the job out again.
 * - drain: one bounded pass that claims, runs and settles jobs until the queue
 *   is empty, its deadline is near, or it is told to stop.
 * - settle: ack (success), nack (retry or fail) or release (give back
 *   without spending the attempt).
 * - queue: a named queue (jobs.queue); every job belongs to one, a drain
 *   consumes one ('default' unless told).
 * - dead letter: a job that ended as a failure; jobs.redrive runs it again.
 */
import type { Queryable } from './db/driver.js';

/** JSON a job body or result may hold. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** The delivery a handler runs. */
export interface Job<Body = unknown> {
  /** bigint job id, as a string. */
  id: string;
  task: string;
  body: Body;
  /** 1 on the first try. */
  attempt: number;
  maxRetries: number;
  /** Seconds this delivery may run. */
  timeout: number;
  priority: number;
  /** When the lease ends (database clock). */
  leaseUntil: Date;
  scheduledAt: Date;
  createdAt: Date;
  /** The queue it was published to. */
  queue: string;
  /** The attributes it was published with, or null. */
  attributes: Record<string, Json> | null;
}

/** Options of one published job. All optional; the database fills defaults. */
export interface BulkPublishOptions {
  /** Run at this time. Exclusive with delaySeconds. */
  runAt?: Date | undefined;
  /** Run this many seconds from now. */
  delaySeconds?: number | undefined;
  /** Seconds a delivery may run before its lease expires (default 60). */
  timeoutSeconds?: number | undefined;
  /** Greater runs first (default 0). */
  priority?: number | undefined;
  /** Retries after the first attempt (default 3). */
  maxRetries?: number | undefined;
}

/** Options only single publishes take (publishBulk takes the queue per call). */
export interface PublishOptions extends BulkPublishOptions {
  /** A queue made with queues.create (default 'default'). */
  queue?: string | undefined;
  /** While a job with this key is active (pending, scheduled, blocked or running), publishing another returns its id. */
  dedupeKey?: string | undefined;
  /**
   * What a publish does while a job holds its dedupeKey. 'keep' (default):
   * returns that job's id. 'replace' (debounce): a job not yet started takes
   * this publish's task, body, run time and options, keeping its id; a
   * running one finishes without the key, and a new job takes it.
   */
  dedupeMode?: 'keep' | 'replace' | undefined;
  /** Jobs sharing a key run one at a time, in publish order. */
  serialKey?: string | undefined;
  /** Run only after all these jobs succeeded; if one fails or is cancelled, this one is cancelled. */
  dependsOn?: readonly string[] | undefined;
  /** A JSON object drains can filter on (DrainOptions.filter, containment). */
  attributes?: Record<string, Json> | undefined;
}

export interface BulkJob extends BulkPublishOptions {
  task: string;
  body?: unknown;
}

/** What a handler gets besides the body. */
export interface JobContext {
  job: Job;
  /** Fires at the job's timeout, at the drain's deadline, or when the drain is stopped. */
  signal: AbortSignal;
  /**
   * Publishes a follow-up job. In a transactional task it joins the task's
   * transaction: the follow-up exists only if the job's ack commits.
   */
  publish(task: string, body?: unknown, options?: PublishOptions): Promise<string>;
  /**
   * Transactional tasks only (defineTask(…, { transactional: true })): the
   * transaction the job's ack commits in. Database work done through it
   * happens exactly once.
   */
  db?: Queryable;
}

export type Handler<Body = any, Result = unknown> = (body: Body, ctx: JobContext) => Promise<Result> | Result;

/** A transactional task's context: db is always there. */
export interface TransactionalJobContext extends JobContext {
  db: Queryable;
}

/** A handler defined with { transactional: true }. */
export type TransactionalHandler<Body = any, Result = unknown> =
  (body: Body, ctx: TransactionalJobContext) => Promise<Result> | Result;

/**
 * Handlers by task name: nested (`{ math: { sum } }` serves `math.sum`) or
 * flat (`{ 'math.sum': sum }`), as an ES module's exports are.
 */
export interface TaskMap {
  [name: string]: Handler | TaskMap | unknown;
}

export interface FailedJob {
  id: string;
  task: string;
  attempt: number;
  error: string;
  /** true when the job will run again (as the drain saw it: a cancel requested meanwhile ends it as cancelled), false when it ended. */
  willRetry: boolean;
}

/**
 * Why a drain returned. 'empty': nothing was left to claim; a lingering drain
 * (DrainOptions.lingerMs) says so too when its linger or its deadline ends an
 * idle wait. 'deadline': it stopped for its deadline with work left (running,
 * or due jobs whose timeout no longer fit: `skipped`). 'signal': options.signal
 * or hardSignal, lingering or not.
 */
export type StoppedBy = 'empty' | 'deadline' | 'signal';

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
  /** Given back unstarted (or stopped by a signal) without spending an attempt. */
  released: number;
  /** Due jobs left alone because their timeout did not fit the remaining budget. */
  skipped: number;
  /** Outcomes not applied because the lease had passed to another consumer. */
  stale: number;
  /** The drain's last claim found its queue paused (jobs.pause_queue): none of its jobs runs until resumed. */
  queuePaused: boolean;
  stoppedBy: StoppedBy;
  /** Wall-clock time of the drain, a lingering drain's idle waits included. */
  durationMs: number;
  /** Claim statements sent. */
  batches: number;
  /** The first 100 failed deliveries (nacked, timed out, or failed after a cancel), in the order they ended. */
  failures: FailedJob[];
  /** Failed deliveries past those 100, counted only (jobs.job has every error). */
  failuresOmitted: number;
}

export type { Queryable };

/** How a job ended, as stored in jobs.job. */
export interface JobOutcome {
  id: string;
  task: string;
  status: 'success' | 'failure' | 'cancelled';
  /** The handler's return value (success). */
  result: unknown;
  /** Why it failed or was cancelled; for a success, the error of the attempt before, if any. */
  error: string | null;
  attempts: number;
  durationMs: number | null;
  workerId: string | null;
  queue: string;
  endedAt: Date;
}

/** A job as it is now (queue.getJob): queued, running or ended. */
export interface JobInfo {
  id: string;
  task: string;
  state: 'pending' | 'scheduled' | 'blocked' | 'running' | 'expired' | 'success' | 'failure' | 'cancelled';
  body: unknown;
  /** The handler's return value, once it succeeded. */
  result: unknown;
  /** The last error: why it failed, or what the attempt before reported. */
  error: string | null;
  /** Attempts started so far. */
  attempts: number;
  maxRetries: number;
  priority: number;
  queue: string;
  attributes: Record<string, unknown> | null;
  /** The drain that runs it or ran it last. */
  workerId: string | null;
  runAt: Date;
  createdAt: Date;
  startedAt: Date | null;
  endedAt: Date | null;
}

/** Which dead letters jobs.redrive runs again; all filters given must match. */
export interface RedriveFilter {
  ids?: readonly string[] | undefined;
  /** Task LIKE pattern where only % is a wildcard ('email.%'). */
  task?: string | undefined;
  queue?: string | undefined;
  endedAfter?: Date | undefined;
  /** SQL LIKE pattern over the error text. */
  errorLike?: string | undefined;
  /** Also put back cancelled jobs among ids (needs ids). */
  includeCancelled?: boolean | undefined;
}

/** What queue.reschedule changes: the run time (runAt or delaySeconds from now), the priority, or both. */
export interface RescheduleOptions {
  runAt?: Date | undefined;
  delaySeconds?: number | undefined;
  priority?: number | undefined;
}
