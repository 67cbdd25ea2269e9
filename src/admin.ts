import * as z from 'zod/mini';
import type { Queryable } from './db/driver.js';
import { PgDrainError, ValidationError, translateError } from './errors.js';
import { JOB_COLUMNS, jobInfoOf } from './job-info.js';
import { jsonParam } from './json-text.js';
import { capOverBase, expiryChecks, jobIdsSchema, publishOptionsSchema, redriveFilterSchema,
  rescheduleOptionsSchema, retryPolicyOptions } from './job-options.js';
import { jobIdSchema, parse, queueNameSchema, reasonSchema, TASK_PATTERN, taskSchema } from './options.js';
import { asOption } from './publish.js';
import { callValue, send, signalOnly, takeSignal, type SignalOption } from './send.js';
import type { JobInfo, PublishEventOptions, RedriveFilter, RedriveResult,
  RescheduleOptions, Subscription } from './types.js';

// Queue administration: each function is one SQL call (one round trip),
// sent as a publish is (callValue, send.ts): given up when options.signal
// fires, and sent again after a deadlock when it was a statement of its own.
// The reads (getJob, listSubscriptions) take options.signal alike.
// A named queue's settings (queues.create, queues.list) are in queue-settings.ts,
// its pause, purge and delete in queue-admin.ts.
export { createNamedQueue, listNamedQueues } from './queue-settings.js';
export { deleteQueue, purgeQueue, setQueuePaused } from './queue-admin.js';

/**
 * Cancels a job (jobs.cancel): 'cancelled' when it had not started and never
 * will; 'cancelling' when it runs now (its drain aborts the handler's signal,
 * best effort, and it ends as cancelled unless it acks first); null when it
 * is not active.
 */
export async function cancelJob(db: Queryable, jobId: string, reason?: string,
                                options?: SignalOption): Promise<'cancelled' | 'cancelling' | null> {
  parse(jobIdSchema, jobId, 'jobId');
  checkReason(reason);
  return callValue(db, 'select jobs.cancel($1::bigint, $2) as r', [jobId, reason ?? null], signalOnly(options));
}

/** A reason to record as the error (reasonSchema): left out, or a string PostgreSQL can store, not blank. */
export function checkReason(reason: unknown): void {
  if (reason !== undefined) parse(reasonSchema, reason, 'reason');
}

/**
 * Cancels many jobs in one statement (jobs.cancel_bulk), each as cancelJob
 * does: not yet running, it ends as cancelled; running, it is asked to stop.
 * Returns how many were cancelled or asked to stop.
 */
export async function cancelJobs(db: Queryable, jobIds: readonly string[], reason?: string, options?: SignalOption): Promise<number> {
  parse(jobIdsSchema, jobIds, 'jobIds');
  checkReason(reason);
  return Number(await callValue(db, 'select jobs.cancel_bulk($1::bigint[], $2) as r', [jobIds, reason ?? null], signalOnly(options)));
}

/**
 * Moves jobs not yet running to another time (runAt, or delaySeconds from
 * the call, by the database's clock), priority, maxRetries and/or attempts spent
 * (jobs.reschedule). Returns how many changed; running and ended jobs are
 * left alone.
 */
export async function rescheduleJobs(db: Queryable, jobIds: readonly string[],
                                     options: RescheduleOptions & SignalOption): Promise<number> {
  parse(jobIdsSchema, jobIds, 'jobIds');
  const { signal, rest } = takeSignal(options, 'options');
  const o = parse(rescheduleOptionsSchema, rest, 'options', 'reschedule');
  // What only the database checks (a job's expiry, its max_retries) named as the option given.
  const named: Record<string, string> = { run_at: o.delaySeconds === undefined ? 'runAt' : 'delaySeconds', max_retries: 'maxRetries',
                                          attempt: 'attempts' };
  return Number(await callValue(db,
    // delaySeconds from the call, not the transaction's start (a caller's transaction open for a while):
    // jobs.call_time, as publish's; 0: the transaction's time (jobs.clock), as publish's.
    `select jobs.reschedule($1::bigint[], coalesce($2::timestamptz, case when $3::float8 = 0 then jobs.clock(null)
       else jobs.call_time(null, jobs.clock(null)) + make_interval(secs => $3::float8) end), $4,
       max_retries => $5, attempt => $6) as r`,
    [jobIds, o.runAt?.toISOString() ?? null, o.delaySeconds ?? null, o.priority ?? null, o.maxRetries ?? null,
      o.attempts ?? null], signal).catch((error: unknown) => {
    if (!(error instanceof ValidationError) || !(error.field! in named)) throw error;
    throw new ValidationError(`options.${named[error.field!]}`, error.rule, { cause: error.cause ?? error });
  }));
}

