import { cancelJob, cancelJobs, createNamedQueue, deleteQueue, failJobs, getJob, listNamedQueues, listSubscriptions, publishEvent,
  purgeQueue, redrive, rescheduleJobs, setQueuePaused, subscribe, unsubscribe } from './admin.js';
import { cancelJobByKey, completeJobs, deleteEndedJobs, deleteJobs } from './admin-ends.js';
import type { Driver, Queryable } from './db/driver.js';
import { pgDriver } from './db/pg.js';
import { PgJobEvents, type QueueEvent } from './db/pg-events.js';
import { defineTask, type BatchOptions, type BatchTask, type NotBatch, type Task, type TaskOptions } from './define-task.js';
import { drain } from './drain.js';
import { PgDrainError, ValidationError } from './errors.js';
import type { DrainOptions } from './drain-options.js';
import { checkDriver, checkQueryable } from './driver-check.js';
import type { JsonBody, JsonResult } from './json-body.js';
import { listJobs } from './list-jobs.js';
import { publish, publishBulk } from './publish.js';
import { refuseUnknownOptions } from './peer-options.js';
import { queueSize } from './queue-size.js';
import type { SignalOption } from './send.js';
import type { BatchHandler, BulkJob, DeletedJobs, DeleteEndedOptions, DrainReport, Handler, JobInfo, JobOutcome, ListJobsFilter, NamedQueueInfo, NamedQueueOptions, PublishEventOptions,
  PublishOptions, PurgeQueueOptions, QueueSizeOptions, RedriveFilter, RedriveResult, RescheduleOptions, Subscription, TaskMap, TransactionalHandler } from './types.js';

export interface QueueOptions {
  /** A PostgreSQL URL; the queue opens a pg pool and closes it on close(). */
  connectionString?: string | undefined;
  /** Or a driver you built (pg, PGlite, Neon); close() closes it too. */
  driver?: Driver | undefined;
  /** Handlers by task name (a tasks module's exports). */
  tasks?: TaskMap | undefined;
  /** Defaults for every drain() of this queue (topic, concurrency, graceMs, …). */
  drain?: DrainOptions | undefined;
}

