// What waitFor reads of a job: its outcome once it ended, or whether it is still active.
import type { JobOutcome } from '../types.js';

/** The job $1's row once it ended (null: not ended) and whether it is still active. */
export const JOB_STATE_SQL =
  // jobs.job_archive too: maintain(archive) may have moved it there already.
  `select coalesce((select to_jsonb(j) from jobs.job j where j.job_id = $1),
                   (select to_jsonb(a) from jobs.job_archive a where a.job_id = $1)) as ended,
          exists (select 1 from jobs.job_queue q where q.job_id = $1) as active`;

/** A row of JOB_STATE_SQL. */
export interface JobState {
  ended: Record<string, unknown> | null;
  active: boolean;
}

/** An ended job's row (jobs.job or jobs.job_archive, as jsonb) as waitFor answers it. */
export function toOutcome(j: Record<string, unknown>): JobOutcome {
  return {
    id: String(j.job_id), task: String(j.task), status: j.status as JobOutcome['status'],
    result: j.result ?? null, error: (j.error as string | null) ?? null, attempts: Number(j.attempts),
    durationMs: j.duration_ms === null ? null : Number(j.duration_ms), workerId: (j.worker_id as string | null) ?? null,
    queue: String(j.queue), endedAt: new Date(String(j.ended_at)),
  };
}
