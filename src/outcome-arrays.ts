// A drain's outcomes and the column arrays one settle statement takes them in.

/** One settled delivery. An ack's result is already JSON text (null: none). */
export type Outcome =
  | { id: string; attempt: number; outcome: 'ack'; result: string | null; ms: number }
  /** retryAt (ISO text): when to run again, instead of after the backoff (a RetryJob). */
  | { id: string; attempt: number; outcome: 'nack'; error: string; retryAt?: string }
  | { id: string; attempt: number; outcome: 'fail'; error: string }
  /** retryAt: a snooze (SnoozeJob), run again then; without it, a plain give-back. error: why, as its last_error (none: kept). */
  | { id: string; attempt: number; outcome: 'release'; retryAt?: string; error?: string };

/** Settles outcomeArrays(...) of the worker $8 (null: any) in one statement; answers the counts as r (a SettleAnswer). */
export const SETTLE_ARRAYS_SQL =
  'select jobs.settle_arrays($1::bigint[], $2::integer[], $3::text[], $4::jsonb[], $5::text[], $6::timestamptz[], $7::float8[], ' +
  'worker_id => $8) as r';

/** What one settle statement answers: how the outcomes it took ended. */
export interface SettleCounts {
  succeeded: number;
  failed: number;
  cancelled: number;
  retried: number;
  released: number;
  stale: number;
}

/**
 * A settle's answer: its counts, the deliveries (as id:attempt, '12:1,15:3')
 * it ended cancelled, when it cancelled any, those whose outcome it found
 * stale, when any was, and the releases with a reason it made nacks (released
 * unstarted 25 times in a row: jobs.unstarted_bound), when it made any. Deliveries, not jobs: one settle may carry two
 * outcomes of a job, the stale one of its earlier delivery and the next's.
 */
export type SettleAnswer = SettleCounts & { cancelled_ids?: string; stale_ids?: string; never_started_ids?: string };

/** Told what a settle did with some of its outcomes (a Settler's listener: a drain's FailureList). */
export interface SettleListener {
  /** It ended this outcome's job cancelled (a cancel requested while it ran), whatever the outcome said. */
  endedCancelled(outcome: Outcome): void;
  /** It made this release (with a reason) a nack: the job was released unstarted 25 times in a row (unstarted.ts). */
  neverStarted(outcome: Outcome): void;
  /** It found this outcome stale: its delivery had ended without it, so it changed nothing. */
  stale(outcome: Outcome): void;
  /** It answered, for all of these outcomes (told after endedCancelled and stale): the others did what they said. */
  answered(batch: readonly Outcome[]): void;
}

/**
 * Outcomes as the column arrays jobs.settle_arrays and jobs.claim_json take
 * (ids, attempts, outcomes, results, errors, retry_at, ms): cheaper for the
 * server to read than a JSON document. A column nobody uses goes as null.
 * Ids, attempts, outcome names and durations need no quoting, so they go as
 * array literals joined here rather than escaped element by element.
 */
export function outcomeArrays(unsorted: readonly Outcome[]): unknown[] {
  // In job_id order, as a publish locks the dependencies it names
  // (jobs.lock_dependencies): deleted in the order handlers returned, a
  // settle and such a publish could each hold a job the other waited for.
  // Mostly they come in that order already: checked first, it costs less than sorting.
  const batch = inJobIdOrder(unsorted) ? unsorted : [...unsorted].sort(byJobId);
  const n = batch.length;
  const ids: string[] = new Array(n);
  const attempts: number[] = new Array(n);
  const kinds: string[] = new Array(n);
  const ms: (number | 'NULL')[] = new Array(n);
  // Made only when an outcome has one: no-op jobs have none.
  let results: (string | null)[] | undefined;
  let errors: (string | null)[] | undefined;
  let retryAts: (string | null)[] | undefined;
  for (let i = 0; i < n; i++) {
    const o = batch[i]!;
    ids[i] = o.id;
    attempts[i] = o.attempt;
    kinds[i] = o.outcome;
    if (o.outcome === 'ack') {
      // Date.now() at the end minus at the start: below 0 when the host's clock stepped back
      // meanwhile. jobs.settle_arrays refuses that (PD008), with every outcome of the statement.
      ms[i] = o.ms > 0 ? o.ms : 0;
      if (o.result !== null) (results ??= new Array<string | null>(n).fill(null))[i] = o.result;
    } else {
      ms[i] = 'NULL';
      if (o.error !== undefined) (errors ??= new Array<string | null>(n).fill(null))[i] = o.error; // a release's: only with a reason
      if (o.outcome !== 'fail' && o.retryAt !== undefined) (retryAts ??= new Array<string | null>(n).fill(null))[i] = o.retryAt;
    }
  }
  return [`{${ids.join(',')}}`, `{${attempts.join(',')}}`, `{${kinds.join(',')}}`,
          results ?? null, errors ?? null, retryAts ?? null, `{${ms.join(',')}}`];
}

function inJobIdOrder(outcomes: readonly Outcome[]): boolean {
  for (let i = 1; i < outcomes.length; i++) if (byJobId(outcomes[i - 1]!, outcomes[i]!) > 0) return false;
  return true;
}

/** Ids are bigints in decimal without leading zeros: shorter is smaller. */
function byJobId(x: Outcome, y: Outcome): number {
  return x.id.length - y.id.length || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0);
}
