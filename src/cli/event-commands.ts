import { Command, Option } from 'commander';
import { checkPublishEvent, EVENT_TAKES_NO, eventNameSchema, listSubscriptions, publishEvent, subscribe, unsubscribe } from '../admin.js';
import { PgDrainError, ValidationError } from '../errors.js';
import { isoDateTimeSchema, MAX_DELAY_SECONDS, queueNameSchema, taskSchema } from '../options.js';
import { namedAs } from './error-line.js';
import { addGroupOptions, dsnOption, groupOf, type WithConnection } from './features.js';
import { checkedBy, integer, json, jsonObject, seconds } from './flag-parsers.js';
import { formatTable } from './format.js';
import type * as z from 'zod/mini';
import type { PublishEventOptions, PublishOptions } from '../types.js';

// `pgdrain event subscribe | unsubscribe | list | publish`: fan-out
// (sql/0033_fanout.sql, src/admin.ts). main.ts registers them. Bad input
// exits 2: arguments and flags are checked before connecting, and the
// core's "options.task: …" is told as "--task: …" by main.ts.

/** `pgdrain publish`'s flags for the job's own retry policy, bounded as `queue create`'s (main.ts adds them). */
export function addRetryPolicyOptions(cmd: Command): Command {
  return cmd
    .option('--retry-delay <seconds>', "base wait of this job's retries (default: its queue's policy, else the global backoff)",
      seconds(0, 86400))
    .addOption(new Option('--retry-backoff <kind>', 'exponential: the wait doubles per retry, with jitter; '
      + 'fixed: every retry waits --retry-delay').choices(['exponential', 'fixed']))
    .option('--retry-delay-max <seconds>', 'longest retry wait (default an hour), at least --retry-delay (5 when that is left out)', seconds(1, 604800));
}

/** Those flags as publish()'s options (any given: the job has a policy of its own). */
export function retryPolicyOf(opts: { retryDelay?: number; retryBackoff?: string; retryDelayMax?: number }):
  Pick<PublishOptions, 'retryDelaySeconds' | 'retryBackoff' | 'retryDelayMaxSeconds'> {
  return { retryDelaySeconds: opts.retryDelay, retryDelayMaxSeconds: opts.retryDelayMax,
           retryBackoff: opts.retryBackoff === undefined ? undefined : opts.retryBackoff === 'exponential' };
}

/** `pgdrain publish`'s expiry flags (main.ts adds them): not started by then, the job ends as a failure. */
export function addExpiryOptions(cmd: Command): Command {
  return cmd
    .option('--expires-in <seconds>', "never start it later than this many seconds after its run time (default: its queue's, else never)",
      seconds(0.001, MAX_DELAY_SECONDS))
    .option('--expires-at <iso>', 'never start it after this time (ISO 8601; after its run time)', checkedBy(isoDateTimeSchema));
}

/** Those flags as publish()'s options. */
export function expiryOf(opts: { expiresIn?: number; expiresAt?: Date }): Pick<PublishOptions, 'expiresAt' | 'expiresInSeconds'> {
  if (opts.expiresIn !== undefined && opts.expiresAt) {
    throw new ValidationError('--expires-in', 'give --expires-in or --expires-at, not both');
  }
  return { expiresInSeconds: opts.expiresIn, expiresAt: opts.expiresAt };
}

// `pgdrain publish`'s flags an event takes none of, each with the option of
// publishEvent it stands for: taken to be refused saying why (EVENT_TAKES_NO,
// as publishEvent and POST /events refuse them), not as unknown options.
const REFUSED_FLAGS = [
  ['--dedupe-key <key>', 'dedupeKey', 'refused: a dedupe key is global, not per queue, so one key would make the fan-out one job; '
    + 'publish into each subscribed queue instead, each with a key of its own (pgdrain publish --queue Q --dedupe-key K)'],
  ['--dedupe-mode <mode>', 'dedupeMode', 'refused: it goes with --dedupe-key, which an event takes none of'],
  ['--throttle <seconds>', 'throttleSeconds', 'refused: it goes with --dedupe-key, which an event takes none of'],
  ['--queue <name>', 'queue', "refused: the event's subscriptions name its queues (pgdrain event subscribe EVENT QUEUE)"],
] as const;

function addRefusedFlags(cmd: Command): Command {
  for (const [flags, , help] of REFUSED_FLAGS) cmd.option(flags, help);
  return cmd;
}

/** Throws a ValidationError naming the first of those flags given, saying why an event takes none. */
function refuseFlags(opts: object): void {
  for (const [flags, option] of REFUSED_FLAGS) {
    const flag = new Option(flags);
    if ((opts as Record<string, unknown>)[flag.attributeName()] !== undefined) {
      throw new ValidationError(flag.long!, `an event takes none: ${EVENT_TAKES_NO[option]}`);
    }
  }
}

/** An <event> or <queue> argument, checked as its flag would be. */
function argument(schema: z.ZodMiniType<unknown, string>, field: string, value: string): string {
  const result = schema.safeParse(value);
  if (!result.success) throw new PgDrainError('invalid_argument', `${field}: ${result.error.issues[0]!.message}, got ${JSON.stringify(value)}`, { field });
  return value;
}

