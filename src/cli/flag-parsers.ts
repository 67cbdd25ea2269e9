import type { EventEmitter } from 'node:events';
import { type Command, InvalidArgumentError } from 'commander';
import type * as z from 'zod/mini';
import { checkDrainSelection } from '../drain-selection.js';
import { decimal } from '../decimal-text.js';
import { ValidationError } from '../errors.js';
import { numbersKept, parseJson } from '../json-text.js';
import { isJobId, MAX_THROTTLE_SECONDS } from '../options.js';

// Flag parsers: each turns a flag's text into its value or throws commander's
// InvalidArgumentError, which names the flag.

export { decimal };

/** A flag's parser: a whole number from min to max. */
export function integer(min: number, max: number) {
  return (value: string) => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || n < min || n > max) {
      throw new InvalidArgumentError(`must be an integer from ${min} to ${max}`);
    }
    return n;
  };
}

export function positive(value: string) {
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1 || Number(value) > 2_147_483_647) {
    throw new InvalidArgumentError('must be a positive integer of at most 2147483647');
  }
  return Number(value);
}

/** A blank flag value, refused as a blank PGDRAIN_* is (env.ts), not as JSON of the wrong kind. */
function notBlank(value: string, what: string): void {
  if (value.trim() === '') throw new InvalidArgumentError(`is empty: give ${what}, or leave the flag out`);
}

/** A flag's text that may not be blank (--host: '' would listen on every interface); `what` says what to give. */
export function nonBlank(what: string) {
  return (value: string) => {
    notBlank(value, what);
    return value;
  };
}

/**
 * --tasks' module, drain's and serve's: a blank one names none (drain would
 * fail to import it, exit 1; serve would serve with POST /drain off).
 */
export function tasksModule(value: string): string {
  if (value.trim() === '') throw new InvalidArgumentError('is empty: give the tasks module (a path or a package name)');
  return value;
}

/** JSON object for --attributes and --filter. */
export function jsonObject(value: string): Record<string, unknown> {
  notBlank(value, 'a JSON object');
  // parseJson: a number JSON.parse would alter (past 2^53) is refused, not changed.
  const parsed = commanderRule(() => parseJson(value, '', { parserText: true }));
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new InvalidArgumentError('must be a JSON object');
  return parsed as Record<string, unknown>;
}

/**
 * JSON array of objects for drain --exclude, checked as drain() checks it:
 * one value, not a repeatable flag, so that PGDRAIN_EXCLUDE (one ConfigMap
 * string) holds the same.
 */
export function jsonObjects(value: string): Record<string, unknown>[] {
  notBlank(value, 'a JSON array of objects');
  return commanderRule(() => checkDrainSelection({ exclude: parseJson(value, 'exclude', { parserText: true }) ?? value }).exclude ?? []);
}

/** What check() returns; its ValidationError as commander's, which names the flag. */
function commanderRule<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    if (error instanceof ValidationError) throw new InvalidArgumentError(error.field ? error.message : error.rule);
    throw error;
  }
}

/** Comma-separated job ids for --depends-on and --ids. */
export function jobIds(value: string): string[] {
  const ids = value.split(',').map((s) => s.trim());
  if (!ids.every(isJobId)) throw new InvalidArgumentError('must be job ids (positive integers of at most 9223372036854775807) separated by commas');
  return ids;
}

/**
 * A flag's parser from the core's schema for it: the rule fails as the flag's
 * (or its environment variable's) error, not as the core option's.
 */
export function checkedBy(schema: z.ZodMiniType<unknown, string>) {
  return (value: string) => {
    const result = schema.safeParse(value);
    if (!result.success) throw new InvalidArgumentError(result.error.issues[0]!.message);
    return result.data;
  };
}

/**
 * An argument's or a flag's parser from the core's schema for it, whose
 * error names `field` as the core's does once connected ("pgdrain: --queue:
 * must be …, got "…"", exit 2, as a wrapped parser's): commander passes a ValidationError on. So a name the
 * SQL would refuse is refused before connecting, in the command's own words.
 */
