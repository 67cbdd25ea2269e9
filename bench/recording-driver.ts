// A Driver that records every statement it sends (text and duration): the
// client-side count of round trips. It forwards to a real driver.
import type { Driver, Queryable } from '../src/db/driver.js';
import { now } from './stats.js';

export interface Sent {
  text: string;
  ms: number;
}

export interface RecordingDriver extends Driver {
  readonly sent: Sent[];
}

/** Wraps `inner`; `after` (if given) runs after each statement, outside its timing. */
export function recordingDriver(inner: Driver, after?: (s: Sent) => Promise<void> | void): RecordingDriver {
  const sent: Sent[] = [];
  const recorded = (q: Queryable): Queryable => ({
    async query(text, params) {
      const t = now();
      const result = await q.query(text, params);
      const s = { text, ms: now() - t };
      sent.push(s);
      await after?.(s);
      return result as never;
    },
  });
  return {
    sent,
    ...recorded(inner),
    transaction: (fn) => inner.transaction((tx) => fn(recorded(tx))),
    close: () => inner.close(),
  };
}

/** The first words of a statement, enough to tell which queue operation it is. */
export function statementName(text: string): string {
  const m = /jobs\.([a-z_]+)\s*\(/.exec(text);
  return m ? `jobs.${m[1]}` : text.trim().split(/\s+/).slice(0, 3).join(' ');
}
