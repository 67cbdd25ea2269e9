// What the queue-management calls (admin.ts, admin-ends.ts, list-jobs.ts,
// queue.queues) take and show: named queues, a job as it is now, filters.
import type { Json } from './types.js';

/**
 * A named queue's settings (queues.create). A new queue takes those given
 * (left out: unbounded, the global defaults 60 s, 0, 3, no dead-letter
 * queue); an existing one changes only those given, and one given as null
 * is cleared to that.
 */
export interface NamedQueueOptions {
  /** Refuse publishing beyond this many waiting jobs (1 to 100000000). */
  maxSize?: number | null | undefined;
  /** timeoutSeconds of a job published to the queue without one. */
  timeoutSeconds?: number | null | undefined;
  /** priority of a job published to the queue without one. */
  priority?: number | null | undefined;
  /** maxRetries of a job published to the queue without one. */
  maxRetries?: number | null | undefined;
  /**
   * Another queue, created first, that gets a copy of every job failing
   * here for good (retries spent, FailJob, expiry, queue.fail; not a
   * cancel): same task, body and priority, and attributes plus
   * `dead_letter: { job_id, queue, error, attempts }`. Never refused by
   * that queue's maxSize. A loop back to this queue is refused.
   */
  deadLetter?: string | null | undefined;
  /**
   * The base delay of the queue's retries, 0 to 86400 seconds (null: 5). With
   * retryDelaySeconds, retryBackoff and retryDelayMaxSeconds all null, its
   * retries wait the global jobs.backoff(attempt). A handler's RetryJob wins.
   */
  retryDelaySeconds?: number | null | undefined;
  /** Retry k waits between d/2 and d for d = base·2^(k−1) (true or null), or the base exactly (false). */
  retryBackoff?: boolean | null | undefined;
  /** The longest retry wait, 1 to 604800 seconds, at least retryDelaySeconds (null: an hour, or the base when longer). */
  retryDelayMaxSeconds?: number | null | undefined;
  /**
   * At most this many of the queue's jobs run at once, across every drain
   * and claim (1 to 100000; null: unlimited). Its claims then wait for each
   * other's commit; a crashed drain's slots come back when its leases expire.
   */
  maxRunning?: number | null | undefined;
  /**
   * A job published here without an expiry of its own (expiresAt,
   * expiresInSeconds) expires this many seconds after its scheduled time
   * (more than 0, at most 315360000: ten years; null: never; pg-boss's
   * retentionSeconds). Jobs already published keep theirs. Not pg-boss's
   * expireInSeconds, a running job's limit: that is timeoutSeconds here.
   */
  expiresInSeconds?: number | null | undefined;
  /**
   * At most this many jobs of one group (publish's `group.id`) run at once,
   * across every drain and claim (1 to 100000; null: unlimited; pg-boss's
   * groupConcurrency): a number, or `{ default, tiers: { [tier]: n } }`,
   * where a job of a listed tier (`group.tier`) takes its tier's cap. Jobs
   * without a group are never held back.
   */
  groupConcurrency?: number | GroupConcurrency | null | undefined;
}

/** queues.create's groupConcurrency with tiers. */
export interface GroupConcurrency {
  default: number;
  tiers?: Record<string, number> | undefined;
}

/** A named queue as queues.list() shows it (null: unbounded, the global default, none). */
export interface NamedQueueInfo {
  name: string;
  maxSize: number | null;
  paused: boolean;
  timeoutSeconds: number | null;
  priority: number | null;
  maxRetries: number | null;
  deadLetter: string | null;
  retryDelaySeconds: number | null;
  retryBackoff: boolean | null;
  retryDelayMaxSeconds: number | null;
  maxRunning: number | null;
  expiresInSeconds: number | null;
  /** null: unlimited; a number with no tiers; { default, tiers } with them. */
  groupConcurrency: number | { default: number; tiers: Record<string, number> } | null;
  createdAt: Date;
}

/** queues.purge's options. */
export interface PurgeQueueOptions {
  /** Recorded as each purged job's error: 'cancelled: <reason>' (left out: 'cancelled: purged'). */
  reason?: string | undefined;
}

/** What queue.deleteJobs did with the ids it was given (an unknown id is in none). */
export interface DeletedJobs {
  /** Waiting jobs (pending, scheduled, blocked) deleted with no history; their dependants end as cancelled. */
  waiting: number;
  /** Ended jobs whose history (jobs.job, or jobs.job_archive) was deleted. */
  ended: number;
  /** Running jobs left alone, by id: a drain holds them. Cancel them, then delete them once ended. */
  running: string[];
}

