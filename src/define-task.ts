import type { Queryable } from './db/driver.js';
import { ValidationError } from './errors.js';
import { parse, taskSchema } from './options.js';
import { refuseUnknownOptions } from './peer-options.js';
import { publish } from './publish.js';
import type { JsonBody, JsonResult } from './json-body.js';
import { reachableHandlers, type TaskLookup } from './tasks.js';
import type { BatchContext, BatchHandler, BatchItem, BatchResults, Handler, JobContext, PublishOptions, TaskMap,
  TransactionalHandler } from './types.js';

const TRANSACTIONAL = Symbol.for('pgdrain.transactional');
/** A batch task's brand: its maxSize (Infinity: no split). A brand, as CLI and library copies must agree. */
const BATCH = Symbol.for('pgdrain.batch');
/** A task's heartbeatSeconds, a brand as BATCH (run-handler.ts starts the heartbeat). */
const HEARTBEAT = Symbol.for('pgdrain.heartbeat');
// heartbeatSeconds' bounds: at most extendLease's 86400 (the SQL refuses more); at least 1, as a beat
// every 0.4 s per running job is already many statements, and a shorter lease could pass between beats.
const MIN_HEARTBEAT = 1;
const MAX_HEARTBEAT = 86400;
/** The largest batch.maxSize: a claim's largest batch. */
const MAX_BATCH_SIZE = 10_000;
/** defineTask()'s options: TaskOptions and the db it publishes through. */
const TASK_OPTIONS = new Set(['transactional', 'batch', 'heartbeatSeconds', 'db']);

export interface TaskOptions {
  /**
   * Run the handler in a transaction that also acks the job: ctx.db is that
   * transaction, and ctx.publish joins it. The handler's database work and
   * its follow-up jobs commit together with the ack, or not at all, so a
   * job whose work is only in this database happens exactly once. Costs one
   * pooled connection for the handler's duration and one settle statement
   * per job (plain tasks settle in batches).
   */
  transactional?: boolean | undefined;
  /**
   * One handler call for many jobs of this task (docs/tasks.md "Batch handlers"):
   * the handler takes `(jobs: { body, job }[], ctx)`. true: all the jobs of
   * the task one claim brings; { maxSize }: at most that many per call.
   * Not with transactional.
   */
  batch?: boolean | BatchOptions | undefined;
  /**
   * A heartbeat on a timer (pg-boss's heartbeatSeconds; docs/hooks-and-progress.md "Lease
   * extension"): while a drain runs the handler, it extends the job's lease
   * to this many seconds from now every half of it less the timer's margin
   * (a beat then has half of it to land), as ctx.extendLease does.
   * The job's timeout is its first lease; the handler then runs until it
   * returns or the drain stops. A beat that finds the lease lost (expired by
   * a claim) stops the beats and fires ctx.signal; one that fails on a
   * database error is tried again at the next, or after half of what the job
   * has left before its timer ends if sooner. 1 to 86400. Not with batch.
   */
  heartbeatSeconds?: number | undefined;
}

/**
 * The options of a task of one job per call. Without `batch?: false`, a batch
 * handler that does not type-check as one (its answer, a ctx typed JobContext)
 * would silently fall to the plain overload, typed as a task whose body is an array.
 */
export type NotBatch = TaskOptions & { batch?: false | undefined };

export interface BatchOptions {
  /** The most jobs per call (1 to 10000); a claim's larger group is split. Default: no limit. */
  maxSize?: number | undefined;
}

interface TaskPublish<Body> {
  /** The dotted task name. */
  readonly task: string;
  /** Publishes a job for this task through the bound queue; returns its id. */
  publish(body: Body, options?: PublishOptions): Promise<string>;
  /** Publishing bound to your own client or transaction. */
  using(db: Queryable): { publish(body: Body, options?: PublishOptions): Promise<string> };
}

/** A task defined in code: call it directly, or publish a typed job for it. */
export interface Task<Body, Result> extends TaskPublish<Body> {
  /** Runs the handler now, in this process (a direct call, no queue). */
  (body: Body, ctx: JobContext): Promise<Result>;
  readonly handler: Handler<Body, Result>;
}

/** A task defined with { batch: true }: publish its jobs one by one, drains run them many at a time. */
export interface BatchTask<Body, Result> extends TaskPublish<Body> {
  /** Runs the handler now on these jobs, in this process (a direct call, no queue). */
  (jobs: BatchItem<Body>[], ctx: BatchContext): Promise<BatchResults<Result>>;
  readonly handler: BatchHandler<Body, Result>;
}

