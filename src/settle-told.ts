// What a settle's answer names (jobs.settle_arrays' cancelled_ids, never_started_ids, stale_ids), told to the
// Settler's listener (a drain's FailureList, then its hooks) outcome by outcome.
import type { Outcome, SettleAnswer, SettleListener } from './outcome-arrays.js';

/**
 * Tells `told` of each outcome of batch (the outcomes one settle took) whose
 * delivery (id:attempt) the answer names as ended cancelled, never started or
 * stale, then that it answered for all of them. Each list comes only when
 * there are any: a batch of acks that all applied reads nothing more.
 */
export function tellSettled(told: SettleListener, counts: SettleAnswer, batch: readonly Outcome[]): void {
  if (counts.cancelled_ids) {
    const named = new Set(counts.cancelled_ids.split(','));
    for (const o of batch) if (named.has(`${o.id}:${o.attempt}`)) told.endedCancelled(o);
  }
  if (counts.never_started_ids) {
    const named = new Set(counts.never_started_ids.split(','));
    for (const o of batch) if (named.has(`${o.id}:${o.attempt}`)) told.neverStarted(o);
  }
  if (counts.stale_ids) {
    const named = new Set(counts.stale_ids.split(','));
    for (const o of batch) if (named.has(`${o.id}:${o.attempt}`)) told.stale(o);
  }
  told.answered(batch);
}