/** queues.deleteEnded's options. */
export interface DeleteEndedOptions {
  /** Only jobs that ended before this time (left out: all of the queue's ended jobs). */
  endedBefore?: Date | undefined;
  /** At most this many in one call, 1 to 10000000 (default 100000): call again until it returns less. */
  maxRows?: number | undefined;
}

/** A queue's subscription to an event (queues.subscriptions()): its jobs of the event run task. */
export interface Subscription {
  event: string;
  queue: string;
  task: string;
  createdAt: Date;
}

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
  /**
   * While queued or running: its releases unstarted in a row (claimed, never started: given back, no attempt spent), the
   * count its error's first line shows; the 26th is a nack. Kept while it runs: 0 once a run of it retries, snoozes or
   * times out (or jobs.reschedule sets its attempt); null once it ended.
   */
  unstarted: number | null;
  /**
   * While queued or running: its snoozes in a row (SnoozeJob, ctx.rateLimit: given back to run later, no attempt spent),
   * the count its error's first line shows. 0 once a run of it retries or times out, it is released unstarted, or
   * jobs.reschedule sets its attempt, or a replace publish rewrites it; null once it ended.
   */
  snoozed: number | null;
  priority: number;
  queue: string;
  /** The job's own retry policy (publish's retryDelaySeconds…); all null: it follows its queue's. */
  retryDelaySeconds: number | null;
  retryBackoff: boolean | null;
  retryDelayMaxSeconds: number | null;
  /** The job's own dead-letter queue (publish's deadLetter), or null: its queue's deadLetter applies, if any. */
  deadLetter: string | null;
  /** The job's group (publish's group), or null. */
  group: { id: string; tier: string | null } | null;
  attributes: Record<string, unknown> | null;
  /** The drain that runs it or ran it last. */
  workerId: string | null;
  runAt: Date;
  createdAt: Date;
  startedAt: Date | null;
  endedAt: Date | null;
  /**
   * The last ctx.progress value while the job is queued or running, with the
   * attempt that reported it (older than `attempts` when a new delivery has
   * not reported yet) and when; null when none, and always once it ended.
   */
  progress: JobProgress | null;
  /**
   * When a waiting job expires if not started by then (its expiresAt, or its
   * queue's expiresInSeconds after its run time); null when it has none. An
   * ended job keeps the one it had.
   */
  expiresAt: Date | null;
}

/** A job's last reported progress (JobInfo.progress). */
export interface JobProgress {
  value: unknown;
  attempt: number;
  at: Date;
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
  /**
   * At most this many matching jobs whose dedupe key no active job holds, the oldest (by id) first (left
   * out: all): call again for the next ones. Held ones are passed over, up to 100 × maxRows read in a call.
   */
  maxRows?: number | undefined;
}

/** What queue.redrive did (jobs.redrive_counts): how many went back, and how many matching ones it left, and why. */
export interface RedriveResult {
  /** Jobs put back: they run again. */
  redriven: number;
  /**
   * Left as they are because an active job (waiting or running), or an older failure of the same key put back
   * by this call, holds their dedupe key: redriving one would make two. They go back once the key is free.
   */
  heldByKey: number;
  /** Left for the next call: of serial keys past the 500 one call puts back (each takes a lock until commit). Call again. */
  serialLater: number;
}

/**
 * Which jobs queue.listJobs answers, newest first: those matching every
 * filter given (none: the newest jobs).
 */
export interface ListJobsFilter {
  queue?: string | undefined;
  /** A task name, exactly. */
  task?: string | undefined;
  /** A state as JobInfo names it. */
  state?: JobInfo['state'] | undefined;
  /** JSON the body contains (jsonb `@>`): `{ userId: 42 }` finds bodies with that key and value, among others. */
  body?: Json | undefined;
  /** Only these jobs (at most 1000). */
  ids?: readonly string[] | undefined;
  /** Paging: only jobs older than this job id (the last id of the page before). */
  before?: string | undefined;
  /** At most this many, 1 to 1000 (default 100). */
  limit?: number | undefined;
}

/** A state queue.queueSize counts (see queueSize): pending (due now), scheduled (later), running (leased), expired (lease run out). */
export type QueueSizeState = 'pending' | 'scheduled' | 'running' | 'expired';

/** What queue.queueSize counts: the jobs in one state (default 'pending'). */
export interface QueueSizeOptions {
  state?: QueueSizeState | undefined;
}

/**
 * What queue.reschedule changes, one or more of: the run time (runAt or
 * delaySeconds from now), the priority, the retries (maxRetries, 0 to 1000)
 * and the attempts already spent (attempts: 0 gives a job all its runs
 * back; at most its maxRetries, so it keeps a run).
 */
export interface RescheduleOptions {
  runAt?: Date | undefined;
  delaySeconds?: number | undefined;
  priority?: number | undefined;
  maxRetries?: number | undefined;
  attempts?: number | undefined;
}