export function namedBy(field: string, schema: z.ZodMiniType<unknown, string>) {
  return (value: string) => {
    const result = schema.safeParse(value);
    if (!result.success) throw new FlagValueError(field, result.error.issues[0]!.message, value);
    return result.data;
  };
}

/** A flag's seconds, from min to max. */
export function seconds(min: number, max: number) {
  return (value: string) => {
    const n = decimal(value);
    if (!Number.isFinite(n) || n < min || n > max) {
      throw new InvalidArgumentError(`must be a number of seconds from ${min} to ${max}`);
    }
    return n;
  };
}

/**
 * A flag's or an argument's JSON, any value, parsed once: a blank text is no
 * JSON here (parseJson would take it as no value), said in JSON.parse's words.
 */
export function json(value: string): unknown {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (error) {
    throw new InvalidArgumentError(`must be JSON (${(error as Error).message})`);
  }
  // As parseJson checks --attributes': a number JSON.parse altered (past 2^53) is refused, not changed.
  commanderRule(() => numbersKept(value, ''));
  return parsed;
}

/** A flag's seconds the core takes above 0, at most max (`span` says how long that is): no floor of its own. */
export function secondsOver0(max: number, span: string) {
  return (value: string) => {
    const n = decimal(value);
    if (!(n > 0 && n <= max)) throw new InvalidArgumentError(`must be a number of seconds greater than 0 and at most ${max} (${span})`);
    return n;
  };
}

/** --throttle's seconds, as publish's throttleSeconds takes them. */
export const throttle = secondsOver0(MAX_THROTTLE_SECONDS, '30 days');

/** A flag's or an argument's bad value, said as every other usage error: "--batch: must be …, got "0"". */
export class FlagValueError extends ValidationError {
  /** The rule alone, for a PGDRAIN_* variable that gave the value (env.ts). */
  readonly bare: string;
  constructor(field: string, bare: string, value: string) {
    super(field, `${bare}, got ${JSON.stringify(value)}`);
    this.bare = bare;
  }
}

/**
 * Every parser of cmd's flags and arguments (and its subcommands'), its
 * InvalidArgumentError (commander's "error: option '--batch <n>' argument
 * '0' is invalid. …") re-thrown as a FlagValueError naming the flag, which
 * main.ts prints as the core's and the other checks' errors:
 * "pgdrain: --batch: must be an integer from 1 to 10000, got "0"" (exit 2).
 */
export function sayFlagErrorsAlike(cmd: Command): void {
  const named = (field: () => string, parse: (value: string, previous: unknown) => unknown, choices: readonly string[] | undefined,
                 fromVariable = () => false) =>
    (value: string, previous: unknown) => {
      // A variable set but empty, said as fromEnv (env.ts) says a PGDRAIN_* one: not as a value of the wrong kind.
      if (fromVariable() && value.trim() === '') throw new ValidationError(field(), 'is set but empty: give a value or unset it');
      try {
        return parse(value, previous);
      } catch (error) {
        if (!(error instanceof InvalidArgumentError)) throw error;
        throw new FlagValueError(field(), choices ? `must be one of ${choices.join(', ')}` : error.message, value);
      }
    };
  for (const option of cmd.options) {
    if (!option.parseArg) continue;
    // An option's own variable (.env(): serve's PORT) is parsed after the command line, on this event: name the variable.
    let fromVariable = false;
    if (option.envVar) (cmd as Command & EventEmitter).prependListener(`optionEnv:${option.name()}`, () => { fromVariable = true; });
    const field = () => (fromVariable ? option.envVar! : option.long ?? option.name());
    option.parseArg = named(field, option.parseArg, option.argChoices, () => fromVariable) as typeof option.parseArg;
  }
  for (const argument of cmd.registeredArguments) {
    if (argument.parseArg) argument.parseArg = named(() => argument.name(), argument.parseArg, argument.argChoices) as typeof argument.parseArg;
  }
  for (const sub of cmd.commands) sayFlagErrorsAlike(sub);
}