/**
 * Defines a typed task: `const send = defineTask('email.send', async (b: Mail) => …, { db })`.
 * `db` is where .publish writes (a queue's driver); queue.defineTask binds it
 * for you and registers the handler with the queue's drains. Body must be its
 * own JSON form (JsonBody): the handler gets the body back from JSON; and so
 * must Result (JsonResult; a batch's items other than its Errors): it is stored as JSON.
 */
export function defineTask<Body = unknown, Result = unknown>(
  name: string, handler: JsonBody<Body> & JsonResult<Exclude<Result, Error>, 'item'> & BatchHandler<Body, Result>,
  options: TaskOptions & { batch: true | BatchOptions; transactional?: false | undefined; heartbeatSeconds?: undefined;
                           db?: Queryable },
): BatchTask<Body, Result>;
export function defineTask<Body = unknown, Result = unknown>(
  name: string, handler: JsonBody<Body> & JsonResult<Result> & TransactionalHandler<Body, Result>,
  options: NotBatch & { transactional: true; db?: Queryable },
): Task<Body, Result>;
export function defineTask<Body = unknown, Result = unknown>(
  name: string, handler: JsonBody<Body> & JsonResult<Result> & Handler<Body, Result>, options?: NotBatch & { db?: Queryable },
): Task<Body, Result>;
export function defineTask<Body = unknown, Result = unknown>(
  name: string, anyHandler: Handler<Body, Result> | TransactionalHandler<Body, Result> | BatchHandler<Body, Result>,
  options: TaskOptions & { db?: Queryable } = {},
): Task<Body, Result> | BatchTask<Body, Result> {
  // A transactional handler is always called with ctx.db (run-transactional.ts).
  const handler = anyHandler as Handler<Body, Result>;
  parse(taskSchema, name, 'name');
  if (typeof handler !== 'function') throw new ValidationError('handler', 'must be a function (body, ctx) => result');
  // pg-boss's work() options ({ batchSize: 10 }) would leave a handler written for an array a body.
  refuseUnknownOptions(options, TASK_OPTIONS, 'task');
  const { db, transactional } = options;
  if (transactional !== undefined && typeof transactional !== 'boolean') {
    throw new ValidationError('options.transactional', 'must be true or false');
  }
  const maxSize = batchMaxSize(options.batch);
  if (maxSize !== undefined && transactional) {
    // Its jobs would share one transaction: one job's error would roll back the work of all.
    throw new ValidationError('options.batch', 'cannot be combined with transactional: true (docs/tasks.md "Batch handlers")');
  }
  const heartbeat = heartbeatSeconds(options.heartbeatSeconds);
  if (heartbeat !== undefined && maxSize !== undefined) {
    // A call's jobs end together at the earliest timeout: a batch has no lease of its own to extend.
    throw new ValidationError('options.heartbeatSeconds', 'cannot be combined with batch (docs/tasks.md "Batch handlers")');
  }
  const call = maxSize === undefined ? async (body: Body, ctx: JobContext) => handler(body, ctx)
    : async (jobs: unknown, ctx: JobContext) => {
      // Called directly with a body, or run per job by an older copy of pgdrain.
      if (!Array.isArray(jobs)) throw new ValidationError('jobs', `must be an array of { body, job }: ${name} is a batch task`);
      return handler(jobs as Body, ctx);
    };
  const wrapped = Object.assign((body: Body, ctx: JobContext) => call(body, ctx), {
    task: name,
    handler,
    publish(body: Body, publishOptions?: PublishOptions) {
      if (!db) throw new ValidationError('db', `task ${name} is not bound to a queue: use queue.defineTask or pass { db }`);
      return publish(db, name, body, publishOptions);
    },
    using: (other: Queryable) => ({ publish: (body: Body, o?: PublishOptions) => publish(other, name, body, o) }),
  });
  if (transactional) Object.defineProperty(wrapped, TRANSACTIONAL, { value: true });
  if (maxSize !== undefined) Object.defineProperty(wrapped, BATCH, { value: maxSize });
  if (heartbeat !== undefined) Object.defineProperty(wrapped, HEARTBEAT, { value: heartbeat });
  return wrapped as Task<Body, Result>;
}

