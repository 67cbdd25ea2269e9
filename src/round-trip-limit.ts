import type { Queryable, QueryResult } from './db/driver.js';
import { PgDrainError } from './errors.js';
import { timerAt } from './timeouts.js';

/**
 * When a drain stops waiting for its database: overrunMs after its deadline,
 * or after its hardSignal if that comes first. A database that stops
 * answering (a frozen network, a hung server) must not hold a drain past its
 * deadline: the platform would kill it mid-settle, and a CronJob with
 * concurrencyPolicy Forbid would skip every later run.
 *
 * At the limit every round trip still in flight through bind() rejects with
 * database_unavailable, and its signal aborts so that a driver which honours
 * it (pgDriver) ends that connection; later round trips reject at once. What
 * the drain had not settled is not lost: those jobs' leases expire and they
 * run again.
 */
export class RoundTripLimit {
  private readonly controller = new AbortController();
  private cancelTimer = () => {};
  private limitAt = Infinity;
  private readonly onHardSignal: () => void;

  constructor(deadline: number, private readonly overrunMs: number, private readonly hardSignal?: AbortSignal) {
    this.moveTo(deadline + overrunMs, "after the drain's deadline");
    this.onHardSignal = () => this.moveTo(Date.now() + overrunMs, 'after the drain was told to stop at once');
    if (hardSignal?.aborted) this.onHardSignal();
    else hardSignal?.addEventListener('abort', this.onHardSignal, { once: true });
  }

  /** db, each of whose statements is given up at the limit. */
  bind(db: Queryable): Queryable {
    const signal = this.controller.signal;
    return {
      query<R>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
        if (signal.aborted) return Promise.reject(signal.reason as Error);
        return new Promise<QueryResult<R>>((resolve, reject) => {
          const giveUp = () => reject(signal.reason as Error);
          signal.addEventListener('abort', giveUp, { once: true });
          db.query<R>(text, params, { signal }).then(resolve, reject)
            .finally(() => signal.removeEventListener('abort', giveUp));
        });
      },
    };
  }

  /** The drain has returned: neither its timer nor its listener may outlive it. */
  dispose(): void {
    this.cancelTimer();
    this.hardSignal?.removeEventListener('abort', this.onHardSignal);
  }

  /** Moves the limit earlier; a later time changes nothing. */
  private moveTo(at: number, after: string): void {
    if (at >= this.limitAt || this.controller.signal.aborted) return;
    this.limitAt = at;
    this.cancelTimer();
    const error = new PgDrainError('database_unavailable',
      `database unavailable: no reply within ${this.overrunMs} ms ${after}`);
    this.cancelTimer = timerAt(at, () => this.controller.abort(error));
  }
}
