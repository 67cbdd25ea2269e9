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
}

/** Options of one published job. All optional; the database fills defaults. */
export interface PublishOptions {
  /** Run at this time. Exclusive with delaySeconds. */
  runAt?: Date;
  /** Run this many seconds from now. */
  delaySeconds?: number;
  /** Seconds a delivery may run before its lease expires (default 60). */
  timeoutSeconds?: number;
  /** Greater runs first (default 0). */
  priority?: number;
  /** Retries after the first attempt (default 3). */
  maxRetries?: number;
}

export interface BulkJob extends PublishOptions {
  task: string;
  body?: unknown;
}

/** What a handler gets besides the body. */
export interface JobContext {
  job: Job;
  /** Fires at the job's timeout, at the drain's deadline, or when the drain is stopped. */
  signal: AbortSignal;
  /** Publishes a follow-up job. */
  publish(task: string, body?: unknown, options?: PublishOptions): Promise<string>;
}

export type Handler<Body = any, Result = unknown> = (body: Body, ctx: JobContext) => Promise<Result> | Result;

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
  /** true when the job will run again, false when it ended as a failure. */
  willRetry: boolean;
}

export type StoppedBy = 'empty' | 'deadline' | 'signal';

/** What one drain did. */
export interface DrainReport {
  claimed: number;
  succeeded: number;
  /** Ended as failures (retries spent, or failed without retry). */
  failed: number;
  /** Failed this attempt and will run again. */
  retried: number;
  /** Given back unstarted (or stopped by a signal) without spending an attempt. */
  released: number;
  /** Due jobs left alone because their timeout did not fit the remaining budget. */
  skipped: number;
  /** Outcomes not applied because the lease had passed to another consumer. */
  stale: number;
  stoppedBy: StoppedBy;
  durationMs: number;
  /** Claim statements sent. */
  batches: number;
  failures: FailedJob[];
}

export type { Queryable };
