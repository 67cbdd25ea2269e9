import type { Job, JobContext, PublishOptions } from './types.js';

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
}

type Publish = (task: string, body?: unknown, options?: PublishOptions) => Promise<string>;

/** The ctx a handler gets. publish is an own bound property, so `const { publish } = ctx` works. */
export class DrainJobContext implements JobContext {
  readonly publish: Publish;

  constructor(readonly job: Job, private readonly lazy: LazySignal, publish: Publish) {
    this.publish = publish;
  }

  get signal(): AbortSignal {
    return this.lazy.signal;
  }
}
