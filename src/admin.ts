import { callValue } from './db/call.js';
import type { Queryable } from './db/driver.js';
import { PgDrainError, ValidationError, translateError } from './errors.js';
import { jobIdSchema, jobIdsSchema, namedQueueOptionsSchema, parse, queueNameSchema, redriveFilterSchema, rescheduleOptionsSchema,
  unstorableText } from './options.js';
import type { JobInfo, JobProgress, NamedQueueInfo, NamedQueueOptions, RedriveFilter, RescheduleOptions } from './types.js';

// Queue administration: each function is one SQL call (one round trip).

/**
 * Cancels a job (jobs.cancel): 'cancelled' when it had not started and never
 * will; 'cancelling' when it runs now (its drain aborts the handler's signal,
 * best effort, and it ends as cancelled unless it acks first); null when it
 * is not active.
 */
export async function cancelJob(db: Queryable, jobId: string, reason?: string): Promise<'cancelled' | 'cancelling' | null> {
  parse(jobIdSchema, jobId, 'jobId');
  checkReason(reason);
  return callValue(db, 'select jobs.cancel($1::bigint, $2) as r', [jobId, reason ?? null]);
}

/** A reason to record as the error: a string PostgreSQL can store. */
function checkReason(reason: unknown): void {
  if (reason !== undefined && typeof reason !== 'string') throw new ValidationError('reason', 'must be a string');
  const rule = reason === undefined ? null : unstorableText(reason);
  if (rule) throw new ValidationError('reason', rule);
}

/**
 * Cancels many jobs in one statement (jobs.cancel_bulk), each as cancelJob
 * does: not yet running, it ends as cancelled; running, it is asked to stop.
 * Returns how many were cancelled or asked to stop.
 */
export async function cancelJobs(db: Queryable, jobIds: readonly string[], reason?: string): Promise<number> {
  parse(jobIdsSchema, jobIds, 'jobIds');
  checkReason(reason);
  return Number(await callValue(db, 'select jobs.cancel_bulk($1::bigint[], $2) as r', [jobIds, reason ?? null]));
}

/**
 * Moves jobs not yet running to another time (runAt, or delaySeconds from
 * the database's now) and/or priority (jobs.reschedule). Returns how many
 * changed; running and ended jobs are left alone.
 */
export async function rescheduleJobs(db: Queryable, jobIds: readonly string[], options: RescheduleOptions): Promise<number> {
  parse(jobIdsSchema, jobIds, 'jobIds');
  const o = parse(rescheduleOptionsSchema, options, 'options');
  return Number(await callValue(db,
    `select jobs.reschedule($1::bigint[], coalesce($2::timestamptz, now() + make_interval(secs => $3::float8)), $4) as r`,
    [jobIds, o.runAt?.toISOString() ?? null, o.delaySeconds ?? null, o.priority ?? null]));
}

/**
 * Ends jobs not yet running as failures (dead letters, redrivable) with
 * reason (jobs.fail); their dependants end as cancelled. Running jobs are
 * left alone. Returns how many failed.
 */
export async function failJobs(db: Queryable, jobIds: readonly string[], reason?: string): Promise<number> {
  parse(jobIdsSchema, jobIds, 'jobIds');
  checkReason(reason);
  return Number(await callValue(db, 'select jobs.fail($1::bigint[], $2) as r', [jobIds, reason ?? null]));
}

const JOB_COLUMNS = `job_id::text as id, task, state, body, result, error, attempts, max_retries, priority, queue,
  attributes, worker_id, scheduled_at, created_at, started_at, ended_at, progress`;

/**
 * A job by id, in one statement: queued (pending, scheduled, blocked,
 * running, expired) or ended, archived by jobs.maintain included; null when
 * there is none (never published, or deleted by retention).
 */
