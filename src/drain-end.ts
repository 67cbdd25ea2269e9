// How drain() ends once its loop is done: its last settle, and what it rejects with (a claim's error, a fault of its
// own loop), naming the outcomes it could not record (unrecorded.ts).
import type { Queryable } from './db/driver.js';
import type { DrainHooks } from './drain-hooks.js';
import { rolledBackWhole } from './claim-call.js';
import { translateError, type PgDrainError } from './errors.js';
import type { RoundTripLimit } from './round-trip-limit.js';
import type { RunningJobs } from './running-jobs.js';
import type { Settler } from './settler.js';
import { withUnrecorded } from './unrecorded.js';

/** What a drain's end settles and lets go of. */
export interface DrainEnd {
  running: RunningJobs;
  settler: Settler;
  limit: RoundTripLimit;
  hooks: DrainHooks | undefined;
  workerId: string;
  /** The drain's own round trips (bound by its limit), and its claims' holder (jobs.claim_json's): for endOnFault. */
  db: Queryable;
  holder: string;
}

/** Gives back what the drain call still holds (sql/0035). */
const RELEASE_HOLDER_SQL = 'select jobs.release_holder($1::bigint, $2) as n';

/**
 * A fault of the drain's own loop (not a claim's error, not a handler's): what runs is given back (its signal
 * aborted, released), what is left settled in one try; throws the fault, with what could not be recorded. Once
 * that settle landed, what its claims still lease to it (a claim's jobs whose answer the loop could not read, or
 * had not started) is given back too, in one statement (jobs.release_holder), best effort: failed, they run again
 * once their leases end, an attempt spent.
 */
export async function endOnFault(error: unknown, end: DrainEnd): Promise<never> {
  for (const r of [...end.running.values()]) {
    r.signal.abort(new Error('drain failed'));
    r.finish({ id: r.job.id, attempt: r.job.attempt, outcome: 'release' });
  }
  const settleError = await end.settler.close(1).then(() => undefined, (e: unknown) => e);
  if (settleError === undefined) await releaseHolder(end);
  end.limit.dispose();
  end.hooks?.unanswered();
  throw withUnrecorded(translateError(error), end.settler.left(), settleError, end.workerId); // unchanged when it all landed
}

/**
 * The last settle, once every handler ended (Settler.close); then claimError, the error of a claim that ended the
 * drain, if one did. Throws with what it could not record when that settle failed. Once it landed, a claim that
 * failed other than rolled back may have committed, its answer lost (a dropped connection, a terminated backend):
 * what the drain call still holds then is that claim's (every job it ran is settled), given back at once in one
 * statement (jobs.release_holder), counted as the error's lostClaimReleased. Best effort: failed, or sent before
 * that claim's commit landed, they wait for their leases to end, an attempt spent.
 */
export async function settleLast(end: DrainEnd, claimError: unknown): Promise<void> {
  let released = 0;
  try {
    await end.settler.close();
    if (claimError !== undefined && !rolledBackWhole(claimError)) released = await releaseHolder(end);
  } catch (error) {
    throw withUnrecorded(translateError(claimError ?? error), end.settler.left(), error, end.workerId); // what it could not record
  } finally {
    end.limit.dispose();
    end.hooks?.unanswered(); // releases unstarted whose settle never answered
  }
  if (claimError !== undefined) throw withLostClaimReleased(translateError(claimError), released);
}

/** jobs.release_holder for the drain call, best effort: how many it gave back (0 when it failed). */
async function releaseHolder(end: DrainEnd): Promise<number> {
  const answer = await end.db.query<{ n: number | null }>(RELEASE_HOLDER_SQL, [end.holder, end.workerId]).catch(() => undefined);
  return answer?.rows[0]?.n ?? 0;
}

/** error, saying how many jobs of its lost claim were given back (lostClaimReleased), when any was. */
function withLostClaimReleased(error: unknown, released: number): unknown {
  if (released === 0 || !(error instanceof Error)) return error;
  (error as PgDrainError).lostClaimReleased = released;
  error.message += `; ${released === 1 ? '1 job' : `${released} jobs`} a claim whose answer was lost had leased `
    + `${released === 1 ? 'was' : 'were'} given back`;
  return error;
}