/**
 * Ends jobs not yet running as failures (dead letters, redrivable) with
 * reason (jobs.fail); their dependants end as cancelled. Running jobs are
 * left alone. Returns how many failed.
 */
export async function failJobs(db: Queryable, jobIds: readonly string[], reason?: string, options?: SignalOption): Promise<number> {
  parse(jobIdsSchema, jobIds, 'jobIds');
  checkReason(reason);
  return Number(await callValue(db, 'select jobs.fail($1::bigint[], $2) as r', [jobIds, reason ?? null], signalOnly(options)));
}

/**
 * A job by id, in one statement: queued (pending, scheduled, blocked,
 * running, expired) or ended, archived by jobs.maintain included; null when
 * there is none (never published, deleted by deleteJobs, or by retention).
 */
export async function getJob(db: Queryable, jobId: string, options?: SignalOption): Promise<JobInfo | null> {
  parse(jobIdSchema, jobId, 'jobId');
  const { rows } = await send<Record<string, unknown>>(db,
    `select ${JOB_COLUMNS} from jobs.all where job_id = $1::bigint
     union all
     select ${JOB_COLUMNS.replace('state,', 'status as state,').replace('progress,', 'null::jsonb as progress,')
       .replace(', unstarted,', ', null::smallint as unstarted,').replace('snoozed', 'null::integer as snoozed')}
     from jobs.job_archive where job_id = $1::bigint
     limit 1`, [jobId], signalOnly(options)).catch((error: unknown) => { throw translateError(error); });
  const r = rows[0];
  return r ? jobInfoOf(r) : null;
}

/** jobs.redrive_counts's call, its filter as $1 to $7: what redrive() sends, and the dashboard's redrive of a queue in its statement. */
export const REDRIVE_CALL = 'jobs.redrive_counts(job_ids => $1::bigint[], task => $2, queue => $3, ended_after => $4, '
  + 'error_like => $5, include_cancelled => $6, max_rows => $7)';

/** redrive()'s filter, checked, as REDRIVE_CALL's $1 to $7. */
export function redriveParams(filter: RedriveFilter): unknown[] {
  const f = parse(redriveFilterSchema, filter, 'filter');
  return [f.ids ?? null, f.task ?? null, f.queue ?? null, f.endedAfter?.toISOString() ?? null, f.errorLike ?? null,
          f.includeCancelled ?? false, f.maxRows ?? null];
}

/** REDRIVE_CALL's row as jsonb (one value, as every driver answers it). */
export const REDRIVE_JSON = `(select jsonb_build_object('redriven', x.redriven, 'heldByKey', x.held_by_key, 'serialLater', x.serial_later)
  from ${REDRIVE_CALL} x)`;

/**
 * Runs dead letters again (jobs.redrive_counts): all of them, or those
 * matching every filter given; with includeCancelled, cancelled jobs among
 * ids too; with maxRows, at most that many whose dedupe key no active job
 * holds. Returns how many went back, and how many it left: held by their
 * dedupe key, or of serial keys past the 500 one call takes (call again).
 * A queue filter naming no queue is a ValidationError naming filter.queue.
 */
export async function redrive(db: Queryable, filter: RedriveFilter = {}, options?: SignalOption): Promise<RedriveResult> {
  const params = redriveParams(filter);
  // A queue that does not exist (PD009 queue), named as the filter's field.
  return callValue<RedriveResult>(db, `select ${REDRIVE_JSON} as r`, params, signalOnly(options)).catch((error: unknown) => {
    if (!(error instanceof ValidationError) || error.field !== 'queue') throw error;
    throw new ValidationError('filter.queue', error.rule, { cause: error.cause ?? error });
  });
}

