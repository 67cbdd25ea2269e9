// What a drain says when its last settle could not land (the database gone,
// its connection cut): how many outcomes it did not record, of which kinds,
// and why. Those jobs stay leased to it; once their leases pass, an expiry
// (a claim, jobs.expire, jobs.maintain) retries each, an attempt spent, or
// fails it with none left (so the message must not say they all run again), its last_error naming this drain's worker id
// (jobs.no_outcome_from): that error and this one tell the same story.
import type { PgDrainError, UnrecordedOutcomes } from './errors.js';
import type { Outcome } from './outcome-arrays.js';

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/**
 * error (what drain() rejects with), its message followed by what was not
 * recorded: "database unavailable: Connection terminated unexpectedly; 3 jobs'
 * outcomes were not recorded (2 succeeded, 1 failed): the drain's last settle
 * failed. …", and the same counts as its `unrecorded` (PgDrainError). settleError: the
 * last settle's own error, named when error is another's (a failed claim's).
 */
export function withUnrecorded(error: unknown, left: readonly Outcome[], settleError: unknown, workerId: string): unknown {
  if (left.length === 0 || !(error instanceof Error)) return error;
  const counts: UnrecordedOutcomes = { total: left.length, succeeded: 0, failed: 0, released: 0 };
  for (const o of left) counts[o.outcome === 'ack' ? 'succeeded' : o.outcome === 'release' ? 'released' : 'failed']++;
  (error as PgDrainError).unrecorded = counts; // typed on PgDrainError (translateError's); set on any Error it got
  const kinds = { succeeded: counts.succeeded, failed: counts.failed, 'given back': counts.released };
  const which = Object.entries(kinds).filter(([, n]) => n > 0).map(([kind, n]) => `${n} ${kind}`).join(', ');
  // The settle's own error, when error's message does not already say it (a failed claim's may say the same).
  const settled = settleError instanceof Error ? settleError.message : String(settleError);
  const own = error.message.includes(settled) ? '' : ` (${settled})`;
  error.message += `; ${plural(left.length, "job's outcome was", "jobs' outcomes were")} not recorded (${which}): `
    + `the drain's last settle failed${own}. Once their leases end, each runs again, an attempt spent, or fails if that was its `
    + `last; the error recorded will say its lease passed with no outcome from worker ${workerId}`;
  return error;
}

/**
 * error's `unrecorded` (withUnrecorded's) as its four counts, copied, when it has that shape: each a whole number
 * of 0 or more, total their sum. Else (not set, or set by other code on an error it threw: any shape) undefined.
 */
export function unrecordedOf(error: unknown): UnrecordedOutcomes | undefined {
  const u = (error as { unrecorded?: unknown } | null)?.unrecorded;
  if (typeof u !== 'object' || u === null) return undefined;
  const { total, succeeded, failed, released } = u as Record<string, unknown>;
  const counts = [total, succeeded, failed, released];
  if (!counts.every((n) => Number.isSafeInteger(n) && (n as number) >= 0)) return undefined;
  if ((total as number) !== (succeeded as number) + (failed as number) + (released as number)) return undefined;
  return { total, succeeded, failed, released } as UnrecordedOutcomes;
}
