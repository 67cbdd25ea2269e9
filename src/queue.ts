import type { Driver, Queryable } from './db/driver.js';
import { pgDriver } from './db/pg.js';
import { drain } from './drain.js';
import { ValidationError } from './errors.js';
import { migrate } from './migrate.js';
import type { DrainOptions } from './options.js';
import { publish, publishBulk } from './publish.js';
import type { BulkJob, DrainReport, PublishOptions, TaskMap } from './types.js';

export interface QueueOptions {
  /** A PostgreSQL URL; the queue opens a pg pool and closes it on close(). */
  connectionString?: string;
  /** Or a driver you built (pg, PGlite, Neon); close() closes it too. */
  driver?: Driver;
  /** Handlers by task name (a tasks module's exports). */
  tasks?: TaskMap;
  /** Defaults for every drain() of this queue (topic, concurrency, graceMs, …). */
  drain?: DrainOptions;
}

export interface Queue {
  /** The driver this queue runs on. */
  readonly driver: Driver;
  /** Applies pending migrations; returns the versions applied. */
  migrate(): Promise<number[]>;
  /** Publishes one job; returns its id. */
  publish(task: string, body?: unknown, options?: PublishOptions): Promise<string>;
  /** Publishes many jobs in one statement; returns their ids in order. */
  publishBulk(jobs: readonly BulkJob[]): Promise<string[]>;
  /**
   * Publishing bound to your own client or transaction: the job exists only
   * if your transaction commits. `queue.using(client).publish(...)`.
   */
  using(db: Queryable): Pick<Queue, 'publish' | 'publishBulk'>;
  /** Claims, runs and settles jobs until empty, near `deadline`, or stopped. */
  drain(batchSize: number, deadline: Date | number, options?: DrainOptions): Promise<DrainReport>;
  /** Closes the driver. */
  close(): Promise<void>;
}

/** Builds a queue on a driver (or a connection string) with a task registry. */
export function createQueue(options: QueueOptions): Queue {
  if (typeof options !== 'object' || options === null) throw new ValidationError('options', 'must be an object');
  const { connectionString, tasks = {}, drain: defaults } = options;
  if (options.driver && connectionString) {
    throw new ValidationError('connectionString', 'give connectionString or driver, not both');
  }
  if (!options.driver && (typeof connectionString !== 'string' || connectionString === '')) {
    throw new ValidationError('connectionString', 'must be a PostgreSQL URL when no driver is given');
  }
  if (typeof tasks !== 'object' || tasks === null) throw new ValidationError('tasks', 'must be an object of handlers');
  const driver = options.driver ?? pgDriver(connectionString!);

  const using = (db: Queryable) => ({
    publish: (task: string, body?: unknown, opts?: PublishOptions) => publish(db, task, body, opts),
    publishBulk: (jobs: readonly BulkJob[]) => publishBulk(db, jobs),
  });
  const own = using(driver);
  return {
    driver,
    migrate: () => migrate(driver),
    ...own,
    using,
    drain: (batchSize, deadline, drainOptions) =>
      drain({ db: driver, tasks, publish: own.publish, defaults }, batchSize, deadline, drainOptions),
    close: () => driver.close(),
  };
}
