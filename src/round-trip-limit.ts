import type { Queryable, QueryOptions, QueryResult } from './db/driver.js';
import { PgDrainError } from './errors.js';
import { timerAt } from './timeouts.js';

/** What ends a drain before its deadline: as drain() takes them in its options. */
export interface Stops {
  signal?: AbortSignal;
  /** After signal, how long handlers may finish; undefined: until their timeout. */
  graceMs?: number;
  hardSignal?: AbortSignal;
}

/**
 * db, each of whose statements is given up when signal aborts: it rejects at
 * once with the signal's reason, and the driver gets the signal with the
 * statement, so that one which honours it (pgDriver) ends that connection
 * and the statement cannot run later.
 */
export function givenUpOn(db: Queryable, signal: AbortSignal, unconnected?: { n: number }): Queryable {
  return {
    query<R>(text: string, params?: readonly unknown[], options?: QueryOptions): Promise<QueryResult<R>> {
      if (signal.aborted) return Promise.reject(signal.reason as Error);
      return new Promise<QueryResult<R>>((resolve, reject) => {
        const giveUp = () => reject(signal.reason as Error);
        signal.addEventListener('abort', giveUp, { once: true });
        // Counted in unconnected until the driver says it has a connection (or it ends).
        let waits = unconnected !== undefined;
        if (waits) unconnected!.n++;
        const onConnected = () => {
          if (waits) unconnected!.n--;
          waits = false;
        };
        // The caller's onConnected only when the driver says so (never at the end: a driver may never say).
        db.query<R>(text, params, { signal, onConnected: () => { onConnected(); options?.onConnected?.(); } }).then(resolve, reject)
          .finally(() => {
            onConnected();
            signal.removeEventListener('abort', giveUp);
          });
      });
    },
  };
}

/**
 * What the limit's error says when some of its statements in flight had no
 * connection yet (a driver that never says so counts all of them): given
 * overrunMs and what the limit came after; undefined for the usual "no reply".
 */
export type UnconnectedNote = (overrunMs: number, after: string) => string | undefined;

/**
 * When a drain stops waiting for its database: overrunMs after its deadline,
 * after the grace that follows its signal, or after its hardSignal, whichever
 * comes first. A database that stops answering (a frozen network, a hung
 * server) must not hold a drain past its deadline: the platform would kill
 * it mid-settle, and a CronJob with concurrencyPolicy Forbid would skip
 * every later run.
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
  private readonly unlisten: (() => void)[] = [];
  /** Its statements in flight that have no connection yet (givenUpOn). */
  private readonly unconnected = { n: 0 };

  constructor(deadline: number, private readonly overrunMs: number, stops: Stops = {}, private readonly note?: UnconnectedNote) {
    this.moveTo(deadline + overrunMs, "after the drain's deadline");
    if (stops.graceMs !== undefined) {
      const graceMs = stops.graceMs;
      this.on(stops.signal, () => this.moveTo(Date.now() + graceMs + overrunMs, "after the drain's grace period"));
    }
    this.on(stops.hardSignal, () => this.moveTo(Date.now() + overrunMs, 'after the drain was told to stop at once'));
  }

  /** Aborts at the limit, with database_unavailable as its reason. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** db, each of whose statements is given up at the limit. */
  bind(db: Queryable): Queryable {
    return givenUpOn(db, this.controller.signal, this.unconnected);
  }

  /** The drain has returned: neither its timer nor its listeners may outlive it. */
  dispose(): void {
    this.cancelTimer();
    for (const unlisten of this.unlisten) unlisten();
  }

  private on(signal: AbortSignal | undefined, fire: () => void): void {
    if (!signal) return;
    if (signal.aborted) return fire();
    signal.addEventListener('abort', fire, { once: true });
    this.unlisten.push(() => signal.removeEventListener('abort', fire));
  }

  /** Moves the limit earlier; a later time changes nothing. */
  private moveTo(at: number, after: string): void {
    if (at >= this.limitAt || this.controller.signal.aborted) return;
    this.limitAt = at;
    this.cancelTimer();
    const error = new PgDrainError('database_unavailable',
      `database unavailable: no reply within ${this.overrunMs} ms ${after}`);
    this.cancelTimer = timerAt(at, () => {
      // Read as it fires: a statement still waiting for a connection may have waited on a full pool.
      const note = this.unconnected.n > 0 ? this.note?.(this.overrunMs, after) : undefined;
      this.controller.abort(note === undefined ? error : new PgDrainError('database_unavailable', note));
    });
  }
}
