// Batch tasks (defineTask(…, { batch: true })): the jobs of one task that a
// claim brings run in one handler call, and its answer settles each of them.
import type { BatchSpec } from './define-task.js';
import type { DrainDeps } from './drain.js';
import type { DrainHooks, Thrown } from './drain-hooks.js';
import { BatchCallContext, LazySignal } from './job-context.js';
import { askedOutcome } from './job-errors.js';
import { quietThenables } from './json-quiet.js';
import { resultJson } from './result-json.js';
import type { RateLimit } from './rate-limit.js';
import { isError } from './error-text.js';
import { thrownOutcome } from './thrown-outcome.js';
import type { Outcome } from './outcome-arrays.js';
import { timerEnd, type Expiring, type Timeouts } from './timeouts.js';
import type { Job } from './types.js';
import type { RunningJobs } from './running-jobs.js';
import type { Running } from './wind-down.js';

/** What a batch call needs of its drain. */
export interface BatchHost {
  running: RunningJobs;
  timeouts: Timeouts;
  hooks: DrainHooks | undefined;
  publish: DrainDeps['publish'];
  rateLimit: RateLimit;
  /** A job of a call ended: recorded (report, hook, settle), the drain woken. */
  settled(job: Job, outcome: Outcome | null, startedAt: number): void;
  /** The jobs of a handler call that starts (n > 0), or that returned or threw (n < 0). */
  calling(n: number): void;
}

const ignore = (): void => {};

/** The reason a call's signal gives once all its jobs are settled. */
const SETTLED = new Error('batch settled');

/**
 * Starts the batch calls of one claim's jobs. Each job of a call is in
 * host.running, as a plain job is: concurrency counts jobs, batched or not.
 */
export class BatchRunner {
  private groups: Map<BatchSpec, Job[]> | undefined;

  constructor(private readonly host: BatchHost) {}

  /** A claimed job of a batch task that can start (its end is before its timeout and stopAt), run by the next start(). */
  add(spec: BatchSpec, job: Job): void {
    const groups = (this.groups ??= new Map());
    const jobs = groups.get(spec);
    if (jobs) jobs.push(job);
    else groups.set(spec, [job]);
  }

  /** Starts a call per task of the jobs added, split by its maxSize. */
  start(claimSentAt: number, stopAt: number, now: number): void {
    if (!this.groups) return;
    for (const [spec, jobs] of this.groups) {
      for (let i = 0; i < jobs.length; i += spec.maxSize) this.call(spec, jobs.slice(i, i + spec.maxSize), claimSentAt, stopAt, now);
    }
    this.groups = undefined;
  }

  /** One call. Its jobs share their claim's time: it ends at their shortest timeout, or at stopAt. */
  private call(spec: BatchSpec, jobs: Job[], claimSentAt: number, stopAt: number, now: number): void {
    const { host } = this;
    const signal = new LazySignal();
    let left = jobs.length;
    const timeout = Math.min(...jobs.map((job) => job.timeout));
    const ownEnd = timerEnd(claimSentAt, timeout); // a margin before the leases' end: its nacks land within them
    const end = Math.min(ownEnd, stopAt);
    const timer: Expiring = {
      get ended() {
        return left === 0;
      },
      expire() {
        if (left === 0) return; // all its jobs ended before its timer fired
        const why = end < ownEnd ? 'stopped at the drain deadline' : `timed out after ${timeout} s`;
        signal.abort(new Error(why));
        for (const e of entries) {
          const error = e.job.timeout > timeout ? `${why} (the shortest timeout of its batch call)` : why;
          e.finish({ id: e.job.id, attempt: e.job.attempt, outcome: 'nack', error });
        }
      },
    };
    // Each job has its own entry: cancelled, it alone ends (its item of the answer is dropped); once
    // none is left (timeout, stop, cancels), the call's signal fires with the last reason given.
    const entries = jobs.map((job) => {
      const own = new LazySignal();
      const entry: Running = {
        job, startedAt: now, signal: own,
        finish: (outcome) => {
          if (host.running.get(job.id) !== entry) return;
          host.running.delete(job.id);
          if (--left === 0) {
            host.timeouts.clear(group);
            signal.abort(own.abortedWith ?? SETTLED);
          }
          host.settled(job, outcome, now);
        },
      };
      host.running.set(job.id, entry);
      return entry;
    });
    const group = host.timeouts.at(end, timer);
    host.calling(jobs.length);
    if (host.hooks) for (const job of jobs) host.hooks.started(job);
    void runCall(spec, jobs, new BatchCallContext(signal, host.publish, host.rateLimit)).then((outcomes) => {
      host.calling(-jobs.length);
      for (let i = 0; i < entries.length; i++) entries[i]!.finish(outcomes[i]!);
    });
  }
}

