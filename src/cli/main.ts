import { hostname } from 'node:os';
import { Command, CommanderError } from 'commander';
import { DEFAULT_OVERRUN_MS, drain } from '../drain.js';
import { PgDrainError, translateError, ValidationError } from '../errors.js';
import { LINGER_SECONDS, POLL_SECONDS } from '../idle-wait.js';
import { isoDateTimeSchema, MAX_DELAY_SECONDS, queueNameSchema, taskSchema, topicSchema } from '../options.js';
import { checkPublish, publish } from '../publish.js';
import { stoppedSummary, tickSettingsSummary, type WithStoppedSchedules, withStoppedSchedules } from '../schedule-stopped.js';
import type { PublishOptions } from '../types.js';
import { adminCommands, deleteEndedCommand } from './admin-commands.js';
import { closeEarly, connect, databaseUrl, type Connection } from './connect.js';
import { addDbTimeout, withinBound } from './db-bound.js';
import { addExpiryOptions, addRetryPolicyOptions, eventCommand, expiryOf, retryPolicyOf } from './event-commands.js';
import { jobCommands } from './job-commands.js';
import { maintainCommand } from './maintain-command.js';
import { migrateCommand } from './migrate-command.js';
import { DRAIN_ENV_HELP, drainSettings } from './env.js';
import { addDrainOptions, addGroupOptions, addPublishOptions, dsnOption, featureCommands, groupOf } from './features.js';
import { checkedBy, integer, json, namedBy, sayFlagErrorsAlike, seconds, tasksModule, throttle } from './flag-parsers.js';
import { formatReport, formatTable, withoutPasswords } from './format.js';
import { scheduleCommand } from './schedule-commands.js';
import { serveCommand } from './serve.js';
import { waitCommand } from './wait-command.js';
import { exitWhenEnded, listenForStop, unlessAgain } from './signals.js';
import { loadTasks } from './tasks-module.js';
import { asFlag, namedAs } from './error-line.js';
import { explainDashedArguments } from './dashed-arguments.js';
import { explainPeerFlags } from './peer-flags.js';
import { refuseUnknownCommands } from './unknown-command.js';
import { asCommand } from '../hint-calls.js';

// Exit codes: 0 the command ran (a drain whose jobs failed still ran);
// 1 a runtime error (database unreachable, tasks module missing);
// 2 a usage error (bad flag or argument).

const log = (line: string) => process.stderr.write(`${withoutPasswords(line)}\n`);

async function withConnection<T>(dsn: string | undefined, fn: (c: Connection) => Promise<T>): Promise<T> {
  const connection = await connect(dsn, log);
  try {
    return await withinBound(connection, databaseUrl(dsn), fn);
  } finally {
    await connection.driver.close().catch(() => {});
  }
}

