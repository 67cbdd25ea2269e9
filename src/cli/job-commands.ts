import { Command, InvalidArgumentError, Option } from 'commander';
import { getJob } from '../admin.js';
import { sliceUnits } from '../error-text.js';
import { ValidationError } from '../errors.js';
import { parseJson } from '../json-text.js';
import { checkListJobs, JOB_STATES, listJobs, MAX_LIST_LIMIT } from '../list-jobs.js';
import { isJobId, jobIdSchema, queueNameSchema, taskSchema } from '../options.js';
import type { JobInfo, ListJobsFilter } from '../types.js';
import { dsnOption, type WithConnection } from './features.js';
import { checkedBy, integer } from './flag-parsers.js';
import { formatTable } from './format.js';

// Finding jobs: `pgdrain jobs` lists them (listJobs), `pgdrain show <id>`
// prints one (getJob). main.ts registers them.

/** --body's JSON: any JSON value, a number past 2^53 refused rather than changed (parseJson). */
function jsonValue(value: string): unknown {
  if (value.trim() === '') throw new InvalidArgumentError('is empty: give JSON the body contains, or leave the flag out');
  try {
    return parseJson(value, '', { parserText: true });
  } catch (error) {
    if (error instanceof ValidationError) throw new InvalidArgumentError(error.rule);
    throw error;
  }
}

/** A time as the tables print it: ISO 8601 to the second. */
const at = (d: Date | null) => (d === null ? null : d.toISOString().replace(/\.\d{3}Z$/, 'Z'));
const firstLine = (text: string | null) => (text === null ? null : sliceUnits(text.split('\n')[0]!, 100));

/** One job as `name  value` lines (none for what it lacks); the error in full, its later lines indented. */
function formatJob(job: JobInfo): string {
  const json = (v: unknown) => (v === undefined || v === null ? null : JSON.stringify(v));
  const rows: [string, unknown][] = [
    ['id', job.id], ['task', job.task], ['queue', job.queue], ['state', job.state],
    ['attempts', `${job.attempts} of ${job.maxRetries + 1}`],
    ['unstarted', job.unstarted ? `${job.unstarted} in a row (released never started, no attempt spent; the 26th is a nack)` : null],
    ['snoozed', job.snoozed ? `${job.snoozed} in a row (SnoozeJob or a rate limit: run later, no attempt spent)` : null],
    ['priority', job.priority],
    ['created', at(job.createdAt)], ['run at', at(job.runAt)], ['expires', at(job.expiresAt)], ['started', at(job.startedAt)],
    ['ended', at(job.endedAt)],
    ['worker', job.workerId], ['retry delay', job.retryDelaySeconds],
    ['backoff', job.retryBackoff === null ? null : job.retryBackoff ? 'exponential' : 'fixed'],
    ['retry max', job.retryDelayMaxSeconds], ['dead letter', job.deadLetter],
    ['group', job.group && (job.group.tier === null ? job.group.id : `${job.group.id} (tier ${job.group.tier})`)], ['body', json(job.body)], ['attributes', json(job.attributes)],
    ['result', json(job.result)],
    ['progress', job.progress && `${json(job.progress.value)} (attempt ${job.progress.attempt}, ${at(job.progress.at)})`],
    ['error', job.error?.replaceAll('\n', `\n${' '.repeat(14)}`)],
  ];
  return rows.filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => `${k.padEnd(12)}  ${String(v)}`).join('\n');
}

export function jobCommands(withConnection: WithConnection): Command[] {
  const jobs = new Command('jobs')
    .description('list jobs matching every flag given, newest first (queued, running and ended). '
      + '--body reads the whole history: fine now and then, not in a loop')
    .option('--queue <name>', 'only this queue', checkedBy(queueNameSchema))
    .option('--task <task>', 'only this task (its name, exactly)', checkedBy(taskSchema))
    .addOption(new Option('--state <state>', 'only jobs in this state').choices(JOB_STATES))
    .option('--body <json>', 'only jobs whose body contains this JSON (jsonb @>: \'{"user":42}\')', jsonValue)
    .option('--before <id>', 'only jobs older than this id: the last id of the page before', checkedBy(jobIdSchema))
    .option('--limit <n>', `at most this many (1 to ${MAX_LIST_LIMIT})`, integer(1, MAX_LIST_LIMIT), 100)
    .option('--json', 'print the jobs as a JSON array, as queue.listJobs answers them')
    .addOption(dsnOption())
    .action(async (opts: { queue?: string; task?: string; state?: ListJobsFilter['state']; body?: ListJobsFilter['body'];
                           before?: string; limit: number; json?: boolean; dsn?: string }) => {
      const filter: ListJobsFilter = { queue: opts.queue, task: opts.task, state: opts.state, body: opts.body,
                                       before: opts.before, limit: opts.limit };
      checkListJobs(filter); // before connecting: a --body PostgreSQL cannot store is exit 2 with the server down too
      await withConnection(opts.dsn, async ({ driver }) => {
        const list = await listJobs(driver, filter);
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(list)}\n`);
          return;
        }
        const rows = list.map((job) => ({ id: job.id, queue: job.queue, task: job.task, state: job.state, attempts: job.attempts,
                                          created: at(job.createdAt), ended: at(job.endedAt), error: firstLine(job.error) }));
        process.stdout.write(`${rows.length ? formatTable(rows, ['id', 'queue', 'task', 'state', 'attempts', 'created', 'ended', 'error'])
          : 'no jobs'}\n`);
      });
    });

  const show = new Command('show')
    .description('print one job, queued, running or ended (archived included); exits 1 when there is none')
    .argument('<id>', 'job id')
    .option('--json', 'print it as JSON, as queue.getJob answers it')
    .addOption(dsnOption())
    .action(async (id: string, opts: { json?: boolean; dsn?: string }) => {
      if (!isJobId(id)) {
        throw new ValidationError('id', `must be a job id (a positive integer of at most 9223372036854775807), got ${JSON.stringify(id)}`);
      }
      await withConnection(opts.dsn, async ({ driver }) => {
        const job = await getJob(driver, id);
        if (!job) throw new Error(`no job ${id} (never published, or deleted: by retention or deleteJobs)`);
        process.stdout.write(`${opts.json ? JSON.stringify(job) : formatJob(job)}\n`);
      });
    });

  return [jobs, show];
}
