import * as z from 'zod/mini';
import { abortSignalSchema, attributesSchema, integerCheck, fitsChars, isBlank, jobIdSchema, keySchema, MAX_DELAY_SECONDS, MAX_THROTTLE_SECONDS, queueNameSchema,
  textSchema, unstorableText, validDateSchema } from './options.js';

// The options a job is published or changed with (publish, publishBulk,
// reschedule, a named queue's job defaults, redrive, waitFor), mirroring the
// SQL checks: a bad call fails before any round trip, naming the field and the rule.

/** A job's group id or tier (publish's group, the CLI's --group and --group-tier), as jobs.check_group (PD019). */
export const groupTextSchema = textSchema(200, 'must be a non-empty text of at most 200 characters, not only whitespace', true);

// Numbers are finite in zod 4 (classic's .finite() did nothing).
const bulkOptions = {
  runAt: z.optional(validDateSchema),
  delaySeconds: z.optional(z.number().check(z.minimum(0, 'must be 0 or more'),
    z.maximum(MAX_DELAY_SECONDS, `must be at most ${MAX_DELAY_SECONDS} (ten years)`))),
  timeoutSeconds: z.optional(z.number().check(z.minimum(0.001, 'must be at least 0.001 (a millisecond)'), z.maximum(86400, 'must be at most 86400 seconds'))),
  priority: z.optional(z.number().check(integerCheck, z.minimum(-1_000_000, 'must be at least -1000000'), z.maximum(1_000_000, 'must be at most 1000000'))),
  maxRetries: z.optional(z.number().check(integerCheck, z.minimum(0, 'must be 0 or more'), z.maximum(1000, 'must be at most 1000'))),
  expiresAt: z.optional(validDateSchema),
  // As the CLI's --expires-in: less than a millisecond would land on the scheduled time itself.
  expiresInSeconds: z.optional(z.number().check(z.minimum(0.001, 'must be at least 0.001 (a millisecond)'),
    z.maximum(MAX_DELAY_SECONDS, `must be at most ${MAX_DELAY_SECONDS} (ten years)`))),
  // Checked as the queue option is; that it exists and makes no loop, by the database (PD009).
  deadLetter: z.optional(queueNameSchema),
  group: z.optional(z.strictObject({
    id: groupTextSchema,
    tier: z.optional(groupTextSchema),
  }, { error: 'must be an object { id, tier? }' })),
};

/** A retry policy's options, a queue's (queues.create) or a job's own (publish), as jobs.check_retry_policy. */
export const retryPolicyOptions = {
  retryDelaySeconds: z.optional(z.number().check(z.minimum(0, 'must be 0 or more'),
    z.maximum(86400, 'must be at most 86400 seconds'))),
  retryBackoff: z.optional(z.boolean('must be a boolean (true: exponential, false: fixed)')),
  retryDelayMaxSeconds: z.optional(z.number().check(z.minimum(1, 'must be at least 1'),
    z.maximum(604800, 'must be at most 604800 seconds (7 days)'))),
};

/** A job's own policy: the cap at least its base (left out: 5 s), as the database checks it. */
export const capOverBase = z.superRefine((o: { retryDelaySeconds?: number | undefined; retryDelayMaxSeconds?: number | undefined }, ctx) => {
  const base = o.retryDelaySeconds ?? 5;
  if (o.retryDelayMaxSeconds !== undefined && o.retryDelayMaxSeconds < base) {
    ctx.addIssue({ code: 'custom', path: ['retryDelayMaxSeconds'], input: o.retryDelayMaxSeconds,
      message: `must be at least the retry delay (${base} seconds), got ${o.retryDelayMaxSeconds}` });
  }
});
const runAtOrDelay = {
  message: 'give runAt or delaySeconds, not both', path: ['delaySeconds'],
};

/** An expiry: expiresAt or expiresInSeconds (after the scheduled time), and after runAt, as jobs.check_expiry. */
export const expiryChecks = [
  z.refine<{ expiresAt?: Date | undefined; expiresInSeconds?: number | undefined }>((o) =>
    o.expiresAt === undefined || o.expiresInSeconds === undefined,
  { message: 'give expiresAt or expiresInSeconds, not both', path: ['expiresInSeconds'] }),
  z.superRefine((o: { runAt?: Date | undefined; expiresAt?: Date | undefined }, ctx) => {
    if (o.runAt !== undefined && o.expiresAt !== undefined && o.expiresAt.getTime() <= o.runAt.getTime()) {
      ctx.addIssue({ code: 'custom', path: ['expiresAt'], input: o.expiresAt,
        message: `must be after runAt (${o.runAt.toISOString()}), got ${o.expiresAt.toISOString()}: it would expire before it could run` });
    }
  }),
] as const;