export interface Queue {
  /** The driver this queue runs on. */
  readonly driver: Driver;
  /** Applies pending migrations; returns the versions applied. */
  migrate(): Promise<number[]>;
  /**
   * Publishes one job; returns its id. options.signal bounds the call: when
   * it fires, the call rejects with its reason and the statement's
   * connection is ended, so a statement the server has not received yet
   * never runs later (one it already ran may have published the job: a
   * dedupeKey makes publishing again safe).
   */
  publish(task: string, body?: unknown, options?: PublishOptions & SignalOption): Promise<string>;
  /**
   * Publishes many jobs in one statement to one named queue (default
   * 'default'); returns their ids in order. options.signal as publish's.
   */
  publishBulk(jobs: readonly BulkJob[], queue?: string, options?: SignalOption): Promise<string[]>;
  /**
   * Fan-out: publishes an event, one job into each queue subscribed to it
   * (queues.subscribe), in one statement, all or nothing; returns their ids
   * in queue-name order (none when no queue subscribes).
   */
  publishEvent(event: string, body?: unknown, options?: PublishEventOptions & SignalOption): Promise<string[]>;
  /**
   * Publishing bound to your own client or transaction: the job exists only
   * if your transaction commits. `queue.using(client).publish(...)`.
   */
  using(db: Queryable): Pick<Queue, 'publish' | 'publishBulk' | 'publishEvent'>;
  /**
   * Defines a typed task, registers its handler with this queue's drains and
   * binds its .publish to this queue. `{ transactional: true }`: see TaskOptions.
   * Body and Result must be their own JSON form (JsonBody, JsonResult), as for defineTask.
   */
  defineTask<Body = unknown, Result = unknown>(name: string,
                                               handler: JsonBody<Body> & JsonResult<Exclude<Result, Error>, 'item'> & BatchHandler<Body, Result>,
                                               options: TaskOptions & { batch: true | BatchOptions; transactional?: false | undefined }): BatchTask<Body, Result>;
  defineTask<Body = unknown, Result = unknown>(name: string,
                                               handler: JsonBody<Body> & JsonResult<Result> & TransactionalHandler<Body, Result>,
                                               options: NotBatch & { transactional: true }): Task<Body, Result>;
  defineTask<Body = unknown, Result = unknown>(name: string, handler: JsonBody<Body> & JsonResult<Result> & Handler<Body, Result>,
                                               options?: NotBatch): Task<Body, Result>;
  // The reads take options.signal too, given up as the calls below are.
  /** A job as it is now, by id (queued, running or ended); null when there is none. */
  getJob(jobId: string, options?: SignalOption): Promise<JobInfo | null>;
  /**
   * Jobs matching every filter given (queue, task, state, body containment, ids), newest first,
   * as getJob answers each; page with filter.before. A body search reads the whole history: an admin's call.
   */
  listJobs(filter?: ListJobsFilter, options?: SignalOption): Promise<JobInfo[]>;
  /**
   * How many jobs of queue name (default 'default') are in options.state: pending (default: due now,
   * free to claim), scheduled (a later run time), running (leased) or expired (lease run out, not yet
   * taken back). pg-boss's getQueueSize. One statement over jobs.job_queue's indexes; an unknown queue is refused.
   */
  queueSize(name?: string, options?: QueueSizeOptions & SignalOption): Promise<number>;
  // The calls that change jobs and queues take options.signal as publish does: when it fires the
  // call rejects with its reason and its connection is ended (a statement it had sent may have run).
  /** Cancels a job: 'cancelled' (never ran), 'cancelling' (running: aborted best effort), null (not active). */
  cancel(jobId: string, reason?: string, options?: SignalOption): Promise<'cancelled' | 'cancelling' | null>;
  /** Cancels many jobs in one statement, each as above. Returns how many were cancelled or asked to stop. */
  cancel(jobIds: readonly string[], reason?: string, options?: SignalOption): Promise<number>;
  /** Moves jobs not yet running to runAt (or delaySeconds from now) and/or priority. Returns how many changed. */
  reschedule(jobIds: readonly string[], options: RescheduleOptions & SignalOption): Promise<number>;
  /** Ends jobs not yet running as failures (dead letters) with reason; running ones are left alone. Returns how many. */
  fail(jobIds: readonly string[], reason?: string, options?: SignalOption): Promise<number>;
  /**
   * Ends jobs not yet running as successes with result, as an ack does (their dependants
   * may run, their serial key moves on); running ones are left alone. Returns how many.
   */
  complete(jobIds: readonly string[], result?: unknown, options?: SignalOption): Promise<number>;
  /**
   * Cancels the active job holding a dedupe key, as cancel(id) does; null when none holds it.
   * Its own method, not a cancel overload: a key is another look-up, not another count.
   */
  cancelByKey(dedupeKey: string, reason?: string, options?: SignalOption): Promise<'cancelled' | 'cancelling' | null>;
  /**
   * Deletes jobs outright: a waiting one leaves no history (its dependants end as cancelled,
   * its serial key moves on, its dedupe key is free); an ended one's history is deleted.
   * Running ones are left alone, answered in `running`: cancel them, and delete them once ended.
   */
  deleteJobs(jobIds: readonly string[], options?: SignalOption): Promise<DeletedJobs>;
  /**
   * Runs dead letters (failed jobs) again: all, or those matching the filter;
   * with includeCancelled, cancelled jobs among filter.ids too. Returns how many
   * went back, and how many it left because their dedupe key is held or for the next call.
   */
  redrive(filter?: RedriveFilter, options?: SignalOption): Promise<RedriveResult>;
  /**
   * Named queues: create (or change the options given of an existing one;
   * null clears one), list, pause, resume, purge, delete and deleteEnded (ended jobs).
   */
  readonly queues: {
    create(name: string, options?: NamedQueueOptions & SignalOption): Promise<void>;
    list(options?: SignalOption): Promise<NamedQueueInfo[]>;
    pause(name: string, options?: SignalOption): Promise<boolean>;
    resume(name: string, options?: SignalOption): Promise<boolean>;
    /** Ends every waiting job of the queue as cancelled (running ones finish); returns how many. */
    purge(name: string, options?: PurgeQueueOptions & SignalOption): Promise<number>;
    /**
     * Deletes the queue and its subscriptions; false when there is none. Refused for
     * 'default', a dead-letter target, and a queue with waiting or running jobs.
     */
    delete(name: string, options?: SignalOption): Promise<boolean>;
    /**
     * Deletes the queue's ended jobs (history and archive), oldest first: those that ended before
     * options.endedBefore, or all; at most options.maxRows (100000). Returns how many.
     */
    deleteEnded(name: string, options?: DeleteEndedOptions & SignalOption): Promise<number>;
    /** Fan-out: publishEvent(event) then writes a job of options.task (default: the event) into queue. True when new. */
    subscribe(event: string, queue: string, options?: { task?: string | undefined } & SignalOption): Promise<boolean>;
    /** Ends a queue's subscription to an event; true when there was one. */
    unsubscribe(event: string, queue: string, options?: SignalOption): Promise<boolean>;
    /** Every subscription (of one event, when given). */
    subscriptions(event?: string, options?: SignalOption): Promise<Subscription[]>;
  };
  /**
   * Resolves with a job's outcome once it ended, woken by NOTIFY rather than
   * polling. Needs a LISTEN session: only for queues built from a
   * connectionString (node-postgres).
   */
  waitFor(jobId: string, options?: { signal?: AbortSignal | undefined; timeoutMs?: number | undefined }): Promise<JobOutcome>;
  /** Calls listener on every queued / picked / completed event (connectionString queues only). */
  subscribe(listener: (e: QueueEvent) => void): Promise<() => void>;
  /** Claims, runs and settles jobs until empty, near `deadline`, or stopped. */
  drain(batchSize: number, deadline: Date | number, options?: DrainOptions): Promise<DrainReport>;
  /** Closes the driver. */
  close(): Promise<void>;
}

