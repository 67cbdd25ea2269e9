import type { Queryable, QueryResult } from './db/driver.js';
import type { ClaimResult } from './claim-answer.js';
import { outcomeArrays, type Outcome } from './outcome-arrays.js';

// A drain's claim round trip: one jobs.claim_json statement
// (sql/0015_claim_json.sql) settles the outcomes gathered since the last
// claim and claims the next jobs; claim-answer.ts reads what it answers.

/** No outcomes to settle: their seven column arrays go as null. */
const NO_OUTCOMES = [null, null, null, null, null, null, null];
/** SQLSTATEs of a statement rolled back for another's sake: deadlock_detected, serialization_failure. */
const ROLLED_BACK = new Set(['40P01', '40001']);

/**
 * A drain's claim, bound to what stays the same across its claims (topic,
 * queue, workerId; filter and exclude as JSON text; holder, the drain
 * call's token: its claims leave its own passed leases to it): each call
 * sends one claim of up to n jobs whose timeout fits budgetMs, settling
 * outcomes with it, and returns the driver's own promise (no step added
 * before the drain reads the answer).
 */
export function claimCall(db: Queryable, topic: string | null, queue: string | null, filter: string | null,
                          workerId: string, exclude: string[] | null, holder: string) {
  return (n: number, budgetMs: number, outcomes: readonly Outcome[], onConnected?: () => void): Promise<QueryResult<{ r: ClaimResult }>> =>
    db.query<{ r: ClaimResult }>(
      `select jobs.claim_json($1, $2, $3, null, $4, $5::jsonb, $6, $7::bigint[], $8::integer[], $9::text[],
                                  $10::jsonb[], $11::text[], $12::timestamptz[], $13::float8[], $14::jsonb[], $15::bigint) as r`,
      // Never below 0 (jobs.pick refuses it): a last look with no budget left claims nothing, counting what is due.
      [n, topic, Math.max(0, Math.floor(budgetMs)) / 1000, queue, filter, workerId,
       ...(outcomes.length > 0 ? outcomeArrays(outcomes) : NO_OUTCOMES), exclude, holder],
      { onConnected },
    );
}

/**
 * Whether a claim (or a transactional task's transaction, run-transactional.ts) failed as rolled back
 * whole for another statement's sake: nothing changed, it may be sent again. Any thrown value (a
 * handler's null) answers.
 */
export function rolledBackWhole(error: unknown): boolean {
  try {
    return typeof error === 'object' && error !== null && ROLLED_BACK.has((error as { code?: unknown }).code as string);
  } catch {
    return false; // a handler's throw that cannot be read (a revoked Proxy): not the database's answer
  }
}