const needsDedupeKey = { message: 'needs a dedupe key (the key whose job it keeps)', path: ['dedupeMode'] };

/** Every dedupe mode publish takes (docs/job-keys.md: Dedupe key). */
export const DEDUPE_MODES = ['keep', 'keep_waiting', 'replace', 'replace_keep_time'] as const;

/** A publishBulk job's options: publish's per-job ones but the replace modes and dependsOn (docs/job-keys.md: Dedupe key). */
export const bulkPublishOptionsSchema = z.strictObject({
  ...bulkOptions,
  ...retryPolicyOptions,
  dedupeKey: z.optional(keySchema),
  dedupeMode: z.optional(z.enum(['keep', 'keep_waiting'], "must be 'keep' or 'keep_waiting' in a bulk publish (not 'replace' "
    + "nor 'replace_keep_time'): a replace rewrites a waiting job under its key's lock, one job at a time (publish)")),
  serialKey: z.optional(keySchema),
  attributes: z.optional(attributesSchema),
  dependsOn: z.optional(z.never({ error: 'a bulk publish takes none: each dependency is locked and checked '
    + 'per job; publish a job with dependencies one at a time (publish)' })),
  throttleSeconds: z.optional(z.never({ error: 'a bulk publish takes none: a throttle window is locked and '
    + 'opened per key, one job at a time; publish throttled jobs one at a time (publish)' })),
}).check(z.refine((o) => o.runAt === undefined || o.delaySeconds === undefined, runAtOrDelay),
  z.refine((o) => o.dedupeMode === undefined || o.dedupeKey !== undefined, needsDedupeKey), capOverBase, ...expiryChecks);

/** The modes that rewrite a waiting job ('replace_keep_time' keeping its run time): each refuses what replace refuses. */
const replaces = (mode: string | undefined) => mode === 'replace' || mode === 'replace_keep_time';

export const publishOptionsSchema = z.strictObject({
  ...bulkOptions,
  ...retryPolicyOptions,
  queue: z.optional(queueNameSchema),
  dedupeKey: z.optional(keySchema),
  dedupeMode: z.optional(z.enum(DEDUPE_MODES, "must be 'keep', 'keep_waiting', 'replace' or 'replace_keep_time'")),
  serialKey: z.optional(keySchema),
  dependsOn: z.optional(z.array(jobIdSchema).check(z.maxLength(1000, 'must list at most 1000 jobs'))),
  attributes: z.optional(attributesSchema),
  throttleSeconds: z.optional(z.number().check(z.gt(0, 'must be greater than 0'),
    z.maximum(MAX_THROTTLE_SECONDS, `must be at most ${MAX_THROTTLE_SECONDS} seconds (30 days)`))),
}).check(z.refine((o) => o.runAt === undefined || o.delaySeconds === undefined, runAtOrDelay),
  z.refine((o) => o.dedupeMode === undefined || o.dedupeKey !== undefined, {
    message: 'needs a dedupe key (the key whose job it keeps or replaces)', path: ['dedupeMode'] }),
  z.refine((o) => o.throttleSeconds === undefined || o.dedupeKey !== undefined, {
    message: 'needs a dedupe key (the key it throttles)', path: ['throttleSeconds'] }),
  z.superRefine((o, ctx) => {
    if (o.dedupeMode === 'keep_waiting' && o.throttleSeconds !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['throttleSeconds'], input: o.throttleSeconds, message: "cannot be given with dedupeMode "
        + "'keep_waiting' (a throttle window answers with its job even while it runs or once it ended; keep_waiting lets a running job go)" });
    }
    if (!replaces(o.dedupeMode)) return;
    if (o.throttleSeconds !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['throttleSeconds'], input: o.throttleSeconds, message: `cannot be given with dedupeMode `
        + `'${o.dedupeMode}' (a throttle keeps the first job of its window, a replace the latest)` });
    }
    if (o.dependsOn !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['dependsOn'], input: o.dependsOn,
        message: `cannot be given with dedupeMode '${o.dedupeMode}' (a replaced job keeps its dependencies)` });
    }
  }),
  capOverBase, ...expiryChecks);