export function program(): Command {
  const cli = new Command('pgdrain')
    .description('A PostgreSQL job queue drained on demand: drain(batchSize, deadline).')
    .version('0.1.0')
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(withoutPasswords(text)) });

  cli.addCommand(inheriting(migrateCommand(withConnection, log), cli));

  addDrainOptions(cli.command('drain'))
    .description('claim, run and settle jobs until the queue is empty or the deadline is near')
    .option('--tasks <module>', 'ES module whose exports are the task handlers (required)', tasksModule)
    .option('--batch <n>', 'jobs claimed per statement', integer(1, 10000), 100)
    // Over the default 60 s job timeout: a drain claims only jobs that fit its budget.
    .option('--deadline <seconds>', 'time budget from now', seconds(0.1, 86400), 300)
    .option('--topic <pattern>', "only tasks matching this LIKE pattern ('email.%')", checkedBy(topicSchema))
    .option('--concurrency <n>', 'handlers running at once (default: --batch; with a transactional task, at most the pool\'s connections)', integer(1, 10000))
    .option('--grace <seconds>', 'on SIGTERM, how long running handlers may finish', seconds(0, 3600), 10)
    .option('--overrun <seconds>', 'how long past the deadline (or the grace) to wait for a database that stopped answering',
            seconds(0, 3600), DEFAULT_OVERRUN_MS / 1000)
    // Seconds, as every other time flag here (lingerMs / pollMs in the API).
    .option('--linger <seconds>', 'on an empty queue, wait this long for new work (woken by publish\'s NOTIFY, '
            + 'or a claim every --poll) before returning; never past the deadline (default 0: return at once)', seconds(LINGER_SECONDS.min, LINGER_SECONDS.max))
    .option('--poll <seconds>', 'while lingering, claim again this often when no NOTIFY came (default 1)', seconds(POLL_SECONDS.min, POLL_SECONDS.max))
    .option('--json', 'print the report as JSON on stdout')
    .addOption(dsnOption())
    .addHelpText('after', DRAIN_ENV_HELP)
    .action(async (_flags: unknown, cmd: Command) => {
      // Flags, else PGDRAIN_* variables (env.ts); SIGTERM / SIGINT as the kubelet sends them (signals.ts).
      const opts = drainSettings<{ tasks: string; batch: number; deadline: number; topic?: string;
                                   concurrency?: number; grace: number; overrun: number; json?: boolean; dsn?: string;
                                   linger?: number; poll?: number;
                                   queue?: string; filter?: Record<string, never>; exclude?: Record<string, never>[];
                                   workerId?: string }>(cmd);
      const stop = listenForStop(opts.grace, log, "the drain's signal");
      const deadline = Date.now() + opts.deadline * 1000;
      try {
        // The embedded database opens only once the module has loaded: a bad --tasks creates none.
        // A second signal ends a module load that does not end (as serve's).
        const load = () => unlessAgain(loadTasks(opts.tasks, deadline - Date.now()), stop.again, (name) =>
          new PgDrainError('tasks_module', `cannot load tasks module ${opts.tasks}: a second signal (${name}) came before it had loaded`,
                           { field: '--tasks' }));
        const loadedFirst = databaseUrl(opts.dsn) ? undefined : await load();
        await withConnection(opts.dsn, async ({ driver }) => {
          // Else the first connection opens while the tasks module loads: a
          // module's imports can take as long as a TLS handshake. The first
          // claim waits for it (no longer than the drain's deadline allows),
          // and fails with its error if it fails.
          const warming = driver.warm?.();
          warming?.catch(() => {});
          const tasks = loadedFirst ?? await load();
          // A signal held from start-up stops the drain before its first round
          // trip: the database is asked once anyway (within --grace, or until
          // a second signal), so one that is down exits 1, as without the signal, not 0.
          if (stop.signal.aborted && warming) await answeredWithin(warming, opts.grace * 1000, stop.again);
          const report = await drain(
            { db: driver, tasks, publish: (task, body, o) => publish(driver, task, body, o) },
            opts.batch, deadline,
            { topic: opts.topic, concurrency: opts.concurrency, signal: stop.signal, hardSignal: stop.hardSignal,
              graceMs: opts.grace * 1000, overrunMs: opts.overrun * 1000, queue: opts.queue, filter: opts.filter,
              exclude: opts.exclude,
              lingerMs: opts.linger === undefined ? undefined : opts.linger * 1000,
              pollMs: opts.poll === undefined ? undefined : opts.poll * 1000,
              workerId: opts.workerId ?? `${hostname()}:${process.pid}` },
          );
          if (opts.json) process.stdout.write(`${JSON.stringify(report)}\n`);
          else process.stdout.write(`${formatReport(report, opts.deadline)}\n`);
        });
      } catch (error) {
        throw queueNamedBySource(error, cmd);
      } finally {
        stop.done();
      }
    });

  addExpiryOptions(addRetryPolicyOptions(addGroupOptions(addPublishOptions(cli.command('publish')))))
    .description('publish one job and print its id')
    .argument('<task>', 'dotted task name, e.g. email.send', namedBy('task', taskSchema))
    .argument('[json]', 'the job body as JSON (or --body)', json)
    // As `schedule add` takes it.
    .option('--body <json>', 'the job body as JSON, instead of the [json] argument', json)
    .option('--priority <n>', "greater runs first (default: the queue's, else 0)", integer(-1_000_000, 1_000_000))
    .option('--delay <seconds>', 'run this many seconds from now', seconds(0, MAX_DELAY_SECONDS))
    // Not new Date(value): it takes '5' (May 2001) and reads a time without a zone as local time.
    .option('--at <iso>', 'run at this time (ISO 8601)', checkedBy(isoDateTimeSchema))
    .option('--timeout <seconds>', "seconds a run may take (default: the queue's, else 60)", seconds(0.001, 86400))
    .option('--max-retries <n>', "retries after the first attempt (default: the queue's, else 3)", integer(0, 1000))
    .option('--throttle <seconds>', 'with --dedupe-key: for this long after a job with the key was added, print its id '
      + 'instead of adding one, even once it has ended', throttle)
    .option('--dead-letter <queue>', "a queue (created first) that gets a copy of this job if it fails for good, "
      + "instead of its queue's dead-letter queue", checkedBy(queueNameSchema))
    .addOption(dsnOption())
    .action(async (task: string, positional: unknown, opts: { body?: unknown; priority?: number; delay?: number; at?: Date; throttle?: number;
                                                         timeout?: number; maxRetries?: number; dsn?: string;
                                                         queue?: string; dedupeKey?: string; dedupeMode?: PublishOptions['dedupeMode'];
                                                         serialKey?: string; dependsOn?: string[];
                                                         attributes?: Record<string, never>; retryDelay?: number;
                                                         retryBackoff?: string; retryDelayMax?: number;
                                                         expiresIn?: number; expiresAt?: Date; deadLetter?: string;
                                                         group?: string; groupTier?: string }) => {
      if (opts.delay !== undefined && opts.at) throw new ValidationError('--delay', 'give --delay or --at, not both');
      if (positional !== undefined && opts.body !== undefined) {
        throw new ValidationError('--body', 'give the body as the [json] argument or --body, not both');
      }
      const body = opts.body ?? positional;
      const group = groupOf(opts);
      const expiry = expiryOf(opts);
      const options: PublishOptions = {
        priority: opts.priority, delaySeconds: opts.delay, runAt: opts.at,
        timeoutSeconds: opts.timeout, maxRetries: opts.maxRetries,
        queue: opts.queue, dedupeKey: opts.dedupeKey, dedupeMode: opts.dedupeMode, serialKey: opts.serialKey,
        dependsOn: opts.dependsOn, attributes: opts.attributes, throttleSeconds: opts.throttle,
        deadLetter: opts.deadLetter, ...retryPolicyOf(opts), ...expiry,
        group,
      };
      // Before connecting: a rule of the flags together (--throttle without --dedupe-key) is exit 2 with the server down too.
      namedAs('body', opts.body === undefined ? 'json' : '--body', () => checkPublish(task, body, options));
      await withConnection(opts.dsn, async ({ driver }) => {
        process.stdout.write(`${await publish(driver, task, body, options)}\n`);
      });
    });

  cli.command('stats')
    .description('jobs by queue, task and state')
    .option('--json', 'print rows as JSON')
    .addOption(dsnOption())
    .action(async (opts: { json?: boolean; dsn?: string }) => {
      await withConnection(opts.dsn, async ({ driver }) => {
        // With them, in the same statement, this session's tick settings (jobs.tick_settings_error).
        type Stats = WithStoppedSchedules<Record<string, unknown>> & { tick_settings: string | null };
        const [{ rows, stopped: names, tick_settings: settings }] = (await driver.query<Stats>(`select s.*,
          jobs.tick_settings_error() as tick_settings from (${withStoppedSchedules(
          `select queue, task, state, jobs::int as jobs, round(extract(epoch from oldest_due))::int as oldest_due_s from jobs.stats`,
          'r.queue, r.task, r.state')}) s`)).rows as [Stats];
        const notes = [stoppedSummary(names), tickSettingsSummary(settings)].filter((n) => n !== null);
        if (opts.json) process.stdout.write(`${JSON.stringify(rows)}\n`);
        else process.stdout.write(`${rows.length ? formatTable(rows, ['queue', 'task', 'state', 'jobs', 'oldest_due_s']) : 'no jobs'}\n`);
        // Under the table, or on stderr beside --json's rows (whose shape stays).
        for (const note of notes) (opts.json ? process.stderr : process.stdout).write(`${note}\n`);
      });
    });

  for (const command of [serveCommand(), ...featureCommands(withConnection, [deleteEndedCommand(withConnection)]), waitCommand(),
                         ...adminCommands(withConnection), maintainCommand(withConnection),
                         ...jobCommands(withConnection), scheduleCommand(withConnection), eventCommand(withConnection)]) {
    cli.addCommand(inheriting(command, cli));
  }
  addDbTimeout(cli);
  explainDashedArguments(cli);
  explainPeerFlags(cli);
  refuseUnknownCommands(cli);
  sayFlagErrorsAlike(cli);
  return cli;
}


