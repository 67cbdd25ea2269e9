// One job's handler, run: whatever it returns, throws or rejects with
// becomes the outcome drain() settles.
import { isTransactional, runTransactional } from './define-task.js';
import type { DrainDeps } from './drain.js';
import type { Thrown } from './drain-hooks.js';
import { DrainJobContext, type LazySignal } from './job-context.js';
import type { ProgressSink } from './progress.js';
import type { RateLimit } from './rate-limit.js';
import { askedOutcome } from './job-errors.js';
import { resultJson } from './json-text.js';
import type { Outcome, Settler } from './settler.js';
import { resolveHandler } from './tasks.js';
import type { Job } from './types.js';

/**
 * Runs one handler and turns whatever happens into an outcome; null when a
 * transactional handler already settled its job (counted into settler).
 */
export async function runHandler(job: Job, deps: DrainDeps, publish: DrainDeps['publish'], signal: LazySignal,
                                 settler: Settler, progress: ProgressSink, rateLimit: RateLimit): Promise<Outcome | null> {
  const { id, attempt } = job;
  const began = Date.now();
  try {
    const handler = resolveHandler(deps.tasks, job.task); // inside: an export may be a getter that throws
    if (!handler) {
      return { id, attempt, outcome: 'nack', error: `unknown task "${job.task}": the tasks module exports no handler by that name` };
    }
    const ctx = new DrainJobContext(job, signal, publish, progress, rateLimit);
    if (isTransactional(handler)) {
      if (!('transaction' in deps.db)) throw new TypeError('a transactional task needs a driver with transactions');
      settler.count(await runTransactional(deps.db, handler, job, ctx));
      return null;
    }
    let value: unknown;
    try {
      value = await handler(job.body, ctx);
    } finally {
      ctx.handlerEnded(); // what it left publishing is no longer given up with its job (DrainJobContext)
    }
    return { id, attempt, outcome: 'ack', result: resultJson(value), ms: Date.now() - began };
  } catch (error) {
    return thrownOutcome(id, attempt, error);
  }
}

/**
 * A throw (a transactional one after its rollback) is retried after the
 * backoff, unless it is a FailJob (fail now), a RetryJob (retry at its time)
 * or a SnoozeJob (given back until its time, its attempt not spent).
 */
export function thrownOutcome(id: string, attempt: number, error: unknown): Outcome & Thrown {
  const asked = askedOutcome(error, Date.now());
  // thrown rides along for DrainOptions.onJobEnd (drain-hooks.ts); settling reads only the text.
  if (asked === undefined) return { id, attempt, outcome: 'nack', error: describe(error), thrown: error };
  if (asked === 'fail') return { id, attempt, outcome: 'fail', error: describe(error), thrown: error };
  if (asked.snooze) return { id, attempt, outcome: 'release', retryAt: asked.retryAt, thrown: error };
  return { id, attempt, outcome: 'nack', error: describe(error), retryAt: asked.retryAt, thrown: error };
}

function describe(error: unknown): string {
  // PostgreSQL text cannot hold NUL: one in an error would fail the whole batch's settle.
  return describeRaw(error).replaceAll('\0', '\\0');
}

function describeRaw(error: unknown): string {
  try {
    if (isError(error)) return error.stack ?? `${error.name}: ${error.message}`;
    try {
      return `non-Error thrown: ${JSON.stringify(error)}`;
    } catch {
      return `non-Error thrown: ${String(error)}`;
    }
  } catch {
    return 'thrown a value that cannot be read (a revoked Proxy, a getter that throws)'; // settled all the same
  }
}

/**
 * An Error of this realm or of another (node:vm, an iframe), where instanceof
 * misses it. May throw (a revoked Proxy).
 */
export function isError(value: unknown): value is Error {
  return value instanceof Error || Object.prototype.toString.call(value) === '[object Error]';
}
