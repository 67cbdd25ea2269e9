import type { Queryable } from './db/driver.js';
import { ValidationError } from './errors.js';
import { ProgressReporter, type ProgressSink } from './progress.js';
import { takeSignal, type SignalOption } from './send.js';
import type { RateLimit, RateLimitOptions } from './rate-limit.js';
import type { BatchContext, Job, JobContext, PublishOptions } from './types.js';

// Made once per job on a drain's hot path: classes with prototype accessors,
// because object literals with getters are built by a slow runtime path
// (a measurable share of a fast drain's CPU).

/**
 * A job's AbortSignal, made only when the handler first reads ctx.signal:
 * most handlers never do, and a controller per job costs CPU too.
 */
export class LazySignal {
  private controller: AbortController | undefined;
  private reason: Error | undefined;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.reason) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  /** Fires the signal (now, or as made later) with this reason; the first reason wins. */
  abort(reason: Error): void {
    this.reason ??= reason;
    if (this.controller && !this.controller.signal.aborted) this.controller.abort(reason);
  }

  /** The reason it was aborted with, if it was. */
  get abortedWith(): Error | undefined {
    return this.reason;
  }
}

type Publish = (task: string, body?: unknown, options?: PublishOptions & SignalOption) => Promise<string>;

/** What ctx.extendLease asks: the running job (run-handler.ts JobRun), which also moves its drain's timer. */
export interface LeaseHolder {
  extendLease(seconds: unknown): Promise<Date | null>;
}

/** A lease extension's seconds, checked as a timeout is: a ValidationError naming `seconds` otherwise. */
export function leaseSeconds(seconds: unknown): number {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0.001 || seconds > 86400) {
    throw new ValidationError('seconds', `must be a number of seconds from 0.001 to 86400, got ${describeValue(seconds)}`);
  }
  return seconds;
}

function describeValue(value: unknown): string {
  return typeof value === 'number' ? String(value) : typeof value === 'string' ? JSON.stringify(value.slice(0, 40)) : typeof value;
}

/**
 * jobs.extend_lease (sql/0035): this delivery's lease moved to at least
 * `seconds` from now; its new end, or null when the delivery is over.
 */
export async function extendLeaseOf(db: Queryable, jobId: string, attempt: number, seconds: number,
                                    workerId: string | null): Promise<Date | null> {
  const { rows } = await db.query<{ until: string | Date | null }>(
    'select jobs.extend_lease($1::bigint, $2::integer, $3::numeric, null, $4) as until', [jobId, attempt, seconds, workerId]);
  const until = rows[0]?.until;
  return until === null || until === undefined ? null : new Date(until);
}

/**
 * The ctx a handler gets. publish is an own bound property, so `const { publish } = ctx` works.
 *
 * While the handler runs, its publishes are bound to its job's signal: when
 * the job times out, is cancelled or is given back, a publish still in
 * flight is given up and its connection ended, so the follow-up of a job
 * that will run again cannot land late beside the retry's own. Publishes
 * the handler left running when it returned (not awaited) stay unbound:
 * settling the job fires its signal too, and that must not lose them.
 */
export class DrainJobContext implements JobContext {
  readonly publish: Publish;
  private running = true;
  private reporter: ProgressReporter | undefined;
  private reportFn: ((value: unknown) => Promise<boolean>) | undefined;
  private extendFn: ((seconds: number) => Promise<Date | null>) | undefined;
  private rateFn: ((key: string, options: RateLimitOptions) => Promise<void>) | undefined;

  /** limiter: the drain's one ctx.rateLimit, shared by its jobs, bound to this job's signal on first read. */
  constructor(readonly job: Job, private readonly lazy: LazySignal, publish: Publish,
              private readonly progressSink: ProgressSink, private readonly limiter: RateLimit,
              private readonly lease: LeaseHolder) {
    this.publish = (task, body, options) =>
      this.running ? boundPublish(publish, lazy, () => this.running, task, body, options) : publish(task, body, options);
  }

