import { callValue } from './db/call.js';
import type { Queryable } from './db/driver.js';
import { ValidationError } from './errors.js';
import { jsonParam } from './json-text.js';
import { jobIdsSchema } from './job-options.js';
import { keySchema, parse, unstorableText } from './options.js';

// Ending waiting jobs another way than admin.ts does (sql/0018): as a
// success, and a cancel found by dedupe key. Each is one SQL call.

/**
 * Ends jobs not yet running (pending, scheduled, blocked) as successes with
 * result (jobs.complete), as an ack ends a running one: their dependants
 * have one dependency fewer to wait for, a serial key's next job gets its
 * turn, the dedupe key is free. Running and ended jobs are left alone and
 * not counted. Returns how many it ended. At most 500 of them may head
 * serial keys (a PgDrainError naming job_ids past that).
 */
export async function completeJobs(db: Queryable, jobIds: readonly string[], result?: unknown): Promise<number> {
  parse(jobIdsSchema, jobIds, 'jobIds');
  // As a handler's result: none (undefined or null) is stored as SQL null.
  const json = result === undefined || result === null ? null : jsonParam(result, 'result');
  return Number(await callValue(db, 'select jobs.complete($1::bigint[], $2::jsonb) as r', [jobIds, json]));
}

/**
 * Cancels the active job holding dedupeKey (jobs.cancel_key), as cancelJob
 * cancels one by id: 'cancelled' when it had not started, 'cancelling' when
 * it runs now, null when no active job holds the key. Keys are global, not
 * per queue.
 */
export async function cancelJobByKey(db: Queryable, dedupeKey: string, reason?: string): Promise<'cancelled' | 'cancelling' | null> {
  parse(keySchema, dedupeKey, 'dedupeKey');
  if (reason !== undefined && typeof reason !== 'string') throw new ValidationError('reason', 'must be a string');
  const rule = reason === undefined ? null : unstorableText(reason);
  if (rule) throw new ValidationError('reason', rule);
  return callValue(db, 'select jobs.cancel_key($1, $2) as r', [dedupeKey, reason ?? null]);
}
