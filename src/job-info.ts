import type { JobInfo, JobProgress } from './types.js';

// A job as getJob and listJobs answer it (JobInfo): the columns they read
// from jobs.all, and the row as a JobInfo.

/**
 * jobs.all's columns a JobInfo is made of (getJob reads jobs.job_archive's
 * too, which has no progress, unstarted nor snoozed).
 */
export const JOB_COLUMNS = `job_id::text as id, task, state, body, result, error, attempts, max_retries, priority, queue,
  attributes, worker_id, scheduled_at, created_at, started_at, ended_at, progress, expires_at,
  retry_delay::float8 as retry_delay, retry_backoff, retry_delay_max::float8 as retry_delay_max, dead_letter, group_id, group_tier, unstarted,
  snoozed`;

/** A row of JOB_COLUMNS as a JobInfo. */
export function jobInfoOf(r: Record<string, unknown>): JobInfo {
  const date = (v: unknown) => (v === null ? null : new Date(v as string | Date));
  return {
    id: r.id as string, task: r.task as string, state: r.state as JobInfo['state'], body: r.body, result: r.result,
    error: r.error as string | null, attempts: Number(r.attempts), maxRetries: Number(r.max_retries),
    priority: Number(r.priority), queue: r.queue as string, attributes: r.attributes as JobInfo['attributes'],
    workerId: r.worker_id as string | null, runAt: date(r.scheduled_at)!, createdAt: date(r.created_at)!,
    startedAt: date(r.started_at), endedAt: date(r.ended_at), progress: progressOf(r.progress), expiresAt: date(r.expires_at),
    retryDelaySeconds: r.retry_delay as number | null, retryBackoff: r.retry_backoff as boolean | null,
    retryDelayMaxSeconds: r.retry_delay_max as number | null, deadLetter: r.dead_letter as string | null,
    group: r.group_id === null ? null : { id: r.group_id as string, tier: r.group_tier as string | null },
    unstarted: r.unstarted === null ? null : Number(r.unstarted), snoozed: r.snoozed === null ? null : Number(r.snoozed),
  };
}

/** jobs.job_queue.progress ({attempt, value, at}: sql/0031) as JobInfo's. */
function progressOf(stored: unknown): JobProgress | null {
  if (stored === null || typeof stored !== 'object') return null;
  const p = stored as { attempt: number; value: unknown; at: string };
  return { value: p.value, attempt: Number(p.attempt), at: new Date(p.at) };
}
