import { Command, Option } from 'commander';
import { sliceUnits } from '../error-text.js';
import { PgDrainError, ValidationError } from '../errors.js';
import { addGroupOptions, dsnOption, groupOf, type WithConnection } from './features.js';
import { integer, json, namedBy, seconds, secondsOver0 } from './flag-parsers.js';
import { keySchema, queueNameSchema, scheduleNameSchema, taskSchema } from '../options.js';
import { decimalText, formatTable } from './format.js';
import { lastErrorForCommand, noNextRun } from '../schedule-stopped.js';
import type { ScheduleDedupeMode, ScheduleSpec } from '../schedules.js';

// `pgdrain schedule add | list | rm`: recurring jobs (src/schedules.ts,
// sql/0022_schedule.sql, sql/0042). main.ts registers them. The schedules module (and
// croner with it) loads only when one of these runs.

// The flag (or argument) that sets each field of the spec, in the core's
// errors ("spec.timeoutSeconds: …") and the database's ("tz: …").
const FLAGS: Record<string, string> = {
  name: 'name', cron: '--cron', task: '--task', body: '--body', queue: '--queue', priority: '--priority',
  timeoutSeconds: '--timeout', timeout: '--timeout', maxRetries: '--max-retries', max_retries: '--max-retries',
  runner: '--runner', overlap: '--overlap', tz: '--tz', backfillSeconds: '--backfill', backfill: '--backfill',
  serialKey: '--serial-key', serial_key: '--serial-key', dedupeKey: '--dedupe-key', dedupe_key: '--dedupe-key',
  dedupeMode: '--dedupe-mode', dedupe_mode: '--dedupe-mode', 'group.id': '--group', 'group.tier': '--group-tier',
  group: '--group', group_id: '--group', group_tier: '--group-tier',
};

/** An error naming a field of the spec, reworded to name its flag. */
function asFlag(error: unknown): unknown {
  if (!(error instanceof PgDrainError) || error.code !== 'invalid_argument' || error.field === undefined) return error;
  const field = error.field.replace(/^spec\./, '');
  const flag = FLAGS[field] ?? FLAGS[field.split('.')[0]!];
  if (flag === undefined) return error;
  return new ValidationError(flag, error.message.slice(error.message.indexOf(': ') + 2), { cause: error });
}

