import { Command } from 'commander';
import { cancelJob, cancelJobs, failJobs, rescheduleJobs } from '../admin.js';
import { cancelJobByKey, completeJobs, deleteEndedJobs, deleteJobs } from '../admin-ends.js';
import { ValidationError } from '../errors.js';
import { jsonParam } from '../json-text.js';
import { rescheduleOptionsSchema } from '../job-options.js';
import { isJobId, isoDateTimeSchema, keySchema, MAX_DELAY_SECONDS, parse, queueNameSchema, reasonSchema } from '../options.js';
import { flagOf, namedAs } from './error-line.js';
import { dsnOption, type WithConnection } from './features.js';
import { checkedBy, integer, json, seconds } from './flag-parsers.js';

// Changing queued jobs, many at once: cancel, reschedule, fail (sql/0028),
// complete, cancel --key and delete (sql/0036).
// main.ts registers them, and `queue delete-ended` with features.ts's queue command.

/** The <id...> arguments, each checked: a usage error (exit 2) names the first bad one. */
function checkIds(ids: string[]): string[] {
  const bad = ids.find((id) => !isJobId(id));
  if (bad !== undefined) {
    throw new ValidationError('id', `must be a job id (a positive integer of at most 9223372036854775807), got ${JSON.stringify(bad)}`);
  }
  return ids;
}

