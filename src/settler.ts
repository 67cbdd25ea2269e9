import type { Queryable } from './db/driver.js';

/** One settled delivery, in the shape jobs.settle takes. */
export type Outcome =
  | { id: string; attempt: number; outcome: 'ack'; result: unknown; ms: number }
  | { id: string; attempt: number; outcome: 'nack' | 'fail'; error: string }
  | { id: string; attempt: number; outcome: 'release' };

export interface SettleCounts {
  succeeded: number;
  failed: number;
  retried: number;
  released: number;
  stale: number;
}

/**
 * Batches outcomes into jobs.settle calls, one in flight at a time: whatever
 * completes while a call is out goes in the next one, so a burst of fast
 * jobs settles in a single statement and slow ones are not held back.
 * A failed call keeps its outcomes for the next try (settling is idempotent:
 * each outcome is bound to its attempt).
 */
export class Settler {
  readonly totals: SettleCounts = { succeeded: 0, failed: 0, retried: 0, released: 0, stale: 0 };
  private buffer: Outcome[] = [];
  private inFlight: Promise<void> | undefined;
  private scheduled = false;
  private lastError: unknown;

  constructor(private readonly db: Queryable) {}

  add(outcome: Outcome): void {
    this.buffer.push(outcome);
    if (!this.scheduled && !this.inFlight) {
      this.scheduled = true;
      // Next macrotask: handlers that finish in the same tick share the call.
      setTimeout(() => {
        this.scheduled = false;
        this.kick();
      }, 0);
    }
  }

  /** Settles everything buffered; throws the last database error if it cannot. */
  async close(attempts = 3): Promise<void> {
    for (let i = 0; i < attempts; i++) {
      if (this.inFlight) await this.inFlight;
      if (this.buffer.length === 0) return;
      this.kick();
      await this.inFlight;
      if (this.buffer.length === 0) return;
    }
    if (this.buffer.length > 0) throw this.lastError;
  }

  private kick(): void {
    if (this.inFlight || this.buffer.length === 0) return;
    const batch = this.buffer;
    this.buffer = [];
    this.inFlight = this.send(batch).finally(() => {
      this.inFlight = undefined;
      if (this.buffer.length > 0 && this.lastError === undefined) this.kick();
    });
  }

  private async send(batch: Outcome[]): Promise<void> {
    try {
      const { rows } = await this.db.query<{ r: SettleCounts }>('select jobs.settle($1::jsonb) as r', [JSON.stringify(batch)]);
      const r = rows[0]!.r;
      for (const key of Object.keys(this.totals) as (keyof SettleCounts)[]) this.totals[key] += Number(r[key]);
      this.lastError = undefined;
    } catch (error) {
      this.lastError = error;
      this.buffer = batch.concat(this.buffer);
    }
  }
}
