// `pgdrain drain` as a container entrypoint: every flag of the drain command
// has an environment variable that stands in when the flag is absent, so a
// Kubernetes Job sets them from a ConfigMap (DATABASE_URL is read by connect.ts).
import { InvalidArgumentError, type Command, type Option } from 'commander';
import { ValidationError } from '../errors.js';
import { FlagValueError } from './flag-parsers.js';

/** Drain flags and the environment variables that stand in for them. A flag given on the command line wins. */
export const DRAIN_ENV: readonly (readonly [flag: string, variable: string])[] = [
  ['--tasks', 'PGDRAIN_TASKS'],
  ['--batch', 'PGDRAIN_BATCH_SIZE'],
  ['--deadline', 'PGDRAIN_DEADLINE_SECONDS'],
  ['--topic', 'PGDRAIN_TOPIC'],
  ['--concurrency', 'PGDRAIN_CONCURRENCY'],
  ['--grace', 'PGDRAIN_GRACE_SECONDS'],
  ['--overrun', 'PGDRAIN_OVERRUN_SECONDS'],
  ['--linger', 'PGDRAIN_LINGER_SECONDS'],
  ['--poll', 'PGDRAIN_POLL_SECONDS'],
  ['--queue', 'PGDRAIN_QUEUE'],
  ['--filter', 'PGDRAIN_FILTER'],
  ['--exclude', 'PGDRAIN_EXCLUDE'],
  ['--worker-id', 'PGDRAIN_WORKER_ID'],
];

/** The help text that lists DRAIN_ENV. */
export const DRAIN_ENV_HELP = [
  '',
  'Environment (used when the flag is absent; DATABASE_URL when --dsn is absent):',
  ...DRAIN_ENV.map(([flag, variable]) => `  ${variable.padEnd(26)} ${flag}`),
  '',
  'Exit codes: 0 drained, deadline reached or stopped by a signal (jobs that failed',
  'are in the report, not the exit code); 1 infrastructure (database unavailable,',
  'tasks module cannot load); 2 configuration (bad flag or environment variable).',
].join('\n');

/**
 * The drain command's options after filling absent flags from `env`. Each
 * value goes through the flag's own parser, so a variable obeys the flag's
 * rule; a bad or empty value is a ValidationError naming the variable.
 */
export function drainSettings<T extends object>(cmd: Command, env: Record<string, string | undefined> = process.env): T {
  for (const [flag, variable] of DRAIN_ENV) {
    const option = cmd.options.find((o) => o.long === flag);
    if (!option) throw new Error(`the drain command has no ${flag} option`); // a wiring bug, not user input
    fromEnv(cmd, option, variable, env);
  }
  const opts = cmd.opts<{ tasks?: string }>();
  if (!opts.tasks) throw new ValidationError('--tasks', 'is required: give --tasks MODULE or set PGDRAIN_TASKS');
  return opts as T;
}


/**
 * Sets cmd's option from `variable` when the flag was not given on the
 * command line, through the flag's own parser: a bad or empty value is a
 * ValidationError naming the variable.
 */
export function fromEnv(cmd: Command, option: Option, variable: string,
                        env: Record<string, string | undefined> = process.env): void {
  const name = option.attributeName();
  const raw = env[variable];
  if (raw === undefined || cmd.getOptionValueSource(name) === 'cli') return;
  if (raw.trim() === '') throw new ValidationError(variable, 'is set but empty: give a value or unset it');
  let value: unknown = raw;
  try {
    if (option.parseArg) value = option.parseArg(raw, undefined);
  } catch (error) {
    if (!(error instanceof InvalidArgumentError) && !(error instanceof FlagValueError)) throw error;
    throw new ValidationError(variable, `${error instanceof FlagValueError ? error.bare : error.message}, got ${JSON.stringify(raw)}`);
  }
  cmd.setOptionValueWithSource(name, value, 'env');
}
