// Errors a handler throws to choose its job's outcome, beyond "return: ack"
// and "throw: retry after the backoff". Named for what happens to the job:
// not "cancel" (jobs.cancel ends a job as 'cancelled'; FailJob ends it as a
// 'failure', a dead letter that redrive can run again), not "unrecoverable"
// (a name for the error, where the reader of a handler wants the action).
import { ValidationError } from './errors.js';
import { isJobTime, LAST_MS, MAX_DELAY_SECONDS } from './options.js';

// Brands, not classes: the CLI bundles its own copy of this file while a
// tasks module imports pgdrain from node_modules, so instanceof would miss.
const FAIL_BRAND = Symbol.for('pgdrain.fail_job');
const RETRY_BRAND = Symbol.for('pgdrain.retry_job');
const SNOOZE_BRAND = Symbol.for('pgdrain.snooze_job');

const MAX_DELAY_MS = MAX_DELAY_SECONDS * 1000;

/**
 * FailJob's, RetryJob's and SnoozeJob's mark in types only (no such value
 * exists): defineTask refuses a result type that holds one (json-body.ts
 * AsJson), as one returned instead of thrown fails its job.
 */
export declare const OUTCOME_TYPE: unique symbol;

/**
 * Thrown by a handler: its job ends now as a failure with this error
 * (message and stack in jobs.job.error), whatever retries it has left.
 * `throw new FailJob('card declined: no retry will help')`
 */
export class FailJob extends Error {
  override readonly name: string = 'FailJob';
  declare readonly [OUTCOME_TYPE]: 'FailJob';

  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    Object.defineProperty(this, FAIL_BRAND, { value: true });
  }
}

/** When a RetryJob asks to run again: at a time, or after a delay. */
export type RetryWhen = { at: Date; delayMs?: undefined } | { delayMs: number; at?: undefined };

/**
 * Thrown by a handler: its job runs again at `at` (a time already past: at
 * once) or `delayMs` from now, instead of after the backoff. The retry
 * spends an attempt as any retry does: with none left, the job ends as a
 * failure with this error. The time is this process's clock, sent as is.
 * `throw new RetryJob('rate limited', { delayMs: 60_000 })`
 */
export class RetryJob extends Error {
  override readonly name: string = 'RetryJob';
  declare readonly [OUTCOME_TYPE]: 'RetryJob';
  readonly at: Date | undefined;
  readonly delayMs: number | undefined;

  constructor(message: string, options: RetryWhen & { cause?: unknown }) {
    const { at, delayMs, cause } = checkWhen(options);
    super(message, cause === undefined ? undefined : { cause });
    this.at = at;
    this.delayMs = delayMs;
    Object.defineProperty(this, RETRY_BRAND, { value: true });
  }
}

/**
 * Thrown by a handler: its job is given back to run again at `at` (a time
 * already past: at once) or `delayMs` from now, WITHOUT spending an attempt
 * (RetryJob spends one): "not yet", as for a rate limit or a resource still
 * busy. The drain reports it as released. The job's last_error counts the
 * snoozes in a row ('snoozed until … (3 in a row)'), so a job that snoozes
 * forever shows. In a transactional task its work is rolled back first.
 * `throw new SnoozeJob({ delayMs: 30_000 })`
 */
export class SnoozeJob extends Error {
  override readonly name: string = 'SnoozeJob';
  declare readonly [OUTCOME_TYPE]: 'SnoozeJob';
  readonly at: Date | undefined;
  readonly delayMs: number | undefined;

  constructor(options: RetryWhen & { cause?: unknown }) {
    const { at, delayMs, cause } = checkWhen(options);
    super(at ? `snoozed until ${at.toISOString()}` : `snoozed for ${delayMs} ms`, cause === undefined ? undefined : { cause });
    this.at = at;
    this.delayMs = delayMs;
    Object.defineProperty(this, SNOOZE_BRAND, { value: true });
  }
}

function checkWhen(options: unknown): { at?: Date; delayMs?: number; cause?: unknown } {
  if (typeof options !== 'object' || options === null) {
    throw new ValidationError('options', 'must be { at: Date } or { delayMs: number }');
  }
  const unknown = Object.keys(options).filter((k) => k !== 'at' && k !== 'delayMs' && k !== 'cause');
  if (unknown.length > 0) throw new ValidationError('options', `unknown option ${unknown.map((k) => JSON.stringify(k)).join(', ')}`);
  const { at, delayMs, cause } = options as { at?: unknown; delayMs?: unknown; cause?: unknown };
  if (at !== undefined && delayMs !== undefined) throw new ValidationError('options.delayMs', 'give at or delayMs, not both');
  if (at === undefined && delayMs === undefined) {
    throw new ValidationError('options', 'must give at (a Date) or delayMs (milliseconds from now)');
  }
  if (at !== undefined) {
    if (!isJobTime(at)) { // as publish's runAt
      throw new ValidationError('options.at', 'must be a valid Date from 1970 to 9999');
    }
    return { at: new Date(at.getTime()), cause };
  }
  if (typeof delayMs !== 'number' || !(delayMs >= 0 && delayMs <= MAX_DELAY_MS)) {
    throw new ValidationError('options.delayMs', `must be a finite number of milliseconds from 0 to ${MAX_DELAY_MS} (ten years)`);
  }
  return { delayMs, cause };
}

/**
 * Which of FailJob, RetryJob or SnoozeJob a value is, by its brand (any
 * copy of pgdrain), or undefined: one returned is data to JSON, its name only.
 */
export function outcomeClassOf(value: object): 'FailJob' | 'RetryJob' | 'SnoozeJob' | undefined {
  const e = value as { [FAIL_BRAND]?: unknown; [RETRY_BRAND]?: unknown; [SNOOZE_BRAND]?: unknown };
  return e[FAIL_BRAND] === true ? 'FailJob' : e[RETRY_BRAND] === true ? 'RetryJob' : e[SNOOZE_BRAND] === true ? 'SnoozeJob' : undefined;
}

/**
 * What a thrown value asks of its job: 'fail', a retry or a snooze at a time
 * (ISO text, never before `now`: a time past keeps the job's place in claim
 * order as if it were due now), or undefined for a plain throw (retry after
 * the backoff). A RetryJob or SnoozeJob whose fields were changed into
 * nonsense is a plain throw, so one bad time cannot fail its whole batch's settle.
 */
export function askedOutcome(thrown: unknown, now: number):
  'fail' | { retryAt: string; snooze: boolean } | undefined {
  if (thrown === null || (typeof thrown !== 'object' && typeof thrown !== 'function')) return undefined;
  try {
    const e = thrown as { [FAIL_BRAND]?: unknown; [RETRY_BRAND]?: unknown; [SNOOZE_BRAND]?: unknown; at?: unknown; delayMs?: unknown };
    if (e[FAIL_BRAND] === true) return 'fail';
    const snooze = e[SNOOZE_BRAND] === true;
    if (!snooze && e[RETRY_BRAND] !== true) return undefined;
    const ms = typeof e.delayMs === 'number' ? now + e.delayMs : e.at instanceof Date ? e.at.getTime() : NaN;
    if (!(ms <= LAST_MS)) return undefined; // NaN too
    return { retryAt: new Date(Math.max(ms, now)).toISOString(), snooze };
  } catch {
    return undefined; // a getter or proxy that throws: a plain throw
  }
}
