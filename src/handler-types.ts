// What a task's handler is and what it gets: its context (one job's, or a
// batch call's), its signatures, and the map of handlers by task name.
import type { Queryable } from './db/driver.js';
import type { SignalOption } from './send.js';
import type { Job, PublishOptions } from './types.js';

/** What a handler gets besides the body. */
export interface JobContext {
  job: Job;
  /**
   * Fires a margin before the job's timeout ends (min(0.5 s, a tenth of it): its nack then lands
   * within its lease), at the drain's deadline, or when the drain is stopped.
   */
  signal: AbortSignal;
  /**
   * Publishes a follow-up job. In a transactional task it joins the task's
   * transaction: the follow-up exists only if the job's ack commits. Given up
   * when `signal` fires while the handler runs, or `options.signal` (yours).
   */
  publish(task: string, body?: unknown, options?: PublishOptions & SignalOption): Promise<string>;
  /**
   * Reports progress (any JSON up to 64 KiB, e.g. { done: 40, total: 100 }):
   * stored on the running job, shown by getJob and GET /jobs/:id while it
   * runs, gone from its history. Calls made while one is in flight coalesce
   * (the latest value wins). Answers whether it was stored: false once this
   * delivery is over (settled, timed out, handed out again) or when the
   * statement failed; it never rejects. A value that is not JSON or too large
   * throws a ValidationError naming `progress`. Not part of a transactional
   * task's transaction: it shows at once.
   */
  progress(value: unknown): Promise<boolean>;
  /**
   * Extends this delivery's lease to at least `seconds` (0.001 to 86400) from
   * now, never shortening it (pg-boss's touch): a long job keeps a short
   * timeout, so a crash gives it back after that short time. Answers the new
   * lease end, and this drain then runs the handler on to it, less the same margin
   * (ctx.signal no longer fires a margin before the old end), but never past the drain's own stop (its
   * deadline: then it is stopped, nacked, as any job running there; or
   * graceMs after its signal). Answers null, changing nothing, once this
   * delivery is over (timed out, settled, cancelled, handed out again), and
   * when the statement failed: it never rejects. A null from the database
   * while the handler still runs here means the lease was lost (it passed
   * and a claim expired the job): ctx.signal then fires ('lease lost: …').
   * So null with ctx.signal not fired is a failed statement. Bad input throws at the
   * call, a ValidationError naming `seconds`, before any statement. Through the
   * drain's connections, not a transactional task's transaction (on one
   * session, PGlite or a pool of 1, it answers null).
   */
  extendLease(seconds: number): Promise<Date | null>;
  /**
   * Takes a token from the database's bucket `key` (up to `limit` calls per
   * `perSeconds`, shared by every drain and process on this database), or
   * throws a SnoozeJob: the job goes back until the next token, its attempt
   * not spent, freeing its handler slot. Call it before the limited call:
   * `await ctx.rateLimit('stripe', { limit: 100, perSeconds: 60 })`.
   * In a transactional task it runs outside the transaction: a token taken
   * stays taken. Bad arguments throw a ValidationError naming the field.
   */
  rateLimit(key: string, options: { limit: number; perSeconds: number }): Promise<void>;
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

/** One job of a batch handler's call (defineTask(…, { batch: true })). */
export interface BatchItem<Body = unknown> {
  body: Body;
  job: Job<Body>;
}

/** What a batch handler gets besides its jobs: one for the whole call. */
export interface BatchContext {
  /**
   * Fires a margin before the earliest timeout of the call's jobs (as JobContext.signal), at the
   * drain's deadline, when the drain stops, or once every job of the call was cancelled.
   */
  signal: AbortSignal;
  /** Publishes a follow-up job, bound to signal while the handler runs (as JobContext.publish). */
  publish(task: string, body?: unknown, options?: PublishOptions & SignalOption): Promise<string>;
  /** Takes one token for the whole call, or throws a SnoozeJob: every job of it goes back (JobContext.rateLimit). */
  rateLimit(key: string, options: { limit: number; perSeconds: number }): Promise<void>;
}

/**
 * A batch handler's answer: nothing (every job succeeds), or one item per job,
 * in order: its result (JSON), or an Error (FailJob, RetryJob, SnoozeJob too)
 * that settles that job as if its own handler had thrown it.
 */
export type BatchResults<Result = unknown> = void | undefined | null | readonly (Result | Error | undefined)[];

/** A handler defined with { batch: true }: one call for many jobs of its task. */
export type BatchHandler<Body = any, Result = unknown> =
  (jobs: BatchItem<Body>[], ctx: BatchContext) => Promise<BatchResults<Result>> | BatchResults<Result>;

/**
 * Handlers by task name: nested (`{ math: { sum } }` serves `math.sum`) or
 * flat (`{ 'math.sum': sum }`), as an ES module's exports are.
 */
export interface TaskMap {
  [name: string]: Handler | TaskMap | unknown;
}