/** options.batch checked: the most jobs per call (Infinity: no limit), or undefined for a task of one job per call. */
function batchMaxSize(batch: unknown): number | undefined {
  if (batch === undefined || batch === false) return undefined;
  if (batch === true) return Infinity;
  if (typeof batch !== 'object' || batch === null || Array.isArray(batch)) {
    throw new ValidationError('options.batch', 'must be true, false or { maxSize }');
  }
  const unknown = Object.keys(batch).filter((k) => k !== 'maxSize');
  if (unknown.length > 0) throw new ValidationError('options.batch', `unknown option ${unknown.map((k) => JSON.stringify(k)).join(', ')}`);
  const { maxSize } = batch as { maxSize?: unknown };
  if (maxSize === undefined) return Infinity;
  if (typeof maxSize !== 'number' || !Number.isInteger(maxSize) || maxSize < 1 || maxSize > MAX_BATCH_SIZE) {
    throw new ValidationError('options.batch.maxSize', `must be an integer from 1 to ${MAX_BATCH_SIZE} (jobs per call)`);
  }
  return maxSize;
}

/** options.heartbeatSeconds checked: its seconds, or undefined for none. */
function heartbeatSeconds(seconds: unknown): number | undefined {
  if (seconds === undefined) return undefined;
  if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < MIN_HEARTBEAT || seconds > MAX_HEARTBEAT) {
    const got = typeof seconds === 'number' ? String(seconds) : typeof seconds;
    throw new ValidationError('options.heartbeatSeconds', `must be a number of seconds from ${MIN_HEARTBEAT} to ${MAX_HEARTBEAT}, got ${got}`);
  }
  return seconds;
}

/** The heartbeatSeconds a handler was defined with, if any (a job of it gets a heartbeat). */
export function heartbeatOf(handler: Handler): number | undefined {
  return (handler as unknown as Record<symbol, number | undefined>)[HEARTBEAT];
}

/** Whether a handler was defined with { transactional: true }. */
export function isTransactional(handler: Handler): boolean {
  return (handler as unknown as Record<symbol, unknown>)[TRANSACTIONAL] === true;
}

/** A batch task as a drain runs it: its defineTask result, called with (jobs, ctx). */
export interface BatchSpec {
  call: BatchHandler;
  maxSize: number;
}

/**
 * Whether a tasks module serves a transactional task: each one holds a pooled
 * connection while it runs, so a drain runs fewer at once than its pool holds.
 * Read from every handler a lookup can reach (tasks.ts reachableHandlers),
 * not from the names taskNames lists: those leave out tasks a class instance
 * holds, which runHandler still resolves and runs in a transaction.
 */
export const hasTransactionalTask = (tasks: TaskMap): boolean => servesTask(tasks, true);

/**
 * Whether a tasks module serves a task that is not transactional (plain, batch): its jobs need no connection of the
 * pool to start. Asked by a drain as it releases a job unstarted (slot-wait.ts starve), never per claim.
 */
export const hasPlainTask = (tasks: TaskMap): boolean => servesTask(tasks, false);

/** Whether a reachable handler is (or is not) transactional; one that throws when read is not (its jobs fail when they run). */
function servesTask(tasks: TaskMap, transactional: boolean): boolean {
  for (const fn of reachableHandlers(tasks)) {
    let is = false;
    try {
      is = isTransactional(fn);
    } catch {
      // a Proxy that throws when read: its jobs fail when they run, with no connection, not every drain now
    }
    if (is === transactional) return true;
  }
  return false;
}

/** What a task name's lookup threw (an export that is a getter): runHandler fails the job with it. */
export class LookupThrew {
  constructor(readonly error: unknown) {}
}

/** A job's task as a drain finds it, once per job (handlerOf): its handler, none, or what the lookup threw. */
export type Found = Handler | undefined | LookupThrew;

/**
 * The handler a task name resolves to now, through the drain's lookup (a
 * task an instance holds too, one defined or replaced while a drain runs);
 * a throw comes back as a LookupThrew, for runHandler to fail the job alone.
 * Looked up each time (10-100 ns by its path; a defined name through the
 * drain's TaskLookup, walked once): a cache by name went stale.
 */
export function handlerOf(lookup: TaskLookup, task: string): Found {
  try {
    return lookup.resolve(task);
  } catch (error) {
    return new LookupThrew(error);
  }
}

/**
 * The batch spec of a found handler (handlerOf); undefined for a plain task,
 * none found, or a handler that throws when read (a Proxy: runHandler meets
 * it again and fails its jobs alone, with that error).
 */
export function batchSpecs(): (found: Found) => BatchSpec | undefined {
  const specs = new WeakMap<Handler, BatchSpec>(); // one per handler: a claim's jobs of it make one group
  return (found) => {
    if (typeof found !== 'function') return undefined;
    let maxSize: unknown;
    try {
      maxSize = (found as unknown as Record<symbol, unknown>)[BATCH];
    } catch {
      return undefined;
    }
    if (typeof maxSize !== 'number') return undefined;
    let spec = specs.get(found);
    if (!spec) specs.set(found, spec = { call: found as unknown as BatchHandler, maxSize });
    return spec;
  };
}
