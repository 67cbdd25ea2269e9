import { cancelJob, redrive, REDRIVE_JSON, redriveParams, setQueuePaused } from '../admin.js';
import type { Queryable } from '../db/driver.js';
import { ValidationError } from '../errors.js';
import { jobIdSchema, parse, queueNameSchema } from '../options.js';
import { callValue } from '../send.js';
import type { RedriveResult } from '../types.js';
import { HttpError } from './errors.js';

// What each of the dashboard's forms does: one call of the admin function
// the CLI and the TypeScript API use (admin.ts), one round trip, given up
// when the app's bound (signal) fires and sent again after a deadlock as
// theirs are (send.ts). The form's fields are checked here, named as the
// form sends them; the answer is the note the page shows after the redirect.
//
// A queue's redrive puts back at most redriveRows (limits.dashboardRedriveRows)
// per click, within the app's 10 s bound over any number of failures, and
// counts the queue's failures in the same statement, as they were before it,
// so the note says how many are left, and why when pressing again would
// not put them back (jobs.redrive_counts says how many it left, and why).

/** The forms: each one's fields besides csrf and back. */
export const DASHBOARD_ACTIONS = {
  cancel: ['job'],
  redrive: ['job', 'queue'],
  pause: ['queue'],
  resume: ['queue'],
} as const satisfies Record<string, readonly string[]>;
export type DashboardAction = keyof typeof DASHBOARD_ACTIONS;

/** The fields a form token covers: those the page fills in, not the job id one types into cancel's (any job). */
const TOKEN_FIELDS: Record<DashboardAction, readonly string[]> = { cancel: [], redrive: ['job', 'queue'], pause: ['queue'], resume: ['queue'] };

/**
 * What a form token is bound to: the form's action and the values it gives
 * the fields the token covers (valuesOf: each field's values, none when
 * absent), so a token taken from one form does nothing another form does:
 * pause queue a's resumes nothing and pauses no other queue, redrive job 5's
 * redrives neither job 6 nor a whole queue. Not the Basic user name: any name
 * logs in with the token, so it tells no one apart.
 */
export function formBinding(action: DashboardAction, valuesOf: (field: string) => string[]): string {
  return JSON.stringify([action, ...TOKEN_FIELDS[action].map(valuesOf)]);
}

/** The reason a cancel from the dashboard records (the job's error: "cancelled: from the dashboard"). */
export const DASHBOARD_CANCEL_REASON = 'from the dashboard';

/** A form's fields, each given at most once, none the form does not have: csrf and back, and the action's. */
export function formFields(action: DashboardAction, params: URLSearchParams): Map<string, string> {
  const allowed: readonly string[] = ['csrf', 'back', ...DASHBOARD_ACTIONS[action]];
  const fields = new Map<string, string>();
  for (const [name, value] of params) {
    if (!allowed.includes(name)) {
      throw new ValidationError(name, `unknown field (the ${action} form sends ${allowed.join(', ')})`);
    }
    if (fields.has(name)) throw new ValidationError(name, 'must be given once');
    fields.set(name, value);
  }
  return fields;
}

/** The page to go back to: the queue the form's page showed, or '' (every queue). */
export function backOf(fields: Map<string, string>): string {
  const back = fields.get('back') ?? '';
  return back === '' ? '' : parse(queueNameSchema, back, 'back');
}

function required(fields: Map<string, string>, name: string, what: string): string {
  const value = fields.get(name);
  if (value === undefined || value === '') throw new ValidationError(name, `missing: give ${what}`);
  return value;
}

function notFound(field: string, message: string): HttpError {
  return new HttpError(404, 'not_found', `${field}: ${message}`, field);
}

