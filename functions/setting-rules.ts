// The adapters' settings (a Worker's bindings, a Lambda's environment
// variables) read as the CLI reads its flags (src/cli/flag-parsers.ts): a
// number is decimal text ('0x10', '1e3', 'Infinity' are refused), and a bad
// one is refused with its rule in the project's words and the value given
// (withValueGiven), never a secret's: as `pgdrain drain` says a bad
// PGDRAIN_* variable (src/cli/env.ts), 'must be an integer from 1 to 10000, got "lots"'.
// The value is in the log and a failed scheduled drain; an HTTP answer gives the rule alone.
import * as z from 'zod/mini';
import { decimal } from '../src/decimal-text.js';
import { ValidationError } from '../src/errors.js';
import { SettingValueError } from '../src/http/misconfigured.js';

/** An integer from min to max: the text of one ('50', ' 50 '), or a JSON number ([vars] DRAIN_BATCH = 50). */
export function wholeNumberSetting(min: number, max: number) {
  const rule = `must be an integer from ${min} to ${max}`;
  return z.pipe(
    z.transform((v: unknown) => (typeof v === 'number' ? v : typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v) : NaN)),
    z.number({ error: rule }).check(z.refine((n) => Number.isInteger(n), rule), z.minimum(min, rule), z.maximum(max, rule)));
}

/** A number of seconds greater than 0 and at most max (why: what bounds it), as decimal text or a JSON number. */
export function secondsSetting(max: number, why: string) {
  const rule = `must be a number of seconds greater than 0 and at most ${max} (${why})`;
  return z.pipe(
    z.transform((v: unknown) => (typeof v === 'number' ? v
      : typeof v === 'string' ? decimal(v) : NaN)),
    z.number({ error: rule }).check(z.gt(0, rule), z.maximum(max, rule)));
}

/** One of values, named in the rule. */
export function oneOfSetting<const T extends readonly [string, ...string[]]>(values: T) {
  const rule = `must be ${values.slice(0, -1).join(', ')} or ${values.at(-1)}`;
  return z.enum(values, { error: rule });
}

/**
 * error (a ValidationError naming a setting: prefix + its name, or an entry of
 * it, env.DRAIN_EXCLUDE[1]) with the value given appended, as `, got "lots"`:
 * only for a setting of names (not a secret, nor JSON, whose rule says what is wrong in it).
 */
export function withValueGiven(error: unknown, env: Record<string, unknown>, prefix: string, names: readonly string[]): unknown {
  if (!(error instanceof ValidationError) || !error.field?.startsWith(prefix)) return error;
  const name = error.field.slice(prefix.length);
  const value = env[name];
  if (!names.includes(name) || (typeof value !== 'string' && typeof value !== 'number')) return error;
  return new SettingValueError(error.field, error.rule, JSON.stringify(value), { cause: error.cause });
}