/** queues.create's options: the bound, the defaults checked as a publish's own, the dead-letter queue; null clears one. */
export const namedQueueOptionsSchema = z.strictObject({
  maxSize: z.optional(z.nullable(z.number().check(z.refine((n) => Number.isInteger(n) && n >= 1 && n <= 100_000_000,
    'must be an integer between 1 and 100000000')))),
  timeoutSeconds: z.optional(z.nullable(bulkOptions.timeoutSeconds.def.innerType)),
  priority: z.optional(z.nullable(bulkOptions.priority.def.innerType)),
  maxRetries: z.optional(z.nullable(bulkOptions.maxRetries.def.innerType)),
  deadLetter: z.optional(z.nullable(queueNameSchema)),
});

/** queues.create's groupConcurrency as a number, and each cap of its { default, tiers } (jobs.create_queue's checks, PD019). */
export const groupCapSchema = z.number('must be an integer between 1 and 100000, or { default, tiers? }')
  .check(z.refine((n) => Number.isInteger(n) && n >= 1 && n <= 100_000, 'must be an integer between 1 and 100000'));
export const groupTiersSchema = z.strictObject({
  default: groupCapSchema,
  // The names checked on the whole record: a record's key schema reports
  // only zod's "Invalid key in record", not the rule.
  tiers: z.optional(z.record(z.string(), groupCapSchema).check(z.refine(
    (t) => Object.keys(t).every((k) => !isBlank(k) && fitsChars(k, 200) && unstorableText(k) === null),
    'tier names must be non-empty texts of at most 200 characters, not only whitespace'))),
});

/** redrive's task pattern: a blank one (no % in it) could only match a blank task name, which none is (as drain's topic). */
export const redriveTaskSchema = textSchema(200, 'must be a non-empty pattern, not only whitespace', true);

/**
 * redrive's LIKE pattern over the error: any text, '' too (an error an SQL caller's jobs.nack(id, '') records, which it
 * matches, as jobs.redrive's error_like does), at most 10000 characters PostgreSQL stores as given.
 */
export const redriveErrorLikeSchema = z.string({ error: 'must be a string' }).check(
  z.maxLength(10_000, 'must be at most 10000 characters'),
  z.superRefine((s: string, ctx) => {
    const rule = unstorableText(s);
    if (rule) ctx.addIssue({ code: 'custom', message: rule, input: s });
  }));

export const redriveFilterSchema = z.strictObject({
  ids: z.optional(z.array(jobIdSchema, 'must be an array of job ids')),
  task: z.optional(redriveTaskSchema),
  queue: z.optional(queueNameSchema),
  endedAfter: z.optional(validDateSchema),
  errorLike: z.optional(redriveErrorLikeSchema),
  includeCancelled: z.optional(z.boolean('must be a boolean')),
  maxRows: z.optional(z.number().check(z.refine((n) => Number.isInteger(n) && n >= 1 && n <= 2_147_483_647,
    'must be an integer between 1 and 2147483647'))),
}, { error: 'must be an object' }).check(z.refine((f) => !f.includeCancelled || f.ids !== undefined, {
  message: 'needs ids (cancelled jobs go back by id)', path: ['includeCancelled'] }));

/** Job ids for the set-based admin operations (cancel, reschedule, fail). */
export const jobIdsSchema = z.array(jobIdSchema, 'must be an array of job ids');

export const rescheduleOptionsSchema = z.strictObject({
  runAt: bulkOptions.runAt,
  delaySeconds: bulkOptions.delaySeconds,
  priority: bulkOptions.priority,
  maxRetries: bulkOptions.maxRetries,
  // The attempts spent (jobs.reschedule's attempt): at most maxRetries, a run left.
  attempts: bulkOptions.maxRetries,
}).check(z.refine((o) => o.runAt === undefined || o.delaySeconds === undefined, runAtOrDelay),
  z.superRefine((o: { attempts?: number | undefined; maxRetries?: number | undefined }, ctx) => {
    if (o.attempts !== undefined && o.maxRetries !== undefined && o.attempts > o.maxRetries) {
      ctx.addIssue({ code: 'custom', path: ['attempts'], input: o.attempts,
        message: `must be at most maxRetries (${o.maxRetries}), got ${o.attempts}: a job keeps a run left` });
    }
  }),
  z.refine((o) => Object.values(o).some((v) => v !== undefined),
    'give runAt, delaySeconds, priority, maxRetries or attempts'));

export const waitForOptionsSchema = z.strictObject({
  signal: z.optional(abortSignalSchema),
  /** Omit it to wait as long as it takes. */
  // Infinity, NaN: not a number zod takes, told so in its own words ('expected number, received number').
  timeoutMs: z.optional(z.number({ error: 'must be a finite number of milliseconds (leave it out to wait as long as it takes)' })
    .check(z.minimum(0, 'must be 0 or more'))),
});