  /** ctx.rateLimit, made on first read as progress is, bound to the job's signal as publish is. */
  get rateLimit(): (key: string, options: RateLimitOptions) => Promise<void> {
    return this.rateFn ??= (key, options) =>
      this.running ? boundRateLimit(this.limiter, this.lazy, () => this.running, key, options) : this.limiter(key, options);
  }

  /** ctx.progress, made on first read (most handlers never report): bound, so `const { progress } = ctx` works. */
  get progress(): (value: unknown) => Promise<boolean> {
    return this.reportFn ??= (value) => (this.reporter ??= new ProgressReporter(this.progressSink, this.job)).report(value);
  }

  /** ctx.extendLease, made on first read as progress is: bound, so `const { extendLease } = ctx` works. */
  get extendLease(): (seconds: number) => Promise<Date | null> {
    // Bad seconds throw here, at the call, as progress's bad values do: as a
    // rejection nobody awaited (a heartbeat), they would end the process.
    return this.extendFn ??= (seconds) => this.lease.extendLease(leaseSeconds(seconds));
  }

  get signal(): AbortSignal {
    return this.lazy.signal;
  }

  /** The handler returned or threw. */
  handlerEnded(): void {
    this.running = false;
  }
}

/**
 * The ctx of a batch handler's call (batch-run.ts): one per call, its
 * publishes bound to the call's signal while the handler runs, as a job's are.
 * No progress: jobs.set_progress is one statement per job, which a call
 * reporting for all its jobs would multiply.
 */
export class BatchCallContext implements BatchContext {
  readonly publish: Publish;
  readonly rateLimit: (key: string, options: RateLimitOptions) => Promise<void>;
  private running = true;

  constructor(private readonly lazy: LazySignal, publish: Publish, limiter: RateLimit) {
    this.publish = (task, body, options) =>
      this.running ? boundPublish(publish, lazy, () => this.running, task, body, options) : publish(task, body, options);
    this.rateLimit = (key, options) =>
      this.running ? boundRateLimit(limiter, lazy, () => this.running, key, options) : limiter(key, options);
  }

  get signal(): AbortSignal {
    return this.lazy.signal;
  }

  handlerEnded(): void {
    this.running = false;
  }
}

/** publish, given up when `lazy` (or the caller's own options.signal) fires while running() holds. */
async function boundPublish(publish: Publish, lazy: LazySignal, running: () => boolean, task: string, body: unknown,
                            options: Parameters<Publish>[2]): Promise<string> {
  if (options !== undefined && (typeof options !== 'object' || options === null)) {
    return publish(task, body, options); // publish names what is wrong with it
  }
  const bound = boundSignal(running, [lazy.signal, takeSignal(options, 'options').signal]);
  return publish(task, body, { ...options, signal: bound.signal }).finally(bound.unfollow);
}

/**
 * A rate limit's take, given up when `lazy` fires while running() holds, as
 * a publish is: one waiting on its key's row lock past the job's timeout
 * would keep a pool connection, then take a token for a job already over.
 */
function boundRateLimit(limiter: RateLimit, lazy: LazySignal, running: () => boolean, key: string,
                        options: RateLimitOptions): Promise<void> {
  const bound = boundSignal(running, [lazy.signal]);
  return limiter(key, options, bound.signal).finally(bound.unfollow);
}

/** A signal that fires when one of `signals` does while running() holds; unfollow once the call is over. */
function boundSignal(running: () => boolean, signals: (AbortSignal | undefined)[]): { signal: AbortSignal; unfollow: () => void } {
  const bound = new AbortController();
  const unfollow = signals.map((signal) => {
    if (!signal) return () => {};
    const follow = () => {
      if (running()) bound.abort(signal.reason);
    };
    if (signal.aborted) follow();
    signal.addEventListener('abort', follow, { once: true });
    return () => signal.removeEventListener('abort', follow);
  });
  return { signal: bound.signal, unfollow: () => unfollow.forEach((f) => f()) };
}
