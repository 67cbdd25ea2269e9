import * as z from 'zod/mini';
import type { Queryable } from './db/driver.js';
import { translateError } from './errors.js';
import { jsonParam } from './json-text.js';
import { jobIdsSchema } from './job-options.js';
import { checkReason } from './admin.js';
import { keySchema, parse, queueNameSchema, validDateSchema } from './options.js';
import { callValue, send, signalOnly, takeSignal, type SignalOption } from './send.js';
import type { DeletedJobs, DeleteEndedOptions } from './types.js';

// Ending waiting jobs another way than admin.ts does (sql/0036): as a
// success, a cancel found by dedupe key, and deleting jobs outright. Each
// is one SQL call, given up when options.signal fires (as admin.ts's).

/**
 * Ends jobs not yet running (pending, scheduled, blocked) as successes with
 * result (jobs.complete), as an ack ends a running one: their dependants
 * have one dependency fewer to wait for, a serial key's next job gets its
 * turn, the dedupe key is free. Running and ended jobs are left alone and
 * not counted. Returns how many it ended. At most 500 of them may head
 * serial keys (a PgDrainError naming job_ids past that).
 */
export async function completeJobs(db: Queryable, jobIds: readonly string[], result?: unknown,
                                   options?: SignalOption): Promise<number> {
  parse(jobIdsSchema, jobIds, 'jobIds');
  // As a handler's result: none (undefined or null) is stored as SQL null.
  const json = result === undefined || result === null ? null : jsonParam(result, 'result');
  return Number(await callValue(db, 'select jobs.complete($1::bigint[], $2::jsonb) as r', [jobIds, json], signalOnly(options)));
}

/**
 * Cancels the active job holding dedupeKey (jobs.cancel_key), as cancelJob
 * cancels one by id: 'cancelled' when it had not started, 'cancelling' when
 * it runs now, null when no active job holds the key. Keys are global, not
 * per queue.
 */
export async function cancelJobByKey(db: Queryable, dedupeKey: string, reason?: string,
                                     options?: SignalOption): Promise<'cancelled' | 'cancelling' | null> {
  parse(keySchema, dedupeKey, 'dedupeKey');
  checkReason(reason);
  return callValue(db, 'select jobs.cancel_key($1, $2) as r', [dedupeKey, reason ?? null], signalOnly(options));
}

/**
 * Deletes jobs outright (jobs.delete_jobs): a waiting one (pending,
 * scheduled, blocked) leaves no history, its dependants end as cancelled, its
 * serial key moves on and its dedupe key is free, as a cancel would; an
 * ended one's history (jobs.job, jobs.job_archive) is deleted, with the
 * throttle window it holds. Running jobs
 * are left alone and answered in `running` (a dependant whose cancel a
 * cascade deferred never ran: deleted, in `waiting`). At most 500 of the waiting ones
 * may head serial keys (a PgDrainError naming job_ids past that).
 */
export async function deleteJobs(db: Queryable, jobIds: readonly string[], options?: SignalOption): Promise<DeletedJobs> {
  parse(jobIdsSchema, jobIds, 'jobIds');
  const signal = signalOnly(options);
  // The ids as one text, as publishEvent's: every driver answers it alike.
  const { rows } = await send<{ waiting: number; ended: number; running: string }>(db,
    `select waiting, ended, array_to_string(running, ',') as running from jobs.delete_jobs($1::bigint[])`, [jobIds], signal)
    .catch((error: unknown) => { throw translateError(error); });
  const r = rows[0]!;
  return { waiting: Number(r.waiting), ended: Number(r.ended), running: r.running === '' ? [] : r.running.split(',') };
}

const deleteEndedOptionsSchema = z.strictObject({
  endedBefore: z.optional(validDateSchema),
  maxRows: z.optional(z.number().check(z.refine((n) => Number.isInteger(n) && n >= 1 && n <= 10_000_000,
    'must be an integer between 1 and 10000000'))),
}, { error: 'must be an object' });

/**
 * Deletes the ended jobs (successes, failures, cancelled) of a queue, from
 * the history and its archive, oldest first (jobs.delete_ended): those that
 * ended before options.endedBefore, or all; at most options.maxRows (100000)
 * in one call. Returns how many; call again until it returns less than maxRows
 * (rows another transaction holds are skipped, not waited for).
 */
export async function deleteEndedJobs(db: Queryable, name: string, options: DeleteEndedOptions & SignalOption = {}): Promise<number> {
  parse(queueNameSchema, name, 'name');
  const { signal, rest } = takeSignal(options, 'options');
  const o = parse(deleteEndedOptionsSchema, rest, 'options');
  return Number(await callValue(db, 'select jobs.delete_ended($1, $2::timestamptz, $3) as r',
    [name, o.endedBefore?.toISOString() ?? null, o.maxRows ?? 100_000], signal));
}
