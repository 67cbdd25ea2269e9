import type { Queryable } from '../db/driver.js';
import { PgDrainError, translateError } from '../errors.js';
import { type WithStoppedSchedules, withStoppedSchedules } from '../schedule-stopped.js';
import { send } from '../send.js';
import type { JobCountRow } from './metrics.js';

// The job counts GET /stats answers and GET /metrics renders: one statement for both.

/**
 * Jobs by task and state for /stats and /metrics: the queue's states, and of
 * the ended jobs only the failures (dead letters, through their partial
 * index). Counting every success and cancel (jobs.stats) reads the whole
 * history, seconds at millions of rows, on every scrape. With them, in the
 * same statement, the schedules a tick stopped (jobs.stopped_schedules).
 * Summed over named queues so each series appears once.
 */
export const COUNTS_SQL = withStoppedSchedules(`select queue, task, state, count(*)::float8 as jobs,
  extract(epoch from max(now() - scheduled_at) filter (where state = 'pending' and scheduled_at <= now()))::float8 as oldest_due_s
  from (select q.queue, q.task, q.scheduled_at, jobs.state_of(q.lease_until, q.scheduled_at, q.waiting_deps, q.serial_wait) as state
        from jobs.job_queue q
        union all
        select j.queue, j.task, j.scheduled_at, 'failure' from jobs.job j where j.status = 'failure') s
  group by queue, task, state`, 'r.queue, r.task, r.state');

/** The counts and the stopped schedules' names; a failure to reach the database is database_unavailable. */
export async function jobCounts(db: Queryable, signal: AbortSignal): Promise<WithStoppedSchedules<JobCountRow>> {
  try {
    // Given up by the route's signal, its connection ended: /metrics is scraped every few seconds,
    // and each scrape of a silent database would hold a slot.
    return (await send<WithStoppedSchedules<JobCountRow>>(db, COUNTS_SQL, [], signal)).rows[0]!;
  } catch (error) {
    const e = translateError(error);
    throw e instanceof PgDrainError ? e : new PgDrainError('database_unavailable', 'database unavailable', { cause: error });
  }
}

/** GET /stats' answer: the counts as numbers, and the schedules a tick stopped, by name (jobs.stopped_schedules). */
export function statsAnswer({ rows, stopped }: WithStoppedSchedules<JobCountRow>) {
  return {
    stats: rows.map((r) => ({ queue: r.queue, task: r.task, state: r.state, jobs: Number(r.jobs),
                              oldestDueSeconds: r.oldest_due_s === null ? null : Number(r.oldest_due_s) })),
    stoppedSchedules: stopped,
  };
}
