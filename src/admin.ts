import { callValue } from './db/call.js';
import type { Queryable } from './db/driver.js';
import { ValidationError } from './errors.js';
import { jobIdSchema, parse, queueNameSchema, redriveFilterSchema, unstorableText } from './options.js';
import type { RedriveFilter } from './types.js';

// Queue administration: each function is one SQL call (one round trip).

/**
 * Cancels a job (jobs.cancel): 'cancelled' when it had not started and never
 * will; 'cancelling' when it runs now (its drain aborts the handler's signal,
 * best effort, and it ends as cancelled unless it acks first); null when it
 * is not active.
 */
export async function cancelJob(db: Queryable, jobId: string, reason?: string): Promise<'cancelled' | 'cancelling' | null> {
  parse(jobIdSchema, jobId, 'jobId');
  if (reason !== undefined && typeof reason !== 'string') throw new ValidationError('reason', 'must be a string');
  const rule = reason === undefined ? null : unstorableText(reason);
  if (rule) throw new ValidationError('reason', rule);
  return callValue(db, 'select jobs.cancel($1::bigint, $2) as r', [jobId, reason ?? null]);
}

/** Runs dead letters again (jobs.redrive): all of them, or those matching every filter given. Returns how many. */
export async function redrive(db: Queryable, filter: RedriveFilter = {}): Promise<number> {
  const f = parse(redriveFilterSchema, filter, 'filter');
  return Number(await callValue(db,
    'select jobs.redrive(job_ids => $1::bigint[], task => $2, queue => $3, ended_after => $4, error_like => $5) as r',
    [f.ids ?? null, f.task ?? null, f.queue ?? null, f.endedAfter?.toISOString() ?? null, f.errorLike ?? null]));
}

/** Creates a named queue, or sets the maxSize of an existing one (undefined: unbounded). */
export async function createNamedQueue(db: Queryable, name: string, options: { maxSize?: number } = {}): Promise<void> {
  parse(queueNameSchema, name, 'name');
  const { maxSize } = options;
  if (maxSize !== undefined && (!Number.isInteger(maxSize) || maxSize < 1 || maxSize > 100_000_000)) {
    throw new ValidationError('options.maxSize', 'must be an integer between 1 and 100000000');
  }
  await callValue(db, 'select jobs.create_queue($1, $2) as r', [name, maxSize ?? null]);
}

/** Pauses (true) or resumes (false) a queue; returns false when no such queue exists. */
export async function setQueuePaused(db: Queryable, name: string, paused: boolean): Promise<boolean> {
  parse(queueNameSchema, name, 'name');
  return callValue(db, paused ? 'select jobs.pause_queue($1) as r' : 'select jobs.resume_queue($1) as r', [name]);
}