/** Builds a queue on a driver (or a connection string) with a task registry. */
const QUEUE_OPTIONS = new Set(['connectionString', 'driver', 'tasks', 'drain']);

export function createQueue(options: QueueOptions): Queue {
  // A misspelt "tasks" would leave the queue with no handlers: every job it drains would fail.
  refuseUnknownOptions(options, QUEUE_OPTIONS, 'create');
  const { connectionString, tasks = {}, drain: defaults } = options;
  if (options.driver && connectionString) {
    throw new ValidationError('connectionString', 'give connectionString or driver, not both');
  }
  if (!options.driver && (typeof connectionString !== 'string' || connectionString === '')) {
    throw new ValidationError('connectionString', 'must be a PostgreSQL URL when no driver is given');
  }
  if (typeof tasks !== 'object' || tasks === null) throw new ValidationError('tasks', 'must be an object of handlers');
  if (options.driver !== undefined) checkDriver(options.driver);
  const driver = options.driver ?? pgDriver(connectionString!);
  // Defined tasks join a copy, so the caller's object is never written to.
  const registry: TaskMap = { ...tasks };
  let events: PgJobEvents | undefined;
  const listen = () => {
    if (!connectionString) {
      throw new PgDrainError('invalid_argument', 'waitFor and subscribe need a LISTEN session: build the queue with a connectionString',
                             { field: 'connectionString' });
    }
    return (events ??= new PgJobEvents(connectionString));
  };

  const using = (db: Queryable) => {
    checkQueryable(db, 'db');
    return {
      publish: (task: string, body?: unknown, opts?: PublishOptions & SignalOption) => publish(db, task, body, opts),
      publishBulk: (jobs: readonly BulkJob[], queue?: string, opts?: SignalOption) => publishBulk(db, jobs, queue, opts),
      publishEvent: (event: string, body?: unknown, opts?: PublishEventOptions & SignalOption) => publishEvent(db, event, body, opts),
    };
  };
  const own = using(driver);
  return {
    driver,
    // Loaded on first use: every migration's SQL (~100 KB) is parsed only by
    // the process that migrates, not by every drain's cold start.
    migrate: async () => (await import('./migrate.js')).migrate(driver),
    ...own,
    using,
    defineTask<Body, Result>(name: string, handler: Handler<Body, Result> | TransactionalHandler<Body, Result> | BatchHandler<Body, Result>,
                             taskOptions?: TaskOptions): Task<Body, Result> & BatchTask<Body, Result> {
      // Any options: the overloads above typed them, defineTask checks them.
      // Its Body was checked by the overloads above (JsonBody); a generic Body here cannot be: any body.
      const task = defineTask(name, handler as Handler, { ...taskOptions, db: driver } as NotBatch);
      registry[name] = task;
      return task as Task<Body, Result> & BatchTask<Body, Result>; // which one: the overloads above
    },
    getJob: (jobId, o) => getJob(driver, jobId, o),
    listJobs: (filter, o) => listJobs(driver, filter, o),
    queueSize: (name, o) => queueSize(driver, name, o),
    cancel: ((jobIds: string | readonly string[], reason?: string, o?: SignalOption) => (Array.isArray(jobIds)
      ? cancelJobs(driver, jobIds, reason, o) : cancelJob(driver, jobIds as string, reason, o))) as Queue['cancel'],
    reschedule: (jobIds, o) => rescheduleJobs(driver, jobIds, o),
    fail: (jobIds, reason, o) => failJobs(driver, jobIds, reason, o),
    complete: (jobIds, result, o) => completeJobs(driver, jobIds, result, o),
    cancelByKey: (dedupeKey, reason, o) => cancelJobByKey(driver, dedupeKey, reason, o),
    deleteJobs: (jobIds, o) => deleteJobs(driver, jobIds, o),
    redrive: (filter, o) => redrive(driver, filter, o),
    queues: {
      create: (name, o) => createNamedQueue(driver, name, o),
      list: (o) => listNamedQueues(driver, o),
      pause: (name, o) => setQueuePaused(driver, name, true, o),
      resume: (name, o) => setQueuePaused(driver, name, false, o),
      purge: (name, o) => purgeQueue(driver, name, o),
      delete: (name, o) => deleteQueue(driver, name, o),
      deleteEnded: (name, o) => deleteEndedJobs(driver, name, o),
      subscribe: (event, queue, o) => subscribe(driver, event, queue, o),
      unsubscribe: (event, queue, o) => unsubscribe(driver, event, queue, o),
      subscriptions: (event, o) => listSubscriptions(driver, event, o),
    },
    waitFor: async (jobId, o) => listen().waitFor(jobId, o),
    subscribe: async (listener) => listen().subscribe(listener),
    drain: (batchSize, deadline, drainOptions) =>
      drain({ db: driver, tasks: registry, publish: own.publish, defaults }, batchSize, deadline, drainOptions),
    close: async () => {
      await events?.close();
      await driver.close();
    },
  };
}
