import * as z from 'zod/mini';
import type { Queryable } from './db/driver.js';
import { abortSignalSchema, integerCheck, integerCheckSaying, parse } from './options.js';
import { callValue } from './send.js';

// TS maintain(): jobs.maintain passes (sql/0024, sql/0041), one statement
// each, until caught up, the budget is spent or options.signal fires.

/** What one jobs.maintain pass did. */
interface PassReport {
  expired: number;
  /** Drain-run ticks that wrote a job (not those a dedupe key's keep answered with its holder). */
  ticks: number;
  deleted: number;
  archived: number;
  /** Ended dedupe throttle windows deleted. */
  windows: number;
  /** jobs.tick_miss rows deleted: claims' misses of ticks no longer due. */
  misses: number;
  /** Ended jobs, windows, leases and tick misses left for a change after the pass's snapshot (REPEATABLE READ, SERIALIZABLE): the next pass's. */
  left: number;
}

/** What maintain() did: its passes' counts summed. */
export interface MaintainReport extends PassReport {
  /** jobs.maintain passes run, each in its own transaction. */
  passes: number;
  /** false when the budget ran out (or options.signal fired) while the last pass still found a full share to do (jobs, leases, windows or misses) or left some. */
  caughtUp: boolean;
  /** Present (true) only when options.signal fired before it caught up (the budget ending too): no pass started after the signal. */
  stopped?: true;
}

const BUDGET_RULE = 'must be an integer number of milliseconds';
const maintainSchema = z.strictObject({
  retentionSeconds: z.optional(z.number({ error: 'must be a finite number of seconds' }).check(z.minimum(0, 'must be 0 or more'), z.maximum(3_153_600_000, 'must be at most 3153600000 (a hundred years)'))),
  archive: z.optional(z.boolean({ error: 'must be a boolean' })),
  maxRows: z.optional(z.number({ error: 'must be an integer' }).check(integerCheck, z.minimum(1, 'must be at least 1'), z.maximum(10_000_000, 'must be at most 10000000'))),
  budgetMs: z.optional(z.number({ error: BUDGET_RULE }).check(integerCheckSaying(BUDGET_RULE), z.minimum(1, 'must be at least 1'),
    z.maximum(86_400_000, 'must be at most 86400000 (a day)'))),
  /** When it fires: start no more passes (the running one ends, committed); the report says `stopped`. */
  signal: z.optional(abortSignalSchema),
});

/**
 * Maintenance until caught up, as jobs.run_maintenance does it in SQL:
 * jobs.maintain passes (each its own statement, so its own transaction on
 * every driver, neon() over HTTP included) that expire leases, publish due
 * drain-run ticks, delete (or archive) ended jobs older than
 * retentionSeconds (default 7 days; at most a hundred years) and delete ended
 * throttle windows and tick misses (jobs.tick_miss), at most maxRows (default 10,000) of each per pass, until
 * a pass does less than that of each or budgetMs (default 50,000) has
 * passed: no pass starts after it, the one running ends, or two passes in a row only left rows (`left`). With
 * options.signal: no pass starts once it has fired (none, if it had already), the one running ends and commits,
 * and the report, counting the passes done, has `stopped: true` unless they caught up. Not in a
 * transaction of your own: there the passes commit together. For platforms without pg_cron: call it from your scheduler
 * (with a budget under its time limit); with pg_cron,
 * `select jobs.schedule_maintenance()`.
 */
export async function maintain(db: Queryable, options: z.input<typeof maintainSchema> = {}): Promise<MaintainReport> {
  const o = parse(maintainSchema, options, 'options');
  const step = o.maxRows ?? 10_000;
  const deadline = Date.now() + (o.budgetMs ?? 50_000);
  const total: MaintainReport = { expired: 0, ticks: 0, deleted: 0, archived: 0, windows: 0, misses: 0, left: 0, passes: 0, caughtUp: false };
  let idle = 0;  // passes in a row that did nothing but leave rows
  while (!o.signal?.aborted) {
    // pg_cron's run log is read whole to prune it: the first pass only.
    const pass = await callValue<PassReport>(db, `select jobs.maintain(coalesce(make_interval(secs => $1::float8), '7 days'),
                     coalesce($2, false), $3::integer, prune_run_log => $4) as r`,
      [o.retentionSeconds ?? null, o.archive ?? null, step, total.passes === 0]);
    total.expired += pass.expired;
    total.ticks += pass.ticks;
    total.deleted += pass.deleted;
    total.archived += pass.archived;
    total.windows += pass.windows;
    total.misses += pass.misses;
    total.left += pass.left;
    total.passes += 1;
    total.caughtUp = pass.deleted + pass.archived < step && pass.expired < step && pass.windows < step && pass.misses < step
      && pass.left === 0;
    // Inside the caller's own REPEATABLE READ transaction every pass shares its snapshot and leaves the
    // same rows again, until the budget ran out: two such passes in a row end it, not caught up.
    idle = pass.left > 0 && pass.expired + pass.ticks + pass.deleted + pass.archived + pass.windows + pass.misses === 0
      ? idle + 1 : 0;
    // Stopped by the budget (or by passes that only left rows) with the signal fired meanwhile: stopped all the same.
    if (total.caughtUp || idle >= 2 || Date.now() >= deadline) return total.caughtUp || !o.signal?.aborted ? total : { ...total, stopped: true };
  }
  // Not the signal's reason thrown, as drain() does not: what the passes did is the answer.
  return { ...total, stopped: true };
}
