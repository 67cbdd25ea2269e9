// The Lambda function's settings: its environment variables (listed at the
// top of lambda.ts), read and checked at the first invocation. An error names
// the variable and the rule.
import * as z from 'zod/mini';
import { checkDrainSelectionSettings, type DrainSelection } from '../src/drain-selection.js';
import { parse, queueNameSchema, topicSchema } from '../src/options.js';
import { lingerSecondsSchema, pollSecondsSchema, settingSeconds } from './fast-pickup.js';

export type Env = Record<string, string | undefined>;

const count = (min: number, max: number) => z.pipe(
  z.pipe(z.string().check(z.regex(/^\d+$/, 'must be a whole number')), z.transform(Number)),
  z.number().check(z.minimum(min, `must be at least ${min}`), z.maximum(max, `must be at most ${max}`)));
const secret = () => z.optional(z.string().check(z.minLength(16, 'must be at least 16 characters')));

const settingsSchema = z.object({
  DATABASE_URL: z.string({ error: "is required: the PostgreSQL URL (set it in the function's environment)" })
    .check(z.regex(/^postgres(ql)?:\/\//i, 'must be a postgres:// URL')), // a URL's scheme is case-insensitive, as pg reads it
  PGDRAIN_TOKEN: secret(),
  PGDRAIN_HMAC_SECRET: secret(),
  PGDRAIN_BATCH_SIZE: z._default(count(1, 10_000), 100),
  PGDRAIN_TOPIC: z.optional(topicSchema), // drain()'s rule: blank is refused here, named, not later as options.topic
  PGDRAIN_QUEUE: z.optional(queueNameSchema),
  PGDRAIN_FILTER: z.optional(z.string()), // JSON text, checked by readSettings as drain() checks it
  PGDRAIN_EXCLUDE: z.optional(z.string()),
  PGDRAIN_LINGER_SECONDS: z.optional(settingSeconds(lingerSecondsSchema)),
  PGDRAIN_POLL_SECONDS: z.optional(settingSeconds(pollSecondsSchema)),
  PGDRAIN_SAFETY_MARGIN_MS: z._default(count(0, 60_000), 1000),
  PGDRAIN_POOL_MAX: z._default(count(1, 100), 2),
  PGDRAIN_MAX_BUDGET_SECONDS: z.optional(count(1, 900)),
  // REST APIs may have theirs raised past 29 s (a quota request); HTTP APIs stop at 30.
  PGDRAIN_API_GATEWAY_TIMEOUT_SECONDS: z._default(count(1, 900), 29),
});
export type Settings = z.output<typeof settingsSchema> & { selection: DrainSelection };

export function readSettings(env: Env): Settings {
  // An empty variable counts as unset.
  const given = Object.fromEntries(Object.keys(settingsSchema.shape).map((k) => [k, env[k] || undefined]));
  const settings = parse(settingsSchema, given, '');
  return { ...settings, selection: checkDrainSelectionSettings(settings.PGDRAIN_FILTER, settings.PGDRAIN_EXCLUDE,
                                                           { filter: 'PGDRAIN_FILTER', exclude: 'PGDRAIN_EXCLUDE' }) };
}
