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

// Here: a job and what publishing one takes. Handlers' types, a drain's
// report and what the queue-management calls take and show have modules of
// their own, re-exported here as they always were.
export type * from './handler-types.js';
export type * from './json-body.js';
export type * from './drain-report-types.js';
export type { Queryable } from './db/driver.js';
export type * from './admin-types.js';

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
  /**
   * Seconds of this delivery's lease from its claim. A drain ends its handler a margin before
   * (min(0.5 s, a tenth): ctx.signal fires, the job is nacked) so that its outcome lands within the lease.
   */
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
  /**
   * The job's own retry policy, as a queue's (NamedQueueOptions): with any of
   * the three given it wins over its queue's (the others take the policy's
   * defaults, not the queue's); with none, the queue's applies, else the
   * global backoff. It spaces nacks only: an expired lease goes back at
   * once. A handler's RetryJob wins.
   */
  retryDelaySeconds?: number | undefined;
  /** true (default): retry k waits between d/2 and d for d = base·2^(k−1); false: the base exactly. */
  retryBackoff?: boolean | undefined;
  /** The longest retry wait, 1 to 604800 seconds (an hour when left out), at least retryDelaySeconds (5 when that is left out). */
  retryDelayMaxSeconds?: number | undefined;
  /**
   * Not started by then, the job never runs: the next claim (or maintenance)
   * ends it as a failure, 'expired: not started before …'. After its
   * scheduled time. Exclusive with expiresInSeconds. A running job is not
   * affected; one retried after it passed expires at the next claim, its
   * last error (why it was retried) on the next line.
   */
  expiresAt?: Date | undefined;
  /** An expiry this many seconds after the job's scheduled time (left out: its queue's expiresInSeconds, else none). */
  expiresInSeconds?: number | undefined;
  /**
   * The job's own dead-letter queue (pg-boss's deadLetter): failing for good,
   * it is copied there, as its queue's deadLetter would copy it, and not to
   * its queue's. An existing queue, not the job's own nor one whose
   * dead letters lead back to it. A dedupe replace takes the new one;
   * redrive keeps it. Left out: its queue's, if any.
   */
  deadLetter?: string | undefined;
  /**
   * The job's group (pg-boss's group): in a queue with groupConcurrency, at
   * most that many jobs of one group (`id`) run at once, across every
   * drain; `tier` picks the tier's cap from the queue's groupConcurrency.tiers.
   * Each 1 to 200 characters. Left out: the job is never held back.
   */
  group?: JobGroup | undefined;
}

/** A job's group: publish's `group` option, and JobInfo's. */
export interface JobGroup {
  id: string;
  tier?: string | undefined;
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
   * 'replace_keep_time' (graphile-worker's preserve_run_at): as 'replace',
   * but a job not yet started keeps its run time (this runAt / delaySeconds
   * count only for a new job); an expiry given (expiresInSeconds counted
   * from this publish's own run time) must fall after the kept time, one
   * left out is its queue's expiresInSeconds after it.
   * 'keep_waiting' (pg-boss's policy short): returns the id of a job that
   * has not started yet; a running one, or one waiting to retry, finishes
   * (and retries) without the key, and a new job takes it. With serialKey =
   * dedupeKey: one waiting and one running job per key (pg-boss's stately;
   * docs/job-keys.md: Dedupe key).
   */
  dedupeMode?: 'keep' | 'keep_waiting' | 'replace' | 'replace_keep_time' | undefined;
  /**
   * With dedupeKey (mode 'keep'; refused with the others): for this many seconds after this publish
   * wrote a job (more than 0, at most 2592000: 30 days), a publish of the key
   * with throttleSeconds returns that job's id even once it has ended, and
   * writes nothing; unless that job expired unstarted (expiresAt passed while
   * it waited, no attempt spent), was cancelled (a running one: once its
   * cancel is requested), or its history was deleted (deleteJobs, maintain's
   * retention): then a new job is written, and its publish opens the window
   * anew. publishBulk takes none.
   */
  throttleSeconds?: number | undefined;
  /** Jobs sharing a key run one at a time, in publish order. */
  serialKey?: string | undefined;
  /** Run only after all these jobs succeeded; if one fails or is cancelled, this one is cancelled. */
  dependsOn?: readonly string[] | undefined;
  /** A JSON object drains can filter on (DrainOptions.filter, containment) or skip (DrainOptions.exclude). */
  attributes?: Record<string, Json> | undefined;
}

/**
 * One job of publishBulk: publish's per-job options. Its dedupeKey keeps
 * only (a job whose key an active job, or an earlier job of the bulk,
 * holds answers that job's id); no dependsOn: publish those one at a time.
 */
export interface BulkJob extends BulkPublishOptions {
  task: string;
  body?: unknown;
  dedupeKey?: string | undefined;
  /** 'keep' or 'keep_waiting': a bulk publish does not replace in either mode (publish does). */
  dedupeMode?: 'keep' | 'keep_waiting' | undefined;
  serialKey?: string | undefined;
  attributes?: Record<string, Json> | undefined;
}

/**
 * publishEvent's options, for every job it writes (left out: each queue's
 * defaults, retry policy and expiresInSeconds, then the global ones; no
 * group). No dedupeKey (refused, saying why: EVENT_TAKES_NO): a key is global, not per queue, so one key
 * would collapse the fan-out into one job.
 */
export type PublishEventOptions = Pick<PublishOptions, 'runAt' | 'delaySeconds' | 'timeoutSeconds' | 'priority' | 'maxRetries'
  | 'attributes' | 'retryDelaySeconds' | 'retryBackoff' | 'retryDelayMaxSeconds' | 'expiresAt' | 'expiresInSeconds' | 'group'>;

