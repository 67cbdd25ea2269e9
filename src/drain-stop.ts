import type { DrainOptions } from './drain-options.js';
import { timerAt } from './timeouts.js';
import type { StoppedBy } from './types.js';

// When a drain's loop wakes, and why it stops (drain.ts): the loop awaits
// changed() between claims; a job that ends, a connection another drain on
// the pool gives back (pool-share.ts) or a stop wakes it. A stop comes from
// options.signal or options.hardSignal, from stopAt (the deadline less the
// settle margin) while the drain does not linger, or from the loop itself.

export class DrainStop {
  /** Why the drain stopped: the first stop's reason; undefined while it goes on. */
  by: StoppedBy | undefined;
  private resolveChanged: (() => void) | undefined;
  private readonly cancelDeadline: () => void;
  private readonly onSignal = () => this.stop('signal');

  /** deadlineStops: whether stopAt stops the drain when it comes (lingering, the idle wait ends itself there). */
  constructor(private readonly opts: DrainOptions, stopAt: number, deadlineStops: () => boolean) {
    opts.signal?.addEventListener('abort', this.onSignal, { once: true });
    opts.hardSignal?.addEventListener('abort', this.onSignal, { once: true });
    if (opts.signal?.aborted || opts.hardSignal?.aborted) this.stop('signal');
    this.cancelDeadline = timerAt(stopAt, () => deadlineStops() && this.stop('deadline'));
  }

  /** One promise that resolves at the next change: a job ended, or a stop. */
  readonly changed = () => new Promise<void>((resolve) => (this.resolveChanged = resolve));

  // Each resolve is called once: calling a spent one again (a wake per job)
  // costs more than the rest of settling a job (V8 reports it to Node).
  readonly wake = () => {
    const resolve = this.resolveChanged;
    this.resolveChanged = undefined;
    resolve?.();
  };

  stop(why: StoppedBy): void {
    this.by ??= why;
    this.wake();
  }

  /** The deadline's timer and the signals' listeners, let go when the drain ends. */
  dispose(): void {
    this.cancelDeadline();
    this.opts.signal?.removeEventListener('abort', this.onSignal);
    this.opts.hardSignal?.removeEventListener('abort', this.onSignal);
  }
}