// Fan-out (sql/0033): a queue subscribes to an event, and one publish of the
// event writes one job into each subscribed queue.

/** An event's name: the task-name rule (jobs.check_event). */
export const eventNameSchema = z.string({ error: 'must be a string' }).check(z.minLength(1, 'must be a non-empty event name'),
  z.maxLength(200, 'must be at most 200 characters'),
  z.regex(TASK_PATTERN, 'must be dot-separated words of letters, digits, _ : or -'));
const subscribeOptionsSchema = z.strictObject({ task: z.optional(taskSchema) });
/** publishEvent's options: the run time, timeout, priority, retries, retry policy, expiry, attributes and group of every job it writes. */
export const publishEventOptionsSchema = z.strictObject({
  runAt: publishOptionsSchema.shape.runAt,
  delaySeconds: publishOptionsSchema.shape.delaySeconds,
  timeoutSeconds: publishOptionsSchema.shape.timeoutSeconds,
  priority: publishOptionsSchema.shape.priority,
  maxRetries: publishOptionsSchema.shape.maxRetries,
  attributes: publishOptionsSchema.shape.attributes,
  ...retryPolicyOptions,
  expiresAt: publishOptionsSchema.shape.expiresAt,
  expiresInSeconds: publishOptionsSchema.shape.expiresInSeconds,
  group: publishOptionsSchema.shape.group,
}).check(z.refine((o) => o.runAt === undefined || o.delaySeconds === undefined,
  { message: 'give runAt or delaySeconds, not both', path: ['delaySeconds'] }), capOverBase, ...expiryChecks);

const NO_DEDUPE_KEY = 'a dedupe key is global, not per queue: on the job of every subscribed queue, one key would make '
  + 'the fan-out one job, in the first queue. To publish an event at most once, publish its '
  + 'job into each subscribed queue yourself, each with a key of its own (the queue\'s name and the event\'s key)';
/** Publish options an event takes none of, and why: each publishEvent (and POST /events) names the one given. */
export const EVENT_TAKES_NO: Readonly<Record<string, string>> = {
  dedupeKey: NO_DEDUPE_KEY,
  dedupeMode: `it goes with a dedupeKey, which an event takes none of: ${NO_DEDUPE_KEY}`,
  throttleSeconds: `it goes with a dedupeKey, which an event takes none of: ${NO_DEDUPE_KEY}`,
  queue: 'its subscriptions name the queues it is published to (subscribe the queue to the event)',
};

/** The first option of options an event takes none of, as [name, why]; undefined when none. */
export function eventTakesNo(options: unknown): [string, string] | undefined {
  if (typeof options !== 'object' || options === null) return undefined;
  const name = Object.keys(options).find((k) => Object.hasOwn(EVENT_TAKES_NO, k));
  return name === undefined ? undefined : [name, `an event takes no ${name}: ${EVENT_TAKES_NO[name]}`];
}

/**
 * Subscribes a queue to an event (jobs.subscribe): each publishEvent of it
 * then writes a job of options.task (default: the event's name) into the
 * queue. Idempotent: true when newly subscribed, false when it was already
 * (its task then set to options.task when given).
 */
export async function subscribe(db: Queryable, event: string, queue: string,
                                options: { task?: string | undefined } & SignalOption = {}): Promise<boolean> {
  parse(eventNameSchema, event, 'event');
  parse(queueNameSchema, queue, 'queue');
  const { signal, rest } = takeSignal(options, 'options');
  const o = parse(subscribeOptionsSchema, rest, 'options');
  try {
    return await callValue(db, 'select jobs.subscribe($1, $2, $3) as r', [event, queue, o.task ?? null], signal);
  } catch (error) {
    // An sql: task the database does not allow: the option that named it (with
    // none, the database names event, the task then).
    if (error instanceof PgDrainError && error.field === 'task') {
      throw new ValidationError('options.task', error.message.replace(/^task: /, ''), { cause: error });
    }
    throw error;
  }
}

