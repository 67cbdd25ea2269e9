import * as z from 'zod/mini';
import type { Queryable } from './db/driver.js';
import { PgDrainError, ValidationError } from './errors.js';
import { parse, queueNameSchema, reasonSchema } from './options.js';
import { callValue, signalOnly, takeSignal, type SignalOption } from './send.js';
import type { PurgeQueueOptions } from './types.js';

// A queue's state: paused or not, its waiting jobs purged, the queue deleted;
// each one SQL call, sent as admin.ts's are. Re-exported by admin.ts.

/** Pauses (true) or resumes (false) a queue; returns false when no such queue exists. */
export async function setQueuePaused(db: Queryable, name: string, paused: boolean, options?: SignalOption): Promise<boolean> {
  parse(queueNameSchema, name, 'name');
  // Not truthiness: 'false' from a form or an env var would pause the queue.
  if (typeof paused !== 'boolean') throw new ValidationError('paused', 'must be a boolean: true pauses, false resumes');
  return callValue(db, paused ? 'select jobs.pause_queue($1) as r' : 'select jobs.resume_queue($1) as r', [name],
                   signalOnly(options));
}

const purgeOptionsSchema = z.strictObject({
  reason: z.optional(reasonSchema),
}, { error: 'must be an object' });

/**
 * Ends every waiting job of a queue (pending, scheduled, blocked) as
 * cancelled, as cancelJobs does, in one statement (jobs.purge_queue); running
 * jobs are left to finish. Returns how many it ended (0 for an unknown queue).
 */
export async function purgeQueue(db: Queryable, name: string, options: PurgeQueueOptions & SignalOption = {}): Promise<number> {
  parse(queueNameSchema, name, 'name');
  const { signal, rest } = takeSignal(options, 'options');
  const o = parse(purgeOptionsSchema, rest, 'options');
  return Number(await callValue(db, 'select jobs.purge_queue($1, $2) as r', [name, o.reason ?? null], signal));
}

/**
 * Deletes a queue and its subscriptions (jobs.delete_queue): false when there
 * is none. Refused (a ValidationError naming name) for the default queue, a
 * queue another names as its deadLetter, and one with waiting or running jobs
 * (purge it, and let its running jobs end or cancel them, first: the message says which).
 */
export async function deleteQueue(db: Queryable, name: string, options?: SignalOption): Promise<boolean> {
  parse(queueNameSchema, name, 'name');
  const signal = signalOnly(options);
  try {
    return await callValue(db, 'select jobs.delete_queue($1) as r', [name], signal);
  } catch (error) {
    if (!(error instanceof PgDrainError) || error.field !== 'name') throw error;
    throw new ValidationError('name', error.message.replace(/^name: /, ''), { cause: error });
  }
}
