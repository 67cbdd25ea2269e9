export { createQueue, type Queue, type QueueOptions } from './queue.js';
export { drain, DEFAULT_SETTLE_MARGIN_MS, type DrainDeps } from './drain.js';
export { publish, publishBulk } from './publish.js';
export { cancelJob, cancelJobs, rescheduleJobs, failJobs, getJob, redrive, createNamedQueue, setQueuePaused, purgeQueue, deleteQueue,
  subscribe, unsubscribe, listSubscriptions, publishEvent } from './admin.js';
export { completeJobs, cancelJobByKey, deleteJobs, deleteEndedJobs } from './admin-ends.js';
export { listJobs } from './list-jobs.js';
export { queueSize } from './queue-size.js';
export { defineTask, type BatchOptions, type BatchTask, type Task, type TaskOptions } from './define-task.js';
export { PgJobEvents, type QueueEvent } from './db/pg-events.js';
export { migrate, migrationSql, latestVersion } from './migrate.js';
export { checkCron, checkTz, isRrule, nextTicks } from './cron-checks.js';
export { schedule, unschedule, listSchedules, type ScheduleSpec, type ScheduleInfo, type ScheduleRunner,
  type ScheduleOverlap, type ScheduleDedupeMode } from './schedules.js';
export { maintain, type MaintainReport } from './maintain.js';
export { resolveHandler, taskNames } from './tasks.js';
export { PgDrainError, ValidationError, translateError, type ErrorCode, type UnrecordedOutcomes } from './errors.js';
export { FailJob, RetryJob, SnoozeJob, type RetryWhen } from './job-errors.js';
export { takeToken, type RateLimitOptions } from './rate-limit.js';
export { pgDriver, type PgPool } from './db/pg.js';
export type { Driver, Queryable, PoolCounts, QueryOptions, QueryResult, QueuedListener } from './db/driver.js';
export type { DrainOptions } from './drain-options.js';
export type * from './types.js';
