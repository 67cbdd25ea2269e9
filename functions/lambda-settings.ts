// The Lambda function's settings: its environment variables (listed at the
// top of lambda.ts), read and checked at the first invocation. An error names
// the variable and the rule.
import * as z from 'zod/mini';
import { postgresUrlChecks } from '../src/database-url.js';
import { checkDrainSelectionSettings, type DrainSelection } from '../src/drain-selection.js';
import { parse, queueNameSchema, topicSchema } from '../src/options.js';
import { lingerSecondsSchema, pollSecondsSchema, settingSeconds } from './fast-pickup.js';
import { wholeNumberSetting, withValueGiven } from './setting-rules.js';

export type Env = Record<string, string | undefined>;

const settingsSchema = z.object({
  DATABASE_URL: z.string({ error: "is required: the PostgreSQL URL (set it in the function's environment)" })
    .check(...postgresUrlChecks),
  // Checked as createApp checks them, for HTTP events only (credentialSettingsError): scheduled drains run without.
  PGDRAIN_TOKEN: z.optional(z.string()),
  PGDRAIN_HMAC_SECRET: z.optional(z.string()),
  PGDRAIN_BATCH_SIZE: z._default(wholeNumberSetting(1, 10_000), 100),
  PGDRAIN_TOPIC: z.optional(topicSchema), // drain()'s rule: blank is refused here, named, not later as options.topic
  PGDRAIN_QUEUE: z.optional(queueNameSchema),
  PGDRAIN_FILTER: z.optional(z.string()), // JSON text, checked by readSettings as drain() checks it
  PGDRAIN_EXCLUDE: z.optional(z.string()),
  PGDRAIN_LINGER_SECONDS: z.optional(settingSeconds(lingerSecondsSchema)),
  PGDRAIN_POLL_SECONDS: z.optional(settingSeconds(pollSecondsSchema)),
  PGDRAIN_SAFETY_MARGIN_MS: z._default(wholeNumberSetting(0, 60_000), 1000),
  PGDRAIN_POOL_MAX: z._default(wholeNumberSetting(1, 100), 2),
  PGDRAIN_MAX_BUDGET_SECONDS: z.optional(wholeNumberSetting(1, 900)),
  // REST APIs may have theirs raised past 29 s (a quota request); HTTP APIs stop at 30.
  PGDRAIN_API_GATEWAY_TIMEOUT_SECONDS: z._default(wholeNumberSetting(1, 900), 29),
});
export type Settings = z.output<typeof settingsSchema> & { selection: DrainSelection };

// The variables whose value an error shows (not DATABASE_URL or the secrets, nor JSON: its rule says what is wrong in it).
const SHOWN = ['PGDRAIN_BATCH_SIZE', 'PGDRAIN_TOPIC', 'PGDRAIN_QUEUE', 'PGDRAIN_LINGER_SECONDS', 'PGDRAIN_POLL_SECONDS',
               'PGDRAIN_SAFETY_MARGIN_MS', 'PGDRAIN_POOL_MAX', 'PGDRAIN_MAX_BUDGET_SECONDS', 'PGDRAIN_API_GATEWAY_TIMEOUT_SECONDS'];

export function readSettings(env: Env): Settings {
  // An empty variable counts as unset (a template's optional secret: deploy/lambda/template.yaml).
  const given = Object.fromEntries(Object.keys(settingsSchema.shape).map((k) => [k, env[k] || undefined]));
  let settings: z.output<typeof settingsSchema>;
  try {
    settings = parse(settingsSchema, given, '');
  } catch (error) {
    throw withValueGiven(error, given, '', SHOWN);
  }
  return { ...settings, selection: checkDrainSelectionSettings(settings.PGDRAIN_FILTER, settings.PGDRAIN_EXCLUDE,
                                                           { filter: 'PGDRAIN_FILTER', exclude: 'PGDRAIN_EXCLUDE' }) };
}
