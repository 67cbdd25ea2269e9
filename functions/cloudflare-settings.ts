// The Worker's bindings (listed at the top of cloudflare.ts), read and checked
// at each invocation; an error names the binding and the rule.
import * as z from 'zod/mini';
import { postgresUrlChecks } from '../src/database-url.js';
import { checkDrainSelectionSettings, type DrainSelection } from '../src/drain-selection.js';
import { ValidationError } from '../src/errors.js';
import { SettingValueError } from '../src/http/misconfigured.js';
import { parse, queueNameSchema, topicSchema } from '../src/options.js';
import { lingerSecondsSchema, pollSecondsSchema, settingSeconds } from './fast-pickup.js';
import { oneOfSetting, secondsSetting, wholeNumberSetting, withValueGiven } from './setting-rules.js';

/** The bindings this Worker reads. */
export interface Env {
  DATABASE_URL?: string;
  HYPERDRIVE?: { connectionString: string };
  DATABASE_DRIVER?: string;
  PGDRAIN_TOKEN?: string;
  PGDRAIN_HMAC_SECRET?: string;
  DRAIN_BATCH?: string;
  DRAIN_DEADLINE_SECONDS?: string;
  DRAIN_TOPIC?: string;
  DRAIN_QUEUE?: string;
  DRAIN_FILTER?: string | object; // JSON text, or a JSON [vars] value
  DRAIN_EXCLUDE?: string | object[];
  PGDRAIN_LINGER_SECONDS?: string;
  PGDRAIN_POLL_SECONDS?: string;
  NEON_WS_PROXY?: string;
  NEON_HTTP_ENDPOINT?: string;
}

/** Cron invocations may run 15 minutes; keep a minute for the last settle. */
export const MAX_DEADLINE_SECONDS = 840;
/** The default budget: inside the default 30 s CPU limit, whatever the handlers do. */
const DEFAULT_DEADLINE_SECONDS = 25;

// Bindings are strings (or [vars] numbers): numbers are read as the CLI reads them, then checked.
const envSchema = z.object({
  DATABASE_URL: z.optional(z.string().check(...postgresUrlChecks)), // as the Lambda's
  DATABASE_DRIVER: z.optional(oneOfSetting(['hyperdrive', 'neon', 'neon-http', 'pg'])),
  DRAIN_BATCH: z._default(wholeNumberSetting(1, 1000), 50),
  DRAIN_DEADLINE_SECONDS: z._default(secondsSetting(MAX_DEADLINE_SECONDS, 'a cron invocation runs at most 15 minutes'),
    DEFAULT_DEADLINE_SECONDS),
  DRAIN_TOPIC: z.optional(topicSchema), // drain()'s rule, named after the binding
  DRAIN_QUEUE: z.optional(queueNameSchema),
  DRAIN_FILTER: z.optional(z.unknown()), // JSON text or a JSON [vars] value, checked by readSettings as drain() checks it
  DRAIN_EXCLUDE: z.optional(z.unknown()),
  PGDRAIN_LINGER_SECONDS: z.optional(settingSeconds(lingerSecondsSchema)),
  PGDRAIN_POLL_SECONDS: z.optional(settingSeconds(pollSecondsSchema)),
});

export type Settings = z.output<typeof envSchema> & { selection: DrainSelection };

// The drain's settings: one set to '' (or spaces) is a mistake to hear about, as
// for the CLI's PGDRAIN_* variables, not a default (the secrets and NEON_* take '' as unset).
const DRAIN_BINDINGS = ['DRAIN_BATCH', 'DRAIN_DEADLINE_SECONDS', 'DRAIN_TOPIC', 'DRAIN_QUEUE', 'DRAIN_FILTER',
                        'DRAIN_EXCLUDE', 'PGDRAIN_LINGER_SECONDS', 'PGDRAIN_POLL_SECONDS'] as const;

// The bindings whose value an error shows (not the secrets, nor JSON: its rule says what is wrong in it).
const SHOWN_BINDINGS = ['DATABASE_DRIVER', 'DRAIN_BATCH', 'DRAIN_DEADLINE_SECONDS', 'DRAIN_TOPIC', 'DRAIN_QUEUE',
                        'PGDRAIN_LINGER_SECONDS', 'PGDRAIN_POLL_SECONDS'];

/** The bindings, checked; an error names the binding (env.DRAIN_EXCLUDE[1]). */
export function readSettings(env: Env): Settings {
  for (const name of DRAIN_BINDINGS) {
    const value = env[name];
    if (typeof value === 'string' && value.trim() === '') {
      throw new ValidationError(`env.${name}`, 'is set but empty: give a value or unset it');
    }
  }
  let settings: z.output<typeof envSchema>;
  try {
    settings = parse(envSchema, env, 'env');
  } catch (error) {
    throw withValueGiven(error, env as Record<string, unknown>, 'env.', SHOWN_BINDINGS);
  }
  return { ...settings, selection: checkDrainSelectionSettings(settings.DRAIN_FILTER, settings.DRAIN_EXCLUDE,
                                                           { filter: 'env.DRAIN_FILTER', exclude: 'env.DRAIN_EXCLUDE' }) };
}

// The options that come from a binding, by the binding's name.
const bindingOf: Record<string, string> = {
  connectionString: 'DATABASE_URL', wsProxy: 'NEON_WS_PROXY', fetchEndpoint: 'NEON_HTTP_ENDPOINT',
  token: 'PGDRAIN_TOKEN', hmacSecret: 'PGDRAIN_HMAC_SECRET',
};

/**
 * An option's ValidationError, renamed after the binding the option came from.
 * A value it quotes (NEON_WS_PROXY's ', got "…"') stays in the log and the
 * thrown error, and out of an HTTP answer, as a bad DRAIN_* value's.
 */
export function asBindingError(error: unknown): unknown {
  if (!(error instanceof ValidationError) || !error.field || !(error.field in bindingOf)) return error;
  const field = `env.${bindingOf[error.field]}`;
  const quoted = /^(.*?), got (.*)$/s.exec(error.rule);
  return quoted ? new SettingValueError(field, quoted[1]!, quoted[2]!, { cause: error })
    : new ValidationError(field, error.rule, { cause: error });
}
