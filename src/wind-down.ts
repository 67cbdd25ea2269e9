import type { LazySignal } from './job-context.js';
import type { Outcome } from './outcome-arrays.js';
import type { RunningJobs } from './running-jobs.js';
import { timerAt } from './timeouts.js';
import { releaseUnstarted } from './unstarted.js';
import type { Job } from './types.js';

/** A job drain() has started and not yet settled. */
export interface Running {
  job: Job;
  startedAt: number;
  /** The handler's signal, made if it ever asked for one. */
  signal: LazySignal;
  /** null: already settled in the handler's own transaction. */
  finish(outcome: Outcome | null): void;
  /** Its handler has not begun: it waits for a connection (a transactional one's, run-handler.ts). */
  waitsForConnection?: boolean;
}

/** A delivery's signal reason once the database no longer has it running (its lease passed and a claim expired it). */
export const LEASE_LOST = 'lease lost: the database no longer has this delivery running (its lease passed and a claim expired it)';

/**
 * A claim handed out again job `id`, whose earlier delivery still runs here:
 * its lease passed before its timer fired (an event loop blocked past it, a
 * clock far from the database's) and another expiry (another drain's claim,
 * jobs.maintain; this drain's own claims leave its leases to its timers:
 * jobs.claim_json's holder) gave it back. That delivery's signal fires
 * (LEASE_LOST) and it leaves `running`, nacked (stale: the database has its
 * attempt over), for the new one's entry; replaced unended, its signal never
 * fired and its timer found another entry. Answers that nack, if it made
 * one: it can never land (the job's next attempt is out).
 */
export function endEarlierDelivery(running: RunningJobs, id: string): Outcome | undefined {
  const earlier = running.get(id);
  if (earlier === undefined) return undefined;
  earlier.signal.abort(new Error(LEASE_LOST));
  const nack: Outcome = { id, attempt: earlier.job.attempt, outcome: 'nack', error: LEASE_LOST };
  earlier.finish(nack);
  return nack;
}

/**
 * A job whose handler still ran when the drain's stop after its signal came
 * (the grace's end, hardSignal, or the drain's own stop): its signal fires
 * and it is nacked with `why`, its attempt spent, to run again at once (it
 * did not fail on its own): due from its claim's time (claimedAt). Given back unspent, a handler that never stops
 * would be handed out again without end, on pods stopped often (deploys,
 * spot nodes), while one that honours its signal and throws is bounded; so
 * it ends failed with `why` once its retries are spent.
 */
export function interrupted(r: Running, why: string): Outcome | undefined {
  if (r.waitsForConnection) { // never began: its attempt given back
    releaseUnstarted(r, 'stop');
    return undefined;
  }
  r.signal.abort(new Error('drain stopped'));
  const nack: Outcome = { id: r.job.id, attempt: r.job.attempt, outcome: 'nack', error: why, retryAt: claimedAt(r.job) };
  r.finish(nack);
  return nack;
}

/**
 * When a job's claim ran, by the database's clock (its lease's start): a
 * retry then is due at once. Not the drain's Date.now(): a host whose clock
 * runs ahead of the database's would put the job that far off.
 */
function claimedAt(job: Running['job']): string {
  return new Date(job.leaseUntil.getTime() - job.timeout * 1000).toISOString();
}

/**
 * A drain signal's (or hardSignal's) reason that says what stopped the drain,
 * for the nack of a job still running then ("did not stop within graceMs=…
 * after <its message>", "did not stop by the drain's deadline after …", "did
 * not stop before …"): POST /drain's when its caller disconnects
 * (src/http/stop-signal.ts), where no shutdown came; the CLI's on SIGTERM or
 * SIGINT (`pgdrain serve`'s shutdown: src/cli/signals.ts). Any other reason:
 * "the drain's signal" ("the drain's hardSignal").
 */
export class StopCause extends Error {}

/** What a stop signal says stopped the drain: its StopCause's message, else `otherwise`. */
export function causeOf(signal: AbortSignal | undefined, otherwise: string): string {
  return signal?.reason instanceof StopCause ? signal.reason.message : otherwise;
}

/**
 * The jobs a stop cut short (windDown): nacked, their handler running (their nacks: a settle may find one stale or
 * end it cancelled); released, still waiting for a connection (their releases: a settle may make one a nack,
 * jobs.unstarted_bound, or find it stale).
 */
export interface Interrupted {
  nacked: Outcome[];
  released: Outcome[];
}

/**
 * Waits for running jobs; after graceMs (if given), or at once when
 * hardSignal fires, aborts the rest and nacks them (interrupted; released,
 * one still waiting for a connection). Answers its nacks and its releases.
 */
export async function windDown(running: RunningJobs, graceMs: number | undefined,
                                changed: () => Promise<void>, hardSignal?: AbortSignal, signal?: AbortSignal): Promise<Interrupted> {
  let graceOver = false;
  const cut: Interrupted = { nacked: [], released: [] };
  const giveBack = (why: string) => {
    graceOver = true;
    for (const r of [...running.values()]) {
      if (r.waitsForConnection) cut.released.push(releaseUnstarted(r, 'stop')); // as interrupted() does
      else {
        const nack = interrupted(r, why);
        if (nack) cut.nacked.push(nack);
      }
    }
  };
  const afterGrace = () => giveBack(`did not stop within graceMs=${graceMs} after ${causeOf(signal, "the drain's signal")}`);
  const atHardSignal = () => giveBack(`did not stop before ${causeOf(hardSignal, "the drain's hardSignal")}`);
  // timerAt: setTimeout fires at once for a grace past 24.8 days.
  const cancelGrace = graceMs === undefined ? undefined : timerAt(Date.now() + graceMs, afterGrace);
  hardSignal?.addEventListener('abort', atHardSignal, { once: true });
  if (hardSignal?.aborted) atHardSignal();
  while (running.size > 0 && !graceOver) await changed();
  cancelGrace?.();
  hardSignal?.removeEventListener('abort', atHardSignal);
  return cut;
}