/** Ends a queue's subscription to an event (jobs.unsubscribe): true when there was one. */
export async function unsubscribe(db: Queryable, event: string, queue: string, options?: SignalOption): Promise<boolean> {
  parse(eventNameSchema, event, 'event');
  parse(queueNameSchema, queue, 'queue');
  return callValue(db, 'select jobs.unsubscribe($1, $2) as r', [event, queue], signalOnly(options));
}

/** Every subscription (of one event, when given), by event and queue. */
export async function listSubscriptions(db: Queryable, event?: string, options?: SignalOption): Promise<Subscription[]> {
  if (event !== undefined) parse(eventNameSchema, event, 'event');
  const { rows } = await send<Record<string, unknown>>(db,
    `select event, queue, task, created_at from jobs.subscriptions where $1::text is null or event = $1
     order by event, queue`, [event ?? null], signalOnly(options)).catch((error: unknown) => { throw translateError(error); });
  return rows.map((r) => ({ event: r.event as string, queue: r.queue as string, task: r.task as string,
                            createdAt: new Date(r.created_at as string | Date) }));
}

/** publishEvent()'s checks, with no database: what it would send, or its ValidationError (the CLI's, before connecting). */
export function checkPublishEvent(event: string, body?: unknown, options?: PublishEventOptions & SignalOption) {
  parse(eventNameSchema, event, 'event');
  const { signal, rest } = takeSignal(options, 'options');
  const refused = eventTakesNo(rest);
  if (refused) throw new ValidationError(`options.${refused[0]}`, refused[1]);
  const o = parse(publishEventOptionsSchema, rest ?? {}, 'options');
  return { signal, o, json: jsonParam(body, 'body'),
           attributes: o.attributes === undefined ? null : jsonParam(o.attributes, 'options.attributes') };
}

/**
 * Publishes an event (jobs.publish_event): one job per subscribed queue, in
 * one statement, all or nothing (a full queue refuses the whole publish:
 * PgDrainError queue_full). Returns the ids in queue-name order; none when
 * no queue subscribes. options.signal gives the call up as publish's does.
 */
export async function publishEvent(db: Queryable, event: string, body?: unknown,
                                   options?: PublishEventOptions & SignalOption): Promise<string[]> {
  const { signal, o, json, attributes } = checkPublishEvent(event, body, options);
  const ids = await callValue<string>(db,
    // delaySeconds as a run time from the call's clock, read once (c.at) for it and the expiry, as publish's (0: none).
    `select array_to_string(jobs.publish_event($1, $2::jsonb, coalesce($3::timestamptz, c.at + make_interval(secs => nullif($5::float8, 0))),
       $4::integer, attributes => $6::jsonb, timeout => $7::numeric, max_retries => $8::integer,
       retry_delay => $9::numeric, retry_backoff => $10, retry_delay_max => $11::numeric,
       -- expiresInSeconds: after the scheduled time (without runAt: after the call), as publish's.
       expires_at => coalesce($12::timestamptz, coalesce($3::timestamptz, c.at + make_interval(secs => coalesce($5::float8, 0)))
                                                + make_interval(secs => $13::float8)),
       group_id => $14, group_tier => $15), ',') as r
     from (select jobs.call_time(null, jobs.clock(null)) as at) c`,
    [event, json, o.runAt?.toISOString() ?? null, o.priority ?? null, o.delaySeconds ?? null,
     attributes,
     o.timeoutSeconds ?? null, o.maxRetries ?? null, o.retryDelaySeconds ?? null,
     o.retryBackoff === undefined ? null : o.retryBackoff ? 'exponential' : 'fixed', o.retryDelayMaxSeconds ?? null,
     o.expiresAt?.toISOString() ?? null, o.expiresInSeconds ?? null, o.group?.id ?? null, o.group?.tier ?? null], signal)
    // A check only the database makes names the option as publish's do (max_retries → options.maxRetries).
    .catch((error: unknown) => { throw asOption(error, 'options.'); });
  return ids === '' ? [] : ids.split(',');
}
