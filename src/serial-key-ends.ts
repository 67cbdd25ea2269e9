// Which outcomes end a serial-key job, taking its key's lock as they settle, and how many of those one settle
// statement carries: the Settler (settler.ts) holds the rest back for statements of their own.
import type { Outcome } from './outcome-arrays.js';

/**
 * The most outcomes that end a serial-key job one settle statement carries
 * (jobs.max_serial_keys()): each takes its key's lock until commit, from
 * PostgreSQL's lock table, shared by every session and about 6,400 entries
 * on a default server.
 */
export const MAX_SERIAL_KEYS = 500;

/**
 * Whether the outcome of a claimed job that holds a serial key (its maxRetries: the claim's) ends it, so that its
 * settle takes the key's lock (jobs.after_end): an ack, a fail, a nack with its retries spent. A retry or a release
 * keeps the key's turn and takes no lock, unless a cancel was requested meanwhile (it then ends as cancelled), which
 * the drain cannot know here. A release with a reason (never started) on its last attempt counts too: the 26th in a
 * row is a nack (jobs.unstarted_bound) that fails it; the count is not known here.
 */
export function endsSerialKey(o: Outcome, maxRetries: number): boolean {
  return o.outcome === 'ack' || o.outcome === 'fail'
    || ((o.outcome === 'nack' || (o.outcome === 'release' && o.error !== undefined)) && o.attempt > maxRetries);
}