/**
 * The database names a drain's unknown queue `queue`: name the flag or the
 * variable the value came from instead ("PGDRAIN_QUEUE: no queue named …").
 */
function queueNamedBySource(error: unknown, cmd: Command): unknown {
  const e = translateError(error);
  const source = { cli: '--queue', env: 'PGDRAIN_QUEUE' }[String(cmd.getOptionValueSource('queue'))];
  if (!source || !(e instanceof PgDrainError) || e.field !== 'queue' || !e.message.startsWith('queue: ')) return error;
  return new PgDrainError(e.code, `${source}: ${e.message.slice('queue: '.length)}`, { field: source, cause: e.cause ?? e });
}

/**
 * cmd and its subcommands with the root's settings (exitOverride, output):
 * addCommand, unlike command(), copies none, and commander would then exit
 * 1 on a usage error by itself.
 */
function inheriting(cmd: Command, from: Command): Command {
  cmd.copyInheritedSettings(from);
  for (const sub of cmd.commands) inheriting(sub, cmd);
  return cmd;
}

/** Waits for the connection being opened, no longer than ms or until `again` aborts; throws when it failed or did not come. */
async function answeredWithin(opening: Promise<void>, ms: number, again: AbortSignal): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAgain = () => {};
  const late = new Promise<never>((_, reject) => {
    const fail = (why: string) => () => reject(new PgDrainError('database_unavailable', `database unavailable: ${why}`));
    timer = setTimeout(fail(`no connection within ${ms} ms (--grace)`), ms);
    // A second signal that came while the tasks module loaded has aborted it already: no 'abort' event will come.
    onAgain = fail('no connection before a second signal ended the wait');
    if (again.aborted) onAgain();
    else again.addEventListener('abort', onAgain, { once: true });
  });
  try {
    await Promise.race([opening, late]);
  } finally {
    clearTimeout(timer);
    again.removeEventListener('abort', onAgain);
  }
}

