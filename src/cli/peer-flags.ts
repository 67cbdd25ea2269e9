import type { Command, ErrorOptions } from 'commander';

// A flag spelt as pg-boss's option or graphile-worker's CLI flag (--retry-limit,
// --poll-interval, --jobs): commander's "unknown option" names it, and says
// which of the command's flags does its work, as the TS calls' hints do
// (src/peer-options.ts). Without it, publish's `--retry-limit 2` after the task
// was told to go after `--`, as a dashed name would (dashed-arguments.ts).

const PUBLISH: Readonly<Record<string, string>> = {
  '--retry-limit': "pg-boss's retryLimit is --max-retries, the same count",
  '--max-attempts': "graphile-worker's maxAttempts is --max-retries, one less",
  '--start-after': "pg-boss's startAfter is --at (ISO 8601) or --delay (seconds)",
  '--run-at': "graphile-worker's runAt is --at (ISO 8601)",
  '--singleton-key': "pg-boss's singletonKey is --dedupe-key",
  '--singleton-seconds': "pg-boss's singletonSeconds is --throttle, with --dedupe-key",
  '--job-key': "graphile-worker's jobKey is --dedupe-key with --dedupe-mode replace",
  '--job-key-mode': "graphile-worker's jobKeyMode is --dedupe-mode",
  '--queue-name': "graphile-worker's queueName is --serial-key",
  '--expire-in-seconds': "pg-boss's expireInSeconds is --timeout",
  '--retention-seconds': "pg-boss's retentionSeconds is --expires-in",
  '--flags': "graphile-worker's flags are --attributes '{\"flag\":true}'",
};

const DRAIN: Readonly<Record<string, string>> = {
  '--poll-interval': "graphile-worker's --poll-interval (milliseconds) is --poll, in seconds, with --linger to wait on an empty queue",
  '--jobs': "graphile-worker's --jobs is --concurrency",
  '-j': "graphile-worker's -j is --concurrency",
  '--once': "graphile-worker's --once: none needed, a drain returns once the queue is empty (unless --linger)",
  '--connection': "graphile-worker's --connection is --dsn",
  '-c': "graphile-worker's -c is --dsn",
  '--crontab': "graphile-worker's --crontab is pgdrain schedule add",
  '--schema': "graphile-worker's --schema: none, pgdrain's is always jobs",
  '--batch-size': "pg-boss's batchSize is --batch",
  '--local-concurrency': "pg-boss's localConcurrency is --concurrency",
};

/** Each command's table, by its words after pgdrain. */
const TABLES: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  publish: PUBLISH,
  drain: DRAIN,
  'schedule add': { '--retry-limit': PUBLISH['--retry-limit']!, '--max-attempts': PUBLISH['--max-attempts']!,
    '--singleton-key': PUBLISH['--singleton-key']!, '--queue-name': "graphile-worker's crontab queue is --serial-key",
    '--job-key': PUBLISH['--job-key']!, '--job-key-mode': PUBLISH['--job-key-mode']!,
    '--expire-in-seconds': PUBLISH['--expire-in-seconds']! },
  'queue create': { '--retry-limit': PUBLISH['--retry-limit']!, '--expire-in-seconds': PUBLISH['--expire-in-seconds']!,
    '--retention-seconds': PUBLISH['--retention-seconds']!,
    '--policy': "pg-boss's policy singleton is --max-running 1; short, stately and exclusive are publish's --dedupe-key and --dedupe-mode" },
};

/** cmd's words after the program's: `schedule add`. */
function path(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** In cmd and every command under it with a table: a peer's flag, refused, says which flag does its work. */
export function explainPeerFlags(cmd: Command): void {
  for (const sub of cmd.commands) explainPeerFlags(sub);
  const table = TABLES[path(cmd)];
  if (!table) return;
  const error = cmd.error.bind(cmd);
  cmd.error = (message: string, options?: ErrorOptions) => {
    // Its first line: commander's "(Did you mean --poll?)" after it gives way to the hint.
    const [line, flag] = /^error: unknown option '([^=']*)(?:=[^']*)?'/.exec(message) ?? [];
    // A short flag with its value attached, as graphile's yargs takes it (-j4): the flag is its first two characters.
    const key = flag !== undefined && !Object.hasOwn(table, flag) && /^-[^-]/.test(flag) ? flag.slice(0, 2) : flag;
    const said = options?.code === 'commander.unknownOption' && key !== undefined && Object.hasOwn(table, key) ? table[key] : undefined;
    return error(said === undefined ? message : `${line} (${said})`, options);
  };
}