/** Calls the handler and turns its answer, or its throw, into one outcome per job; never rejects. */
async function runCall(spec: BatchSpec, jobs: Job[], ctx: BatchCallContext): Promise<(Outcome & Thrown)[]> {
  const began = Date.now();
  let answer: unknown;
  try {
    answer = await spec.call(jobs.map((job) => ({ body: job.body, job })), ctx);
  } catch (error) {
    return thrownByAll(jobs, error);
  } finally {
    ctx.handlerEnded();
  }
  const ms = Date.now() - began;
  quietPromises(answer);
  try {
    return settleEach(jobs, answer, began, ms);
  } catch (error) {
    return thrownByAll(jobs, error); // a getter of the answer threw, a revoked Proxy
  }
}

/**
 * One throw as every job's outcome: its error text made once (describe() reads a cause chain and cuts
 * megabytes: made per job, a batch of 500 whose error carried a 1 MB cause held the event loop 10 s).
 */
function thrownByAll(jobs: Job[], error: unknown): (Outcome & Thrown)[] {
  const outcome = thrownOutcome(jobs[0]!.id, jobs[0]!.attempt, error);
  return jobs.map((job) => ({ ...outcome, id: job.id, attempt: job.attempt }));
}

/** One outcome per job from the handler's answer; throws when reading the answer throws. */
function settleEach(jobs: Job[], answer: unknown, began: number, ms: number): (Outcome & Thrown)[] {
  if (answer === undefined || answer === null) {
    return jobs.map((job) => ({ id: job.id, attempt: job.attempt, outcome: 'ack', result: null, ms }));
  }
  if (!Array.isArray(answer) || answer.length !== jobs.length) {
    quietThenables(answer); // { sent: jobs.map(send) }: its promises must not reject unhandled
    const shape = Array.isArray(answer) ? `an array of ${answer.length}` : typeof answer;
    const error = new TypeError(`batch handler of ${jobs[0]!.task} returned ${shape} for ${jobs.length} jobs: it must `
      + `return nothing (every job succeeds) or an array of ${jobs.length}, one item per job in order (a result, or an Error)`);
    return thrownByAll(jobs, error);
  }
  let made: Map<unknown, Outcome & Thrown> | undefined; // an Error given for several jobs: its text made once (thrownByAll)
  return jobs.map((job, i) => {
    const item: unknown = answer[i];
    if (isError(item) || askedOutcome(item, began) !== undefined) {
      let outcome = (made ??= new Map()).get(item);
      if (outcome === undefined) made.set(item, outcome = thrownOutcome(job.id, job.attempt, item));
      return { ...outcome, id: job.id, attempt: job.attempt };
    }
    if (isThenable(item)) {
      // jobs.map(async …) without Promise.all (quietPromises caught a native one's rejection); another
      // thenable's then is not called (a query builder would run).
      return thrownOutcome(job.id, job.attempt, new TypeError(`batch handler of ${job.task}: item ${i} is a Promise: `
        + 'return await Promise.all(…) of them, so each item is a result or an Error'));
    }
    try {
      return { id: job.id, attempt: job.attempt, outcome: 'ack', result: resultJson(item, 'item'), ms };
    } catch (error) {
      return thrownOutcome(job.id, job.attempt, error); // not JSON: a FailJob (never storable) or a TypeError (a Promise not awaited)
    }
  });
}

/**
 * A no-op catch on every native promise of an answer (an array or a Set),
 * whatever its length or what else it holds: one left rejecting unhandled
 * would end the process, with every job of the drain still leased.
 */
function quietPromises(answer: unknown): void {
  try {
    const items: ArrayLike<unknown> = Array.isArray(answer) ? answer : answer instanceof Set ? [...answer] : [];
    for (let i = 0; i < items.length; i++) {
      try {
        const item = items[i];
        if (Object.prototype.toString.call(item) === '[object Promise]') Promise.prototype.then.call(item, undefined, ignore);
      } catch {
        // a getter that throws: settleEach meets it too, and fails the call
      }
    }
  } catch {
    // a revoked Proxy, a length that throws: as above
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null
    && typeof (value as { then?: unknown }).then === 'function';
}
