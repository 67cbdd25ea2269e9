// DrainOptions.onJobStart / onJobEnd: what Sentry or OpenTelemetry glue hangs on.
import type { Outcome } from './outcome-arrays.js';
import type { Job, JobEndEvent, JobStartEvent } from './types.js';

/** The error text of a job the drain aborted after jobs.cancel: its hook outcome is 'cancelled'. */
export const CANCELLED_ERROR = 'aborted by the drain after jobs.cancel';

/** An outcome runHandler made from a throw carries what was thrown, for onJobEnd only. */
export type Thrown = { thrown?: unknown };

/**
 * A drain's hooks, each called inside a try: a hook that throws (or whose
 * promise rejects) never breaks the drain nor loses a job. Its first error
 * per drain goes to console.error; later ones are dropped, so a broken hook
 * cannot flood the log with one line per job. Only made when a hook is set:
 * a drain without hooks builds no event.
 */
export class DrainHooks {
  private reported = false;

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