/** Runs the form's action on db, given up when signal fires; returns the note that says what it did. */
export async function runAction(db: Queryable, action: DashboardAction, fields: Map<string, string>,
                                redriveRows: number, signal: AbortSignal): Promise<string> {
  switch (action) {
    case 'cancel': {
      const id = parse(jobIdSchema, required(fields, 'job', 'the id of a waiting or running job'), 'job');
      const outcome = await cancelJob(db, id, DASHBOARD_CANCEL_REASON, { signal });
      if (outcome === null) throw notFound('job', `no waiting or running job ${id} (it has ended, or never existed): nothing to cancel`);
      return outcome === 'cancelled' ? `Job ${id} cancelled.`
        : `Job ${id} is running: asked to stop. It ends as cancelled unless it finishes first.`;
    }
    case 'redrive': {
      if (fields.has('job') === fields.has('queue')) {
        throw new ValidationError('job', 'give job (one failed job) or queue (all its failed jobs), not both or neither');
      }
      if (fields.has('job')) {
        const id = parse(jobIdSchema, required(fields, 'job', 'the id of a failed job'), 'job');
        const r = await redrive(db, { ids: [id] }, { signal });
        if (r.heldByKey > 0) {
          throw notFound('job', `job ${id} was not redriven: a waiting or running job holds its dedupe key (redriving it would make two); `
            + 'it can go back once that job has ended');
        }
        if (r.redriven === 0) {
          throw notFound('job', `job ${id} was not redriven: it is not a failed job (redriven already?), or its queue is gone`);
        }
        return `Job ${id} redriven: it runs again.`;
      }
      const queue = parse(queueNameSchema, required(fields, 'queue', 'a queue name'), 'queue');
      return redriveNote(queue, await redriveQueue(db, queue, redriveRows, signal), redriveRows);
    }
    case 'pause':
    case 'resume': {
      const queue = parse(queueNameSchema, required(fields, 'queue', 'a queue name'), 'queue');
      if (!(await setQueuePaused(db, queue, action === 'pause', { signal }))) throw notFound('queue', `no queue named ${JSON.stringify(queue)}`);
      return action === 'pause' ? `Queue ${queue} paused: drains claim none of its jobs until it is resumed.`
        : `Queue ${queue} resumed.`;
    }
  }
}

/** What a queue's redrive did (RedriveResult), and how many failures the queue had before it. */
interface QueueRedrive extends RedriveResult {
  failed: number;
}

/**
 * jobs.redrive_counts of a queue's failures, at most maxRows, and how many
 * it had: counted as it matches them, from the statement's snapshot, so
 * before it. A queue gone (deleted since the page showed it) is a 404, as
 * pause's: jobs.redrive_counts refuses a queue that does not exist (PD009).
 */
async function redriveQueue(db: Queryable, queue: string, maxRows: number, signal: AbortSignal): Promise<QueueRedrive> {
  return callValue<QueueRedrive>(db,
    `select ${REDRIVE_JSON} || jsonb_build_object('failed',
       (select count(*) from jobs.job j where j.queue = $3 and j.status = 'failure')) as r`,
    redriveParams({ queue, maxRows }), signal).catch((error: unknown) => {
    throw error instanceof ValidationError && error.field === 'queue' ? notFound('queue', `no queue named ${JSON.stringify(queue)}`) : error;
  });
}

const failedJobs = (n: number) => `${n} failed job${n === 1 ? '' : 's'}`;

/**
 * What a queue's redrive did, and what it left: more than a click takes
 * (press again), and those it passed over or left, and why (RedriveResult).
 */
function redriveNote(queue: string, { redriven, heldByKey, serialLater, failed }: QueueRedrive, maxRows: number): string {
  const left = Math.max(0, failed - redriven);
  if (redriven === 0 && left === 0) return `Queue ${queue}: no failed job to redrive.`;
  if (left === 0) return `Queue ${queue}: ${failedJobs(redriven)} redriven.`;
  const held = heldByKey === 0 ? '' : `${heldByKey} held back by their dedupe key (a waiting or running job, or one redriven now, holds it)`;
  if (redriven >= maxRows) {
    return `Queue ${queue}: ${failedJobs(redriven)} redriven, ${left} left: press again (one click redrives at most ${maxRows})`
      + `${held === '' ? '' : `; it passed over ${held}`}.`;
  }
  const other = left - heldByKey - serialLater;
  const why = [held,
    serialLater === 0 ? '' : `${serialLater} of serial keys past the 500 one call puts back: press again`,
    other <= 0 ? '' : `${other} not reached (another session is changing them, or more held ones than a click reads are before them)`]
    .filter((w) => w !== '');
  return `Queue ${queue}: ${redriven === 0 ? 'no failed job' : failedJobs(redriven)} redriven; ${left} left as they are: ${why.join('; ')}.`;
}