export async function getJob(db: Queryable, jobId: string): Promise<JobInfo | null> {
  parse(jobIdSchema, jobId, 'jobId');
  const { rows } = await db.query<Record<string, unknown>>(
    `select ${JOB_COLUMNS} from jobs.all where job_id = $1::bigint
     union all
     select ${JOB_COLUMNS.replace('state,', 'status as state,').replace('progress', 'null::jsonb as progress')}
     from jobs.job_archive where job_id = $1::bigint
     limit 1`, [jobId]);
  const r = rows[0];
  if (!r) return null;
  const date = (v: unknown) => (v === null ? null : new Date(v as string | Date));
  return {
    id: r.id as string, task: r.task as string, state: r.state as JobInfo['state'], body: r.body, result: r.result,
    error: r.error as string | null, attempts: Number(r.attempts), maxRetries: Number(r.max_retries),
    priority: Number(r.priority), queue: r.queue as string, attributes: r.attributes as JobInfo['attributes'],
    workerId: r.worker_id as string | null, runAt: date(r.scheduled_at)!, createdAt: date(r.created_at)!,
    startedAt: date(r.started_at), endedAt: date(r.ended_at), progress: progressOf(r.progress),
  };
}

/** jobs.job_queue.progress ({attempt, value, at}: sql/0013) as JobInfo's. */
function progressOf(stored: unknown): JobProgress | null {
  if (stored === null || typeof stored !== 'object') return null;
  const p = stored as { attempt: number; value: unknown; at: string };
  return { value: p.value, attempt: Number(p.attempt), at: new Date(p.at) };
}

/**
 * Runs dead letters again (jobs.redrive): all of them, or those matching every
 * filter given; with includeCancelled, cancelled jobs among ids too. Returns how many.
 */
export async function redrive(db: Queryable, filter: RedriveFilter = {}): Promise<number> {
  const f = parse(redriveFilterSchema, filter, 'filter');
  return Number(await callValue(db,
    'select jobs.redrive(job_ids => $1::bigint[], task => $2, queue => $3, ended_after => $4, error_like => $5, ' +
    'include_cancelled => $6) as r',
    [f.ids ?? null, f.task ?? null, f.queue ?? null, f.endedAfter?.toISOString() ?? null, f.errorLike ?? null,
     f.includeCancelled ?? false]));
}

// A queue option and the create_queue argument it is (its type for a null).
const QUEUE_ARGS = [['maxSize', 'max_size', 'integer'], ['timeoutSeconds', 'default_timeout', 'numeric'],
  ['priority', 'default_priority', 'integer'], ['maxRetries', 'default_max_retries', 'integer'],
  ['deadLetter', 'dead_letter', 'text']] as const;

/**
 * Creates a named queue, or changes an existing one (jobs.create_queue):
 * only the options given are sent, so only they change; null clears one.
 */
export async function createNamedQueue(db: Queryable, name: string, options: NamedQueueOptions = {}): Promise<void> {
  parse(queueNameSchema, name, 'name');
  const o = parse(namedQueueOptionsSchema, options, 'options');
  const params: unknown[] = [name];
  let args = '';
  for (const [option, arg, type] of QUEUE_ARGS) {
    if (o[option] === undefined) continue;
    params.push(o[option]);
    args += `, ${arg} => $${params.length}::${type}`;
  }
  try {
    await callValue(db, `select jobs.create_queue($1${args}) as r`, params);
  } catch (error) {
    // Which queues exist (and where their dead letters go) only the database knows.
    if (error instanceof PgDrainError && error.field === 'dead_letter') {
      throw new ValidationError('options.deadLetter', error.message.replace(/^dead_letter: /, ''), { cause: error });
    }
    throw error;
  }
}

/** Every named queue and its settings, by name. */
export async function listNamedQueues(db: Queryable): Promise<NamedQueueInfo[]> {
  const { rows } = await db.query<Record<string, unknown>>(
    `select name, max_size, paused, default_timeout::float8 as timeout, default_priority, default_max_retries,
            dead_letter, created_at
     from jobs.queue order by name`, []).catch((error: unknown) => { throw translateError(error); });
  return rows.map((r) => ({
    name: r.name as string, maxSize: r.max_size as number | null, paused: r.paused as boolean,
    timeoutSeconds: r.timeout as number | null, priority: r.default_priority as number | null,
    maxRetries: r.default_max_retries as number | null, deadLetter: r.dead_letter as string | null,
    createdAt: new Date(r.created_at as string | Date),
  }));
}

/** Pauses (true) or resumes (false) a queue; returns false when no such queue exists. */
export async function setQueuePaused(db: Queryable, name: string, paused: boolean): Promise<boolean> {
  parse(queueNameSchema, name, 'name');
  return callValue(db, paused ? 'select jobs.pause_queue($1) as r' : 'select jobs.resume_queue($1) as r', [name]);
}
