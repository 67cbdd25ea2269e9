// A claimed job whose handler never began gives its attempt back: released
// (jobs.settle_arrays' release with a reason), never nacked, its last_error
// saying why: 'released unstarted (3 in a row): <why>' (jobs.release_error);
// the 26th in a row is nacked by its settle (jobs.unstarted_bound), so a
// pool that never has room ends it, its retries spent. A
// transactional handler waits for a connection before it begins (its turn
// under the pool's size less one, PoolShare.enter, then its transaction's
// BEGIN on the pool), its timeout running: its timeout, the drain's deadline
// or a stop can come first. Nacked then, with maxRetries 0 it failed for
// good without having run. (A job whose timeout passed while its claim was
// out is nacked still, handler-end.ts: given back, it would be claimed and
// given back again without end.)
import { timerAt } from './timeouts.js';
import type { Outcome } from './outcome-arrays.js';
import type { Running } from './wind-down.js';

/** What came before its handler could begin. */
export type UnstartedBy = 'timeout' | 'deadline' | 'stop';

const WAIT = 'while it waited for a connection (transactional handlers take the pool\'s size less one, those running hold theirs, '
  + 'and so may other code on the pool)';
const FIX = "raise the pool's size, lower the drain's concurrency, make fewer tasks transactional";

/**
 * Why it was released, the release's reason: "its timeout (1 s) was all but spent while it waited for a connection (…);
 * raise …". Its last_error: 'released unstarted (1 in a row): ' and this.
 */
export function unstartedWhy(timeoutSeconds: number, by: UnstartedBy): string {
  if (by === 'stop') return `the drain stopped ${WAIT}`;
  // A longer timeout helps a job its own timeout ended, not one the drain's deadline did.
  if (by === 'deadline') return `the drain's deadline was near ${WAIT}; ${FIX} or give the drain a later deadline`;
  return `its timeout (${timeoutSeconds} s) was all but spent ${WAIT}; ${FIX} or give the task a longer timeout`;
}

/** How many releases unstarted in a row jobs.unstarted_bound allows: the next is a nack. */
export const UNSTARTED_BOUND = 25;

/** The error of the nack jobs.unstarted_bound makes of the release past the bound (the same text). */
export function neverStartedError(why: string): string {
  return `never started: released unstarted ${UNSTARTED_BOUND} times in a row, so nacked this time, its attempt spent; this time too: ${why}`;
}

/** r never began: its signal fires (its wait for a connection ends) and it is released with why; answers that release. */
export function releaseUnstarted(r: Running, by: UnstartedBy): Outcome {
  const why = unstartedWhy(r.job.timeout, by);
  r.signal.abort(new Error(`released unstarted: ${why}`));
  const release: Outcome = { id: r.job.id, attempt: r.job.attempt, outcome: 'release', error: why };
  r.finish(release);
  return release;
}

/**
 * How long before its end (its timer's, itself a margin before its lease's:
 * timeouts.ts timerEnd) a job still waiting for a connection is released.
 * Made at its lease's end, the release came after it, and another consumer's
 * expiry (a drain's claim, jobs.maintain) took the lease back first and spent
 * its attempt (a job of maxRetries 0 failed without having run): a release
 * spares an attempt, so it keeps a margin of its own, whatever the timeout.
 */
export const RELEASE_AHEAD_MS = 500;

/** Calls release RELEASE_AHEAD_MS before end (at most half the time left from now); returns what disarms it. */
export function releaseAhead(end: number, release: () => unknown): () => void {
  const now = Date.now();
  return timerAt(Math.max(end - RELEASE_AHEAD_MS, now + (end - now) / 2), release);
}