async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === 'usage') log(error.message);
      // help and version exit 0; commander already printed its message
      return error.exitCode === 0 ? 0 : 2;
    }
    const e = translateError(error);
    // Any code: a full queue (queue_full) names --queue as bad input names its flag.
    if (e instanceof PgDrainError) log(`pgdrain: ${asCommand(asFlag(e.message))}`);
    else log(`pgdrain: ${(e as Error)?.message ?? String(e)}`);
    // Bad input the database or the core rejected is a usage error too.
    return e instanceof PgDrainError && e.code === 'invalid_argument' ? 2 : 1;
  } finally {
    await closeEarly(); // e.g. after a usage error, or --help
  }
}

// A handler's stray promise (a ctx.publish it did not await, say) must not
// end the process, and with it every other running job: one line, and on.
process.on('unhandledRejection', (reason) => {
  log(`pgdrain: a promise nobody awaited (in a handler?) failed: ${reason instanceof Error ? reason.message : String(reason)}`);
});

// A reader that went away (`pgdrain migrate --print | head`) is no error of
// the command's: the rest of its output is dropped, and it ends as it would have.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE' && error.code !== 'ERR_STREAM_DESTROYED') throw error;
});

process.exitCode = await main(process.argv);
exitWhenEnded(); // a drain has settled its jobs: do not wait for handlers that ignore their signal