export function scheduleCommand(withConnection: WithConnection): Command {
  const cmd = new Command('schedule').description('recurring jobs: add (or replace), list, rm');

  addGroupOptions(cmd.command('add')
    .description('create or replace a schedule: at each tick of --cron, publish a job of --task (prints its runner)')
    .argument('<name>', 'unique name; adding it again replaces it', namedBy('name', scheduleNameSchema))
    .requiredOption('--cron <expr>', "5 fields (minute hour day-of-month month day-of-week) or @hourly, @daily, …: '0 9 * * mon-fri'; "
      + "or an RFC 5545 rule: 'FREQ=WEEKLY;BYDAY=MO,FR;BYHOUR=9', with DTSTART:/RRULE:/EXDATE: lines if need be")
    .requiredOption('--task <task>', 'dotted task name of the jobs it publishes', namedBy('--task', taskSchema))
    .option('--body <json>', 'the body of each job, as JSON', json)
    .option('--queue <name>', 'the queue of its jobs (default: default)', namedBy('--queue', queueNameSchema))
    .option('--priority <n>', "greater runs first (default: the queue's, else 0)", integer(-1_000_000, 1_000_000))
    .option('--timeout <seconds>', "seconds a run may take (default: the queue's, else 60)", seconds(0.001, 86400))
    .option('--max-retries <n>', "retries after the first attempt (default: the queue's, else 3)", integer(0, 1000))
    .addOption(new Option('--runner <runner>', 'what fires it (default: pg_cron where it is usable, with no --tz and a cron --cron; else drains)')
      .choices(['pg_cron', 'drains']))
    .addOption(new Option('--overlap <mode>', 'allow (default): every tick publishes; skip: none while a job of it is active')
      .choices(['allow', 'skip']))
    .option('--tz <zone>', "IANA time zone whose wall clock --cron reads, e.g. Europe/Paris (default UTC; runner drains)")
    .option('--backfill <seconds>', 'one job per tick missed within these seconds before now (default: one for all; runner drains)',
            secondsOver0(31_622_400, '366 days')) // as schedule()'s backfillSeconds and jobs.schedule's backfill
    .option('--serial-key <key>', 'serial key of every job it publishes: they run one at a time (graphile-worker ?queue=)',
            namedBy('--serial-key', keySchema))
    .option('--dedupe-key <key>', 'dedupe key every tick publishes with, as publish --dedupe-key (graphile-worker ?jobKey=; overlap allow)',
            namedBy('--dedupe-key', keySchema))
    .addOption(new Option('--dedupe-mode <mode>', "while a job holds --dedupe-key: keep (default) publishes nothing; replace: "
      + 'the waiting job takes the tick; replace_keep_time: and keeps its time; keep_waiting: keep while the job has not started')
      .choices(['keep', 'keep_waiting', 'replace', 'replace_keep_time'])))
    .addOption(dsnOption())
    .action(async (name: string, opts: { cron: string; task: string; body?: unknown; queue?: string; priority?: number;
                                         timeout?: number; maxRetries?: number; runner?: 'pg_cron' | 'drains';
                                         overlap?: 'allow' | 'skip'; tz?: string; backfill?: number; serialKey?: string;
                                         dedupeKey?: string; dedupeMode?: ScheduleDedupeMode;
                                         group?: string; groupTier?: string; dsn?: string }) => {
      const { checkSchedule, schedule } = await import('../schedules.js');
      const group = groupOf(opts);
      const spec: ScheduleSpec = {
        name, cron: opts.cron, task: opts.task, body: opts.body, queue: opts.queue, priority: opts.priority,
        timeoutSeconds: opts.timeout, maxRetries: opts.maxRetries, runner: opts.runner, overlap: opts.overlap, tz: opts.tz,
        backfillSeconds: opts.backfill, serialKey: opts.serialKey, dedupeKey: opts.dedupeKey, dedupeMode: opts.dedupeMode,
        group,
      };
      try {
        // Before connecting: a bad flag, or flags the core refuses together, open no database.
        checkSchedule(spec);
        await withConnection(opts.dsn, async ({ driver }) => {
          const runner = await schedule(driver, spec);
          process.stdout.write(`${runner}\n`);
        });
      } catch (error) {
        throw asFlag(error);
      }
    });

  cmd.command('list')
    .description('every schedule: its next tick, last run, skipped ticks and last error')
    .option('--json', 'print the schedules as JSON')
    .addOption(dsnOption())
    .action(async (opts: { json?: boolean; dsn?: string }) => {
      const { listSchedules } = await import('../schedules.js');
      await withConnection(opts.dsn, async ({ driver }) => {
        const list = await listSchedules(driver);
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(list)}\n`);
          return;
        }
        const iso = (d: Date | null) => (d === null ? '' : d.toISOString());
        // The backfill, serial_key, dedupe_key and group columns only when a schedule has one.
        const fill = list.some((s) => s.backfillSeconds !== null);
        const serial = list.some((s) => s.serialKey !== null);
        const dedupe = list.some((s) => s.dedupeKey !== null);
        const grouped = list.some((s) => s.group !== null);
        const rows = list.map((s) => ({
          // A recurrence's lines on one line.
          name: s.name, cron: s.cron.replace(/\s*\n\s*/g, ' '), tz: s.tz, task: s.task, runner: s.runner, overlap: s.overlap,
          ...(fill ? { backfill: s.backfillSeconds === null ? '' : `${decimalText(s.backfillSeconds)}s` } : {}),
          ...(serial ? { serial_key: s.serialKey ?? '' } : {}),
          // The key, and its mode after it when not keep: 'k (replace)'.
          ...(dedupe ? { dedupe_key: s.dedupeKey === null ? '' : `${s.dedupeKey}${s.dedupeMode === null || s.dedupeMode === 'keep' ? '' : ` (${s.dedupeMode})`}` } : {}),
          // As pgdrain show's group line: 'acme (tier pro)'.
          ...(grouped ? { group: s.group === null ? '' : s.group.tier === null ? s.group.id : `${s.group.id} (tier ${s.group.tier})` } : {}),
          next_run_at: s.nextRunAt === null ? noNextRun(s.lastError) : iso(s.nextRunAt), last_run_at: iso(s.lastRunAt), skipped: s.skippedTicks,
          // In the CLI's words; the last column, so cut no shorter than the dashboard's: a hint comes at its end.
          last_error: s.lastError === null ? '' : sliceUnits(lastErrorForCommand(s.lastError.split('\n')[0]!), 200),
        }));
        process.stdout.write(`${rows.length ? formatTable(rows, Object.keys(rows[0]!)) : 'no schedules'}\n`);
      });
    });

  cmd.command('rm')
    .description('remove a schedule (and its pg_cron job); jobs it published stay')
    .argument('<name>', 'the schedule', namedBy('name', scheduleNameSchema))
    .addOption(dsnOption())
    .action(async (name: string, opts: { dsn?: string }) => {
      const { unschedule } = await import('../schedules.js');
      try {
        await withConnection(opts.dsn, async ({ driver }) => {
          if (!(await unschedule(driver, name))) {
            throw new PgDrainError('invalid_argument', `name: no schedule named '${name}'`, { field: 'name' });
          }
        });
      } catch (error) {
        throw asFlag(error);
      }
    });

  return cmd;
}