export function adminCommands(withConnection: WithConnection): Command[] {
  const cancel = new Command('cancel')
    .description('cancel jobs: one not yet running never runs; a running one is aborted (best effort). '
      + 'Prints the state for one id (or --key), the number cancelled or asked to stop for several')
    .argument('[id...]', 'job ids')
    .option('--key <dedupe-key>', 'instead of ids: the active job holding this dedupe key', checkedBy(keySchema))
    .option('--reason <text>', 'recorded as the error', checkedBy(reasonSchema))
    .addOption(dsnOption())
    .action(async (ids: string[], opts: { key?: string; reason?: string; dsn?: string }) => {
      // Said as every other refusal (`pgdrain: FIELD: rule`, exit 2): none names the <id> argument commander would say missing.
      if (opts.key !== undefined && ids.length > 0) throw new ValidationError('--key', 'give job ids or --key, not both');
      if (opts.key === undefined && ids.length === 0) throw new ValidationError('id', 'give job ids or --key');
      checkIds(ids);
      await withConnection(opts.dsn, async ({ driver }) => {
        if (opts.key !== undefined) {
          const state = await cancelJobByKey(driver, opts.key, opts.reason);
          process.stdout.write(`${state ?? 'not active'}\n`);
        } else if (ids.length === 1) {
          const state = await cancelJob(driver, ids[0]!, opts.reason);
          process.stdout.write(`${state ?? 'not active'}\n`);
        } else {
          process.stdout.write(`${await cancelJobs(driver, ids, opts.reason)}\n`);
        }
      });
    });

  const reschedule = new Command('reschedule')
    .description('move jobs not yet running to another time, priority, max retries and/or attempts spent; '
      + 'prints how many changed (running and ended jobs are left alone)')
    .argument('<id...>', 'job ids')
    .option('--at <iso>', 'run at this time (ISO 8601 with a time zone)', checkedBy(isoDateTimeSchema))
    .option('--delay <seconds>', 'run this many seconds from now', seconds(0, MAX_DELAY_SECONDS))
    .option('--priority <n>', 'greater runs first', integer(-1_000_000, 1_000_000))
    .option('--max-retries <n>', 'the jobs\' retries (runs after the first)', integer(0, 1000))
    .option('--attempts <n>', 'the attempts they have spent (0: all their runs back; at most their max retries)',
      integer(0, 1000))
    .addOption(dsnOption())
    .action(async (ids: string[], opts: { at?: Date; delay?: number; priority?: number; maxRetries?: number;
      attempts?: number; dsn?: string }) => {
      checkIds(ids);
      if (opts.at !== undefined && opts.delay !== undefined) throw new ValidationError('--delay', 'give --at or --delay, not both');
      const options = { runAt: opts.at, delaySeconds: opts.delay, priority: opts.priority, maxRetries: opts.maxRetries,
                        attempts: opts.attempts };
      // rescheduleJobs()'s rules, before connecting, the options they name as their flags: --attempts over
      // --max-retries; none given, the command (its rule names every flag it could take).
      const flags = (rule: string) => rule.replace(/\b(runAt|delaySeconds|priority|maxRetries|attempts)\b/g, (o) => flagOf(o));
      namedAs('options', 'reschedule', () => namedAs('options.attempts', '--attempts',
        () => parse(rescheduleOptionsSchema, options, 'options'), flags), flags);
      await withConnection(opts.dsn, async ({ driver }) => {
        const n = await rescheduleJobs(driver, ids, options);
        process.stdout.write(`${n}\n`);
      });
    });

  const fail = new Command('fail')
    .description('end jobs not yet running as failures (dead letters, redrivable); prints how many failed '
      + '(running jobs are left alone: cancel them)')
    .argument('<id...>', 'job ids')
    .option('--reason <text>', 'recorded as the error', checkedBy(reasonSchema))
    .addOption(dsnOption())
    .action(async (ids: string[], opts: { reason?: string; dsn?: string }) => {
      checkIds(ids);
      await withConnection(opts.dsn, async ({ driver }) => {
        process.stdout.write(`${await failJobs(driver, ids, opts.reason)}\n`);
      });
    });

  const complete = new Command('complete')
    .description('end jobs not yet running as successes, as an ack does (dependants may run, a serial key moves on); '
      + 'prints how many ended (running jobs are left alone)')
    .argument('<id...>', 'job ids')
    .option('--result <json>', 'recorded as the result', json)
    .addOption(dsnOption())
    .action(async (ids: string[], opts: { result?: unknown; dsn?: string }) => {
      checkIds(ids);
      // As completeJobs(), before connecting; named as the flag, as --result's value that is no JSON is.
      if (opts.result !== undefined && opts.result !== null) namedAs('result', '--result', () => jsonParam(opts.result, 'result'));
      await withConnection(opts.dsn, async ({ driver }) => {
        process.stdout.write(`${await completeJobs(driver, ids, opts.result)}\n`);
      });
    });

  const del = new Command('delete')
    .description('delete jobs outright: a waiting one leaves no history (its dependants end as cancelled, its serial '
      + 'key moves on), an ended one\'s history is deleted; running jobs are left alone and listed (cancel them first)')
    .argument('<id...>', 'job ids')
    .option('--json', 'print what it did as JSON, as queue.deleteJobs answers it')
    .addOption(dsnOption())
    .action(async (ids: string[], opts: { json?: boolean; dsn?: string }) => {
      checkIds(ids);
      await withConnection(opts.dsn, async ({ driver }) => {
        const done = await deleteJobs(driver, ids);
        process.stdout.write(opts.json ? `${JSON.stringify(done)}\n` : `deleted ${done.waiting} waiting, ${done.ended} ended\n${
          done.running.length ? `left running: ${done.running.join(' ')} (cancel them, then delete them once ended)\n` : ''}`);
      });
    });

  return [cancel, reschedule, fail, complete, del];
}

/** `pgdrain queue delete-ended <name>`: a queue's ended jobs (jobs.delete_ended). */
export function deleteEndedCommand(withConnection: WithConnection): Command {
  return new Command('delete-ended')
    .description('delete the ended jobs (history and archive) of a queue, oldest first; prints how many '
      + '(less than --max-rows: none left)')
    .argument('<name>', 'the queue (a deleted queue\'s history too)', checkedBy(queueNameSchema))
    .option('--before <iso>', 'only jobs that ended before this time (ISO 8601 with a time zone)', checkedBy(isoDateTimeSchema))
    .option('--max-rows <n>', 'at most this many in one call', integer(1, 10_000_000), 100_000)
    .addOption(dsnOption())
    .action(async (name: string, opts: { before?: Date; maxRows: number; dsn?: string }) => {
      await withConnection(opts.dsn, async ({ driver }) => {
        process.stdout.write(`${await deleteEndedJobs(driver, name, { endedBefore: opts.before, maxRows: opts.maxRows })}\n`);
      });
    });
}
