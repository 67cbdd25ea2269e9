import * as z from 'zod/mini';
import type { Queryable } from './db/driver.js';
import { translateError } from './errors.js';
import { JOB_COLUMNS, jobInfoOf } from './job-info.js';
import { jsonParam } from './json-text.js';
import { integerCheck, jobIdSchema, parse, queueNameSchema, taskSchema } from './options.js';
import { send, signalOnly, type SignalOption } from './send.js';
import type { JobInfo, ListJobsFilter } from './types.js';

// Finding jobs: listJobs, one statement over jobs.all.

/** JobInfo's states: those of a job still queued, then those of one that ended (jobs.all). */
export const QUEUED_STATES = ['pending', 'scheduled', 'blocked', 'running', 'expired'] as const;
export const JOB_STATES = [...QUEUED_STATES, 'success', 'failure', 'cancelled'] as const;
export const MAX_LIST_LIMIT = 1000;

export const listJobsFilterSchema = z.strictObject({
  queue: z.optional(queueNameSchema),
  task: z.optional(taskSchema),
  state: z.optional(z.enum(JOB_STATES, `must be one of ${JOB_STATES.join(', ')}`)),
  body: z.optional(z.unknown()), // checked as JSON by jsonParam
  ids: z.optional(z.array(jobIdSchema, 'must be an array of job ids')
    .check(z.maxLength(MAX_LIST_LIMIT, `must list at most ${MAX_LIST_LIMIT} jobs`))),
  before: z.optional(jobIdSchema),
  limit: z.optional(z.number(`must be an integer from 1 to ${MAX_LIST_LIMIT}`).check(integerCheck,
    z.minimum(1, `must be an integer from 1 to ${MAX_LIST_LIMIT}`),
    z.maximum(MAX_LIST_LIMIT, `must be an integer from 1 to ${MAX_LIST_LIMIT}`))),
}, { error: 'must be an object' });

// A filter left out (null) matches every row: with its value known when the
// statement is planned, the planner drops it. The state condition also says
// which table can hold the state (ended_at is null for a queued job, so a
// constant in jobs.all's queued branch), so a queued state does not read
// jobs.job, nor an ended one jobs.job_queue.
const LIST_SQL = `select j.* from (
    select ${JOB_COLUMNS} from jobs.all
    where ($1::text is null or queue = $1) and ($2::text is null or task = $2)
      and ($3::text is null or state = $3
           and (ended_at is null) = ($3 in (${QUEUED_STATES.map((s) => `'${s}'`).join(', ')})))
      and ($4::jsonb is null or body @> $4) and ($5::bigint[] is null or job_id = any($5))
      and ($6::bigint is null or job_id < $6)
    order by job_id desc limit $7) j
  order by j.id::bigint desc`;

/** listJobs()'s checks, with no database: the filter and its body's JSON, or its ValidationError (the CLI's, before connecting). */
export function checkListJobs(filter: ListJobsFilter = {}) {
  const f = parse(listJobsFilterSchema, filter, 'filter', 'list');
  return { f, body: f.body === undefined ? null : jsonParam(f.body, 'filter.body') };
}

/**
 * Jobs matching every filter given, newest (greatest id) first, at most
 * filter.limit (default 100): queued ones (pending, scheduled, blocked,
 * running, expired) and ended ones in jobs.job, each as getJob answers it;
 * archived jobs (jobs.maintain's archive) are not listed. Page with
 * `before`: the last id of a page gives the next.
 *
 * Cost: queue, task, state and before narrow a walk of each table's primary
 * key from the newest job back, stopping at limit matches; ids are looked
 * up by key. A body search reads every row of the tables it searches: a
 * sequential scan of jobs.job (the history) unless a queued state keeps it
 * to jobs.job_queue. Fine for an admin's call with a limit; not a query to
 * run per request. jobs.job has no index on body, queue or task on purpose:
 * every drained job would pay for it. options.signal gives the call up as
 * the admin calls' does (send.ts): a long body search too.
 */
export async function listJobs(db: Queryable, filter: ListJobsFilter = {}, options?: SignalOption): Promise<JobInfo[]> {
  const { f, body } = checkListJobs(filter);
  const signal = signalOnly(options);
  try {
    const { rows } = await send<Record<string, unknown>>(db, LIST_SQL, [f.queue ?? null, f.task ?? null, f.state ?? null, body,
      f.ids ?? null, f.before ?? null, f.limit ?? 100], signal);
    return rows.map(jobInfoOf);
  } catch (error) {
    throw translateError(error);
  }
}