export function eventCommand(withConnection: WithConnection): Command {
  const cmd = new Command('event').description('fan-out: queues subscribe to an event; publishing it adds one job to each');

  cmd.command('subscribe')
    .description('subscribe a queue to an event: each publish of the event adds a job of --task (default: the event) '
      + 'to the queue; again, it changes the task. Prints subscribed, updated (--task changed it) or unchanged')
    .argument('<event>', 'dotted event name, e.g. user.created')
    .argument('<queue>', "a queue made with 'pgdrain queue create'")
    .option('--task <task>', "the task of the queue's jobs for the event (default: the event's name)", checkedBy(taskSchema))
    .addOption(dsnOption())
    .action(async (event: string, queue: string, opts: { task?: string; dsn?: string }) => {
      argument(eventNameSchema, 'event', event);
      argument(queueNameSchema, 'queue', queue);
      await withConnection(opts.dsn, async ({ driver }) => {
        // subscribe answers only whether it is new: an existing one changed when --task names another
        // task than it had (read first; an admin changing it meanwhile could make the word wrong, not the row).
        const before = opts.task === undefined ? undefined
          : (await listSubscriptions(driver, event)).find((s) => s.queue === queue)?.task;
        const added = await subscribe(driver, event, queue, { task: opts.task });
        process.stdout.write(`${added ? 'subscribed' : opts.task !== undefined && opts.task !== before ? 'updated' : 'unchanged'}\n`);
      });
    });

  cmd.command('unsubscribe')
    .description("end a queue's subscription to an event (jobs already published stay). Prints unsubscribed")
    .argument('<event>')
    .argument('<queue>')
    .addOption(dsnOption())
    .action(async (event: string, queue: string, opts: { dsn?: string }) => {
      argument(eventNameSchema, 'event', event);
      argument(queueNameSchema, 'queue', queue);
      await withConnection(opts.dsn, async ({ driver }) => {
        if (!(await unsubscribe(driver, event, queue))) {
          throw new PgDrainError('invalid_argument', `queue: '${queue}' is not subscribed to '${event}'`, { field: 'queue' });
        }
        process.stdout.write('unsubscribed\n');
      });
    });

  cmd.command('list')
    .description('list the subscriptions (of one event, when given)')
    .argument('[event]')
    .option('--json', 'print rows as JSON')
    .addOption(dsnOption())
    .action(async (event: string | undefined, opts: { json?: boolean; dsn?: string }) => {
      if (event !== undefined) argument(eventNameSchema, 'event', event);
      await withConnection(opts.dsn, async ({ driver }) => {
        const list = await listSubscriptions(driver, event);
        if (opts.json) process.stdout.write(`${JSON.stringify(list)}\n`);
        else process.stdout.write(`${list.length ? formatTable(list.map((s) => ({ ...s })), ['event', 'queue', 'task']) : 'no subscriptions'}\n`);
      });
    });

  // The job's own retry policy, expiry and group as `pgdrain publish` takes them; left out, each queue's (no group).
  addRefusedFlags(addGroupOptions(addExpiryOptions(addRetryPolicyOptions(cmd.command('publish')
    .description('publish an event: one job per subscribed queue, all or none (a full queue refuses it); '
      + 'prints their ids, one a line (none when no queue subscribes)')
    .argument('<event>')
    .argument('[json]', 'the body of every job, as JSON', json)
    .option('--priority <n>', "greater runs first (default: each queue's, else 0)", integer(-1_000_000, 1_000_000))
    .option('--delay <seconds>', 'run this many seconds from now', seconds(0, MAX_DELAY_SECONDS))
    .option('--at <iso>', 'run at this time (ISO 8601)', checkedBy(isoDateTimeSchema))
    // As `pgdrain publish` takes them; left out, each queue's default.
    .option('--timeout <seconds>', "seconds a run may take (default: each queue's, else 60)", seconds(0.001, 86400))
    .option('--max-retries <n>', "retries after the first attempt (default: each queue's, else 3)", integer(0, 1000))
    .option('--attributes <json>', 'a JSON object drains can filter on', jsonObject)))))
    .addOption(dsnOption())
    .action(async (event: string, body: unknown, opts: { priority?: number; delay?: number; at?: Date; timeout?: number;
                                                         maxRetries?: number; attributes?: Record<string, never>;
                                                         retryDelay?: number; retryBackoff?: string; retryDelayMax?: number;
                                                         expiresIn?: number; expiresAt?: Date; group?: string;
                                                         groupTier?: string; dsn?: string }) => {
      argument(eventNameSchema, 'event', event);
      refuseFlags(opts);
      if (opts.delay !== undefined && opts.at) throw new ValidationError('--delay', 'give --delay or --at, not both');
      const group = groupOf(opts);
      const expiry = expiryOf(opts);
      const options: PublishEventOptions = {
        priority: opts.priority, delaySeconds: opts.delay, runAt: opts.at, attributes: opts.attributes,
        timeoutSeconds: opts.timeout, maxRetries: opts.maxRetries, ...retryPolicyOf(opts), ...expiry, group };
      // Before connecting: publishEvent()'s rules (--retry-delay-max under --retry-delay, the body's JSON) exit 2 with the server down too.
      namedAs('body', 'json', () => checkPublishEvent(event, body, options));
      await withConnection(opts.dsn, async ({ driver }) => {
        const ids = await publishEvent(driver, event, body, options);
        process.stdout.write(ids.map((id) => `${id}\n`).join(''));
      });
    });

  return cmd;
}
