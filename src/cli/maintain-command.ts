import { Command } from 'commander';
import { maintain, type MaintainReport } from '../maintain.js';
import { dsnOption, type WithConnection } from './features.js';
import { integer, seconds } from './flag-parsers.js';
import { listenForMaintainStop } from './signals.js';

// `pgdrain maintain`: TS maintain() (src/schedules.ts) for schedulers that
// are not pg_cron (a Kubernetes CronJob, a systemd timer, a cron line): its
// options as flags, in seconds as every other time flag here, checked by the
// same bounds before any connection. SIGTERM or SIGINT: no more passes, the
// report of those done printed, exit 0 (a second one: at once; signals.ts).

/** maintain()'s defaults, said in the help. */
const RETENTION_SECONDS = 7 * 86_400;
const BUDGET_SECONDS = 50;

/** The report as one line, then why it stopped short if it did. */
export function formatMaintainReport(r: MaintainReport): string {
  const line = `maintained in ${r.passes} pass${r.passes === 1 ? '' : 'es'}: ${r.deleted} deleted, ${r.archived} archived, `
    + `${r.expired} leases expired, ${r.ticks} schedule ticks, ${r.windows} throttle windows, ${r.misses} tick misses`
    // left: rows a REPEATABLE READ / SERIALIZABLE pass found changed since its snapshot.
    + (r.left > 0 ? `, ${r.left} left for the next pass` : '');
  const why = r.stopped ? 'stopped by a signal before the next pass'
    : r.left > 0 ? 'a pass left rows another session changed since its snapshot' : '--budget ran out while a pass still found a full --max-rows to do';
  return r.caughtUp ? line : `${line}\n  not caught up: ${why}; run it again`;
}

export function maintainCommand(withConnection: WithConnection): Command {
  return new Command('maintain')
    .description('without pg_cron: expire passed leases, fire due drain-run schedule ticks, delete (or archive) ended jobs '
      + 'older than --retention, in passes of --max-rows each committed, until caught up or --budget is spent; '
      + 'prints what it did (not caught up: exit 0 all the same, the next run goes on); SIGTERM or SIGINT: no pass after the '
      + 'running one, the report printed, exit 0')
    .option('--retention <seconds>', 'keep ended jobs this long (at most 3153600000, a hundred years)',
      seconds(0, 3_153_600_000), RETENTION_SECONDS)
    .option('--archive', 'move old ended jobs to jobs.job_archive instead of deleting them')
    .option('--max-rows <n>', 'rows of each kind one pass removes, expires or deletes at most', integer(1, 10_000_000), 10_000)
    // maintain()'s budgetMs is whole milliseconds: 0.001 s is its least.
    .option('--budget <seconds>', 'start no pass after this long (keep it under your scheduler\'s time limit)',
      seconds(0.001, 86_400), BUDGET_SECONDS)
    .option('--json', 'print the report as JSON, as maintain() answers it')
    .addOption(dsnOption())
    .action(async (opts: { retention: number; archive?: boolean; maxRows: number; budget: number; json?: boolean; dsn?: string }) => {
      const stop = listenForMaintainStop((line) => process.stderr.write(`${line}\n`));
      try {
        await withConnection(opts.dsn, async ({ driver }) => {
          const report = await maintain(driver, { retentionSeconds: opts.retention, archive: opts.archive === true,
            maxRows: opts.maxRows, budgetMs: Math.max(1, Math.round(opts.budget * 1000)), signal: stop.signal });
          process.stdout.write(opts.json ? `${JSON.stringify(report)}\n` : `${formatMaintainReport(report)}\n`);
        });
      } finally {
        stop.done();
      }
    });
}
