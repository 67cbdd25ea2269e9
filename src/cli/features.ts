import { Command, Option } from 'commander';
import { checkedBy, integer, jobIds, json, jsonObject, jsonObjects, namedBy, positive, seconds } from './flag-parsers.js';
import { createNamedQueue, deleteQueue, listNamedQueues, purgeQueue, redrive, redriveParams, setQueuePaused } from '../admin.js';
import { checkNamedQueue } from '../queue-settings.js';
import type { Driver } from '../db/driver.js';
import { PgDrainError, ValidationError } from '../errors.js';
import { groupTextSchema, redriveErrorLikeSchema, redriveTaskSchema } from '../job-options.js';
import { keySchema, MAX_DELAY_SECONDS, queueNameSchema, reasonSchema, workerIdSchema } from '../options.js';
import { formatTable, groupCaps } from './format.js';
import type { JobGroup, NamedQueueOptions, RedriveFilter } from '../types.js';

// The commands of issue 7 (redrive, dead-letters, queue; wait is in wait-command.ts, cancel in admin-commands.ts) and
// the options they add to publish and drain. main.ts registers them.

/** How a command gets its database (main.ts): a driver, closed after fn. */
export type WithConnection = <T>(dsn: string | undefined, fn: (c: { driver: Driver }) => Promise<T>) => Promise<T>;

/** Every command's --dsn. */
export const dsnOption = () => new Option('--dsn <url>', 'PostgreSQL URL (default: DATABASE_URL, else the embedded database)');

/** Options publish gains: --queue --dedupe-key --dedupe-mode --serial-key --depends-on --attributes. */
export function addPublishOptions(cmd: Command): Command {
  return cmd
    .option('--queue <name>', "a queue made with 'pgdrain queue create' (default: default)", namedBy('--queue', queueNameSchema))
    .option('--dedupe-key <key>', 'while a job with this key is active, print its id instead of adding one', namedBy('--dedupe-key', keySchema))
    .addOption(new Option('--dedupe-mode <mode>', 'keep: as --dedupe-key says; replace: a job with the key that has '
      + 'not started takes this body, run time and options (debounce); a running one finishes and a new job takes the key; '
      + 'replace_keep_time: as replace, but a job that has not started keeps its run time; '
      + 'keep_waiting: keep while the job has not started, else a new job takes the key (pg-boss short)')
      .choices(['keep', 'keep_waiting', 'replace', 'replace_keep_time']))
    .option('--serial-key <key>', 'jobs sharing the key run one at a time, in publish order', namedBy('--serial-key', keySchema))
    .option('--depends-on <ids>', 'run after these jobs (comma-separated ids) succeeded', jobIds)
    .option('--attributes <json>', 'a JSON object drains can filter on', jsonObject);
}

/** --group and --group-tier: the group of the jobs a command publishes (publish, event publish, schedule add). */
export function addGroupOptions(cmd: Command): Command {
  return cmd
    .option('--group <id>', "the group of every job it publishes: a queue's --group-concurrency caps how many of a group's jobs run at once",
      checkedBy(groupTextSchema))
    .option('--group-tier <tier>', "with --group: the tier whose cap (the queue's --group-tiers) the group takes",
      checkedBy(groupTextSchema));
}

/** Those flags as the group option (none: undefined); --group-tier without --group is a usage error. */
export function groupOf(opts: { group?: string; groupTier?: string }): JobGroup | undefined {
  if (opts.groupTier !== undefined && opts.group === undefined) {
    throw new ValidationError('--group-tier', 'needs --group (the group whose tier it names)');
  }
  return opts.group === undefined ? undefined : { id: opts.group, tier: opts.groupTier };
}

/** Options drain gains: --queue --filter --exclude --worker-id. */
export function addDrainOptions(cmd: Command): Command {
  return cmd
    .option('--queue <name>', 'the queue to drain (default: default)', checkedBy(queueNameSchema))
    .option('--filter <json>', 'only jobs whose attributes contain this JSON object', jsonObject)
    .option('--exclude <json>', 'no job whose attributes contain any object of this JSON array '
      + '(\'[{"partner":"acme"}]\'); excluded jobs stay pending', jsonObjects)
    .option('--worker-id <id>', 'recorded on every job this drain runs (default: host:pid)', checkedBy(workerIdSchema));
}

