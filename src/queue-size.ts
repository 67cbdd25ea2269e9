import * as z from 'zod/mini';
import type { Queryable } from './db/driver.js';
import { ValidationError, translateError } from './errors.js';
import { createQueueCall } from './hint-calls.js';
import { parse, queueNameSchema } from './options.js';
import { send, takeSignal, type SignalOption } from './send.js';
import type { QueueSizeOptions, QueueSizeState } from './types.js';

// How many jobs of a named queue are in one state (pg-boss's getQueueSize):
// one statement over jobs.job_queue's indexes, never the history in jobs.job.

/** The states queueSize counts: those JobInfo names that an index of jobs.job_queue finds by queue. */
export const QUEUE_SIZE_STATES = ['pending', 'scheduled', 'running', 'expired'] as const;

const queueSizeOptionsSchema = z.strictObject({
  state: z.optional(z.enum(QUEUE_SIZE_STATES, `must be one of ${QUEUE_SIZE_STATES.join(', ')}`)),
}, { error: 'must be an object' });

// Each state's condition, as jobs.state_of decides it. One statement text per
// state, its condition a constant, so every plan (a generic one too) knows the
// index: pending and scheduled walk the claim index (job_queue_pending_idx)
// within the queue's entries; running and expired the lease index
// (job_queue_lease_idx: the leased jobs of every queue, as many as drains run).
const NOT_LEASED = 'q.lease_until is null and q.waiting_deps = 0 and not q.serial_wait';
const CONDITIONS: Record<QueueSizeState, string> = {
  pending: `${NOT_LEASED} and q.scheduled_at <= now()`,
  scheduled: `${NOT_LEASED} and q.scheduled_at > now()`,
  running: 'q.lease_until > now()',
  expired: 'q.lease_until <= now()',
};

/** queueSize's statement for state: no row when the queue does not exist. */
export const queueSizeSql = (state: QueueSizeState): string =>
  `select (select count(*) from jobs.job_queue q where q.queue = $1 and ${CONDITIONS[state]})::float8 as n
   from jobs.queue where name = $1`;

/**
 * How many jobs of queue `name` (default 'default') are in options.state
 * (default 'pending'), counted now by the database's clock:
 * - pending: due now and free to claim (not leased, not waiting on a
 *   dependency or a serial key), paused queue or not: what the next drain
 *   would take;
 * - scheduled: waiting for a later run time (runAt, delaySeconds, a retry's
 *   backoff, a snooze);
 * - running: leased by a drain whose lease has not run out;
 * - expired: leased, the lease run out, not yet taken back by a drain.
 * Blocked jobs (on dependencies or a serial key) are not counted here: no
 * index finds them by queue (listJobs or jobs.stats count them).
 *
 * One statement; an index scan of the queue's entries in the claim index, or
 * of the leased jobs: it costs as many index entries as it counts, never a
 * read of the ended history (a queue holding most of jobs.job_queue may be
 * counted by reading that table whole, as cheap then). A queue that does not exist is a ValidationError
 * naming name. options.signal gives the call up as the other reads' does.
 */
export async function queueSize(db: Queryable, name = 'default', options?: QueueSizeOptions & SignalOption): Promise<number> {
  parse(queueNameSchema, name, 'name');
  const { signal, rest } = takeSignal(options, 'options');
  const o = parse(queueSizeOptionsSchema, rest === undefined ? {} : rest, 'options');
  const { rows } = await send<{ n: number }>(db, queueSizeSql(o.state ?? 'pending'), [name], signal)
    .catch((error: unknown) => { throw translateError(error); });
  if (!rows[0]) throw new ValidationError('name', `no queue named ${name}; create it with ${createQueueCall(name)}`);
  return Number(rows[0].n);
}
