// DrainOptions.onJobStart / onJobEnd: what Sentry or OpenTelemetry glue hangs on.
import type { Outcome, SettleListener } from './outcome-arrays.js';
import type { Job, JobEndEvent, JobStartEvent } from './types.js';
import { neverStartedError } from './unstarted.js';

/** The error text of a job the drain aborted after jobs.cancel: its hook outcome is 'cancelled'. */
export const CANCELLED_ERROR = 'aborted by the drain after jobs.cancel';

/** An outcome runHandler made from a throw carries what was thrown, for onJobEnd only. */
export type Thrown = { thrown?: unknown };

/**
 * A drain's hooks, each called inside a try: a hook that throws (or whose
 * promise rejects) never breaks the drain nor loses a job. Its first error
 * per drain goes to console.error; later ones are dropped, so a broken hook
 * cannot flood the log with one line per job. Only made when a hook is set:
 * a drain without hooks builds no event. A release with a reason (never
 * started, unstarted.ts) waits for its settle's answer (told as a
 * SettleListener, after the drain's own: listening): the 26th in a row is a
 * nack, and its event says so; unanswered (the drain's last settle failed),
 * a release.
 */
export class DrainHooks implements SettleListener {
  private reported = false;
  /** Releases with a reason whose settle has not answered, and their jobs. */
  private unstarted: Map<Outcome, { job: Job; why: string }> | undefined;

  constructor(private readonly onStart: ((e: JobStartEvent) => void) | undefined,
              private readonly onEnd: ((e: JobEndEvent) => void) | undefined) {}

  static of(options: { onJobStart?: ((e: JobStartEvent) => void) | undefined; onJobEnd?: ((e: JobEndEvent) => void) | undefined }):
    DrainHooks | undefined {
    return options.onJobStart || options.onJobEnd ? new DrainHooks(options.onJobStart, options.onJobEnd) : undefined;
  }

  started(job: Job): void {
    if (this.onStart) this.call('onJobStart', () => this.onStart!({ job }));
  }

  /** outcome null: a transactional handler committed its ack itself. */
  ended(job: Job, outcome: (Outcome & Thrown) | null, startedAt: number | undefined): void {
    if (!this.onEnd) return;
    if (outcome?.outcome === 'release' && outcome.error !== undefined) {
      (this.unstarted ??= new Map()).set(outcome, { job, why: outcome.error }); // never started: its settle tells what it became
      return;
    }
    const durationMs = startedAt === undefined ? 0 : Date.now() - startedAt;
    let event: JobEndEvent;
    if (outcome === null || outcome.outcome === 'ack') event = { job, outcome: 'ack', durationMs, willRetry: false };
    else if (outcome.outcome === 'release') {
      event = { job, outcome: 'release', durationMs, willRetry: true };
      if (outcome.error !== undefined) event.error = outcome.error; // why it never started (unstarted.ts)
      if (outcome.thrown !== undefined) event.thrown = outcome.thrown; // a SnoozeJob
    }
    else {
      const cancelled = outcome.outcome === 'fail' && outcome.error === CANCELLED_ERROR;
      event = {
        job, outcome: cancelled ? 'cancelled' : outcome.outcome, error: outcome.error, durationMs,
        willRetry: outcome.outcome === 'nack' && job.attempt <= job.maxRetries,
      };
      if (outcome.thrown !== undefined) event.thrown = outcome.thrown;
    }
    this.call('onJobEnd', () => this.onEnd!(event));
  }

  /** The drain's own listener, then these hooks: what the Settler tells. */
  listening(own: SettleListener): SettleListener {
    return {
      endedCancelled: (o) => { own.endedCancelled(o); this.endedCancelled(o); },
      neverStarted: (o) => { own.neverStarted(o); this.neverStarted(o); },
      stale: (o) => { own.stale(o); this.stale(o); },
      answered: (batch) => { own.answered(batch); this.answered(batch); },
    };
  }

  /** A release with a reason its settle ended cancelled (a cancel requested meanwhile). */
  endedCancelled(outcome: Outcome): void {
    this.unstartedEnded(outcome, 'cancelled');
  }

  /** A release with a reason its settle made a nack: released unstarted 25 times in a row already. */
  neverStarted(outcome: Outcome): void {
    this.unstartedEnded(outcome, 'nack');
  }

  /**
   * A release with a reason its settle found stale (the delivery had ended: its lease taken back by another
   * expiry): told as a release that changed nothing (stale, willRetry false), as the report counts it in stale.
   */
  stale(outcome: Outcome): void {
    this.unstartedEnded(outcome, 'stale');
  }

  answered(batch: readonly Outcome[]): void {
    if (this.unstarted?.size) for (const o of batch) this.unstartedEnded(o, 'release');
  }

  /** The drain returns or throws: releases whose settle never answered are told as what the drain sent. */
  unanswered(): void {
    if (this.unstarted?.size) for (const o of [...this.unstarted.keys()]) this.unstartedEnded(o, 'release');
  }

  private unstartedEnded(outcome: Outcome, as: 'release' | 'nack' | 'cancelled' | 'stale'): void {
    const told = this.unstarted?.get(outcome);
    if (!told || !this.unstarted!.delete(outcome)) return;
    const { job, why } = told;
    const error = as === 'nack' ? neverStartedError(why) : why;
    const willRetry = as === 'release' || (as === 'nack' && job.attempt <= job.maxRetries);
    const event: JobEndEvent = { job, outcome: as === 'stale' ? 'release' : as, error, durationMs: 0, willRetry };
    if (as === 'stale') event.stale = true;
    this.call('onJobEnd', () => this.onEnd!(event));
  }

  private call(name: string, fn: () => unknown): void {
    try {
      const returned = fn();
      // An async hook: its rejection would otherwise be unhandled (and end a Node process).
      if (typeof (returned as Promise<unknown> | undefined)?.then === 'function') {
        (returned as Promise<unknown>).then(undefined, (error: unknown) => this.report(name, error));
      }
    } catch (error) {
      this.report(name, error);
    }
  }

  private report(name: string, error: unknown): void {
    if (this.reported) return;
    this.reported = true;
    console.error(`pgdrain: the drain's ${name} hook threw (reported once per drain; the drain goes on):`, error);
  }
}