/**
 * What pause, resume, purge and delete say of a queue that does not exist: a
 * usage error (exit 2) naming it, so a script's typo fails rather than
 * pausing, emptying or deleting nothing. delete-ended takes any name (a
 * deleted queue's history).
 */
function noQueue(name: string): PgDrainError {
  return new PgDrainError('invalid_argument', `queue: no queue named '${name}' (pgdrain queue list names them)`, { field: 'queue' });
}

async function queueExists(driver: Driver, name: string): Promise<boolean> {
  const { rows } = await driver.query<{ r: boolean }>('select exists (select 1 from jobs.queue where name = $1) as r', [name]);
  return rows[0]!.r;
}

/** queueCommands: more `queue` subcommands (admin-commands.ts's delete-ended). */
export function featureCommands(withConnection: WithConnection, queueCommands: Command[] = []): Command[] {
  const redriveCmd = new Command('redrive')
    .description('run dead letters (failed jobs) again: all, or those matching every filter given')
    .option('--ids <ids>', 'comma-separated job ids', jobIds)
    .option('--task <pattern>', "task LIKE pattern, only % is a wildcard ('email.%')", namedBy('--task', redriveTaskSchema))
    .option('--queue <name>', 'only this queue', namedBy('--queue', queueNameSchema))
    .option('--error-like <pattern>', 'SQL LIKE pattern over the error', namedBy('--error-like', redriveErrorLikeSchema))
    .option('--include-cancelled', 'also put back cancelled jobs among --ids')
    .option('--max-rows <n>', 'at most this many whose dedupe key no active job holds, the oldest first (run again for the next ones)',
            positive)
    .option('--json', 'print what it did as JSON, as queue.redrive answers it: { redriven, heldByKey, serialLater }')
    .addOption(dsnOption())
    .action(async (opts: { ids?: string[]; task?: string; queue?: string; errorLike?: string; includeCancelled?: boolean;
                           maxRows?: number; json?: boolean; dsn?: string }) => {
      const filter: RedriveFilter = { ids: opts.ids, task: opts.task, queue: opts.queue, errorLike: opts.errorLike,
                                      includeCancelled: opts.includeCancelled, maxRows: opts.maxRows };
      redriveParams(filter); // before connecting: --include-cancelled without --ids is exit 2 with the server down too
      await withConnection(opts.dsn, async ({ driver }) => {
        // Which ids it left, and why ("5 (cancelled: give include_cancelled)"): a NOTICE, told on stderr.
        const unhear = driver.onNotice?.((message) => {
          if (message.startsWith('pgdrain: ')) process.stderr.write(`${message.replaceAll('include_cancelled', '--include-cancelled')}\n`);
        });
        try {
          const r = await redrive(driver, filter);
          // How many it put back; what it left, and why, is in the notices above (or the JSON).
          process.stdout.write(opts.json ? `${JSON.stringify(r)}\n` : `${r.redriven}\n`);
        } finally {
          unhear?.();
        }
      });
    });

  const deadLetters = new Command('dead-letters')
    .description('list failed jobs, newest first')
    .option('--limit <n>', 'at most this many', positive, 50)
    .option('--json', 'print rows as JSON')
    .addOption(dsnOption())
    .action(async (opts: { limit: number; json?: boolean; dsn?: string }) => {
      await withConnection(opts.dsn, async ({ driver }) => {
        const { rows } = await driver.query<Record<string, unknown>>(
          `select job_id::text as id, task, queue, attempts, ended_at, left(split_part(error, E'\\n', 1), 100) as error
           from jobs.dead_letters order by ended_at desc limit $1`, [opts.limit]);
        if (opts.json) process.stdout.write(`${JSON.stringify(rows)}\n`);
        else process.stdout.write(`${rows.length ? formatTable(rows, ['id', 'task', 'queue', 'attempts', 'error']) : 'no dead letters'}\n`);
      });
    });

  const queue = new Command('queue').description('named queues: create, list, pause, resume, purge, delete, delete-ended');
  // A value flag and its --no- form (clears it); left out, the queue keeps its value.
  const create = queue.command('create')
    .description('create a queue, or change an existing one: only the flags given change, --no-X clears X')
    .argument('<name>', 'the queue', namedBy('name', queueNameSchema))
    // The core's bounds (jobs.create_queue, jobs.check_options).
    .option('--max-size <n>', 'refuse publishing beyond this many waiting jobs', integer(1, 100_000_000))
    .option('--timeout <seconds>', 'timeout of a job published here without one (default 60)', seconds(0.001, 86400))
    .option('--max-retries <n>', 'max retries of a job published here without them (default 3)', integer(0, 1000))
    .option('--priority <n>', 'priority of a job published here without one (default 0)', integer(-1_000_000, 1_000_000))
    .option('--dead-letter <queue>', 'a queue (created first) that gets a copy of every job failing here for good',
      checkedBy(queueNameSchema))
    .option('--retry-delay <seconds>', "base wait of this queue's retries (default 5)", seconds(0, 86400))
    .addOption(new Option('--retry-backoff <kind>', 'exponential: the wait doubles per retry, with jitter (default); '
      + 'fixed: every retry waits --retry-delay').choices(['exponential', 'fixed']))
    .option('--retry-delay-max <seconds>', 'longest retry wait, at least --retry-delay (default an hour)', seconds(1, 604800))
    .option('--max-running <n>', 'at most this many of its jobs run at once, across every drain', integer(1, 100_000))
    .option('--group-concurrency <n>', "at most this many jobs of one group (publish --group) run at once, across every "
      + 'drain (clears --group-tiers unless given with it)', integer(1, 100_000))
    .option('--group-tiers <json>', 'with --group-concurrency: caps of tiers (publish --group-tier), e.g. {"pro": 5}', jsonObject)
    .option('--expires-in <seconds>', 'a job published here without an expiry never starts later than this many seconds '
      + 'after its run time (ends as a failure)', seconds(0.001, MAX_DELAY_SECONDS));
  const cleared = { 'max-size': 'unbounded', timeout: 'the global 60 s', 'max-retries': 'the global 3',
                   priority: 'the global 0', 'dead-letter': 'no dead-letter queue', 'retry-delay': '5 s',
                   'retry-backoff': 'exponential', 'retry-delay-max': 'an hour', 'max-running': 'unlimited',
                   'expires-in': 'never', 'group-concurrency': 'unlimited, no tiers' };
  for (const [flag, then] of Object.entries(cleared)) create.option(`--no-${flag}`, `clear --${flag} (${then})`);
  create.addOption(dsnOption())
    .action(async (name: string, opts: { maxSize?: number | false; timeout?: number | false; maxRetries?: number | false;
                                         priority?: number | false; deadLetter?: string | false; retryDelay?: number | false;
                                         retryBackoff?: string | false; retryDelayMax?: number | false;
                                         maxRunning?: number | false; expiresIn?: number | false; dsn?: string;
                                         groupConcurrency?: number | false; groupTiers?: Record<string, number> }) => {
      const given = <T>(v: T | false | undefined) => (v === false ? null : v);
      if (opts.groupTiers && typeof opts.groupConcurrency !== 'number') {
        throw new ValidationError('--group-tiers', 'needs --group-concurrency (the cap of groups of no tier)');
      }
      const group = opts.groupTiers ? { default: opts.groupConcurrency as number, tiers: opts.groupTiers }
        : given(opts.groupConcurrency);
      const backoff = given(opts.retryBackoff);
      const options: NamedQueueOptions = {
        maxSize: given(opts.maxSize), timeoutSeconds: given(opts.timeout), maxRetries: given(opts.maxRetries),
        priority: given(opts.priority), deadLetter: given(opts.deadLetter), retryDelaySeconds: given(opts.retryDelay),
        retryBackoff: typeof backoff === 'string' ? backoff === 'exponential' : backoff,
        retryDelayMaxSeconds: given(opts.retryDelayMax), maxRunning: given(opts.maxRunning),
        expiresInSeconds: given(opts.expiresIn), groupConcurrency: group };
      // Before connecting: the core's rules (--retry-delay-max under --retry-delay, --group-tiers' caps); the SQL's need the database.
      checkNamedQueue(name, options);
      await withConnection(opts.dsn, ({ driver }) => createNamedQueue(driver, name, options));
    });
  queue.command('list')
    .description('list the queues and their settings')
    .option('--json', 'print rows as JSON')
    .addOption(dsnOption())
    .action(async (opts: { json?: boolean; dsn?: string }) => {
      await withConnection(opts.dsn, async ({ driver }) => {
        const queues = await listNamedQueues(driver);
        if (opts.json) {
          process.stdout.write(`${JSON.stringify(queues)}\n`);
          return;
        }
        // Blank: unbounded, the global default, none.
        process.stdout.write(`${formatTable(queues.map((q) => ({
          name: q.name, paused: q.paused ? 'yes' : '', max_size: q.maxSize, timeout: q.timeoutSeconds,
          priority: q.priority, max_retries: q.maxRetries, retry_delay: q.retryDelaySeconds,
          retry_backoff: q.retryBackoff === null ? null : q.retryBackoff ? 'exponential' : 'fixed',
          retry_delay_max: q.retryDelayMaxSeconds, max_running: q.maxRunning, dead_letter: q.deadLetter,
          expires_in: q.expiresInSeconds, group_concurrency: groupCaps(q.groupConcurrency) })),
          ['name', 'paused', 'max_size', 'max_running', 'group_concurrency', 'timeout', 'priority', 'max_retries', 'retry_delay', 'retry_backoff',
           'retry_delay_max', 'expires_in', 'dead_letter'])}\n`);
      });
    });
  for (const [verb, paused] of [['pause', true], ['resume', false]] as const) {
    queue.command(verb)
      .description(paused ? 'stop handing out jobs of a queue' : 'hand out jobs of a paused queue again')
      .argument('<name>', 'the queue', namedBy('name', queueNameSchema))
      .addOption(dsnOption())
      .action(async (name: string, opts: { dsn?: string }) => {
        await withConnection(opts.dsn, async ({ driver }) => {
          if (!(await setQueuePaused(driver, name, paused))) throw noQueue(name);
        });
      });
  }

  // Refusals (jobs still in it, the default queue, a dead-letter target) are the core's ValidationError: exit 2.
  queue.command('purge')
    .description('end every waiting job of a queue as cancelled (running jobs finish); prints how many')
    .argument('<name>', 'the queue', checkedBy(queueNameSchema))
    .option('--reason <text>', "recorded as each job's error, after 'cancelled: ' (default: purged)", checkedBy(reasonSchema))
    .addOption(dsnOption())
    .action(async (name: string, opts: { reason?: string; dsn?: string }) => {
      await withConnection(opts.dsn, async ({ driver }) => {
        const n = await purgeQueue(driver, name, { reason: opts.reason });
        // 0 is also jobs.purge_queue's answer for no such queue: told apart only then.
        if (n === 0 && !(await queueExists(driver, name))) throw noQueue(name);
        process.stdout.write(`${n}\n`);
      });
    });
  queue.command('delete')
    .description('delete a queue with no waiting or running jobs (purge it first), and its subscriptions')
    .argument('<name>', 'the queue', checkedBy(queueNameSchema))
    .addOption(dsnOption())
    .action(async (name: string, opts: { dsn?: string }) => {
      await withConnection(opts.dsn, async ({ driver }) => {
        if (!(await deleteQueue(driver, name))) throw noQueue(name);
        process.stdout.write('deleted\n');
      });
    });
  for (const command of queueCommands) queue.addCommand(command);

  return [redriveCmd, deadLetters, queue];
}
