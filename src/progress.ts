// ctx.progress: a handler's progress, stored on its running job (jobs.set_progress).
import type { Queryable } from './db/driver.js';
import { ValidationError } from './errors.js';
import { jsonParam } from './json-text.js';
import type { Job } from './types.js';

/** The largest progress value, as JSON text (jobs.set_progress refuses more too). */
export const MAX_PROGRESS_BYTES = 65_536;

/** Where a drain's handlers send progress: its database and worker id, one per drain. */
export interface ProgressSink {
  db: Queryable;
  workerId: string;
}

/** A progress value as JSON text; a ValidationError naming `progress` when it is not JSON or too large. */
export function progressJson(value: unknown): string {
  const json = jsonParam(value, 'progress');
  // UTF-8 bytes, as the server counts them; the length check first spares the encoding of small values.
  if (json.length * 3 > MAX_PROGRESS_BYTES && new TextEncoder().encode(json).length > MAX_PROGRESS_BYTES) {
    throw new ValidationError('progress', `must be at most ${MAX_PROGRESS_BYTES} bytes as JSON`);
  }
  return json;
}

/**
 * One job's progress reports, coalesced: at most one statement in flight;
 * values reported meanwhile wait, and only the latest is sent once it ends.
 * A handler that reports in a tight loop thus costs one statement per round
 * trip, not one per call. Each call's promise answers whether its value, or
 * a later one that replaced it, was stored (false: the delivery is over, or
 * the statement failed: progress is best effort, and an un-awaited call must
 * never reject and end the process).
 */
export class ProgressReporter {
  private inFlight = false;
  private next: { json: string; waiters: ((stored: boolean) => void)[] } | undefined;

  constructor(private readonly sink: ProgressSink, private readonly job: Job) {}

  report(value: unknown): Promise<boolean> {
    const json = progressJson(value); // throws at the call, naming progress
    return new Promise((resolve) => {
      if (this.next) this.next.json = json;
      else this.next = { json, waiters: [] };
      this.next.waiters.push(resolve);
      if (!this.inFlight) void this.send();
    });
  }

  private async send(): Promise<void> {
    this.inFlight = true;
    while (this.next) {
      const { json, waiters } = this.next;
      this.next = undefined;
      let stored = false;
      try {
        const { rows } = await this.sink.db.query<{ r: boolean }>(
          'select jobs.set_progress($1::bigint, $2::integer, $3::jsonb, $4) as r',
          [this.job.id, this.job.attempt, json, this.sink.workerId]);
        stored = rows[0]?.r === true;
      } catch {
        stored = false;
      }
      for (const w of waiters) w(stored);
    }
    this.inFlight = false;
  }
}
