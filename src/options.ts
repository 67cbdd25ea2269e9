import * as z from 'zod/mini';
import { en } from 'zod/locales';
import { ValidationError } from './errors.js';
import { jsonParam } from './json-text.js';
import type { JobEndEvent, JobStartEvent } from './types.js';

// Validation at the TS edge, mirroring the SQL checks so a bad call fails
// before any round trip with a message naming the field and the rule.

export const TASK_PATTERN = /^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$/;

// zod/mini loads no locale (classic zod loads English on first use): the
// default messages ("Too small: expected number to be >=1") need it.
if (!z.config().localeError) z.config(en());

const name = (what: string) => z.string().check(z.minLength(1, `must be a non-empty ${what}`),
  z.maxLength(200, 'must be at most 200 characters'),
  z.regex(TASK_PATTERN, 'must be dot-separated words of letters, digits, _ : or -'));
const task = name('task name');

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** The rule a string breaks that PostgreSQL text cannot store as given, or null. */
export function unstorableText(s: string): string | null {
  if (s.includes('\0')) return 'must not contain \\u0000 (PostgreSQL text cannot store it)';
  // node-postgres would send it as U+FFFD: two different keys would become one.
  if (LONE_SURROGATE.test(s)) return 'must not contain an unpaired surrogate (PostgreSQL text cannot store it)';
  return null;
}
/** A string check: text PostgreSQL stores as given (the message is unstorableText's). */
const storable = z.superRefine((s: string, ctx) => {
  const rule = unstorableText(s);
  if (rule) ctx.addIssue({ code: 'custom', message: rule, input: s });
});
const text = (max: number, empty = 'must be a non-empty text') =>
  z.string({ error: 'must be a string' }).check(z.minLength(1, empty), z.maxLength(max, `must be at most ${max} characters`), storable);
const key = text(500);
/** What a drain records as worker_id. */
export const workerIdSchema = text(200);
/** A drain's topic: a LIKE pattern over task names. */
export const topicSchema = text(200, 'must be a non-empty pattern');
const jsonObject = z.custom<Record<string, unknown>>(
  (v) => typeof v === 'object' && v !== null && !Array.isArray(v), 'must be a JSON object');
/**
 * Why v is not a plain JSON object, or undefined: a Date would be stored as
 * a string, a Map or Set as {}, a class instance as its own fields only.
 */
function plainObjectRule(v: unknown): string | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'must be a JSON object';
  const proto = Object.getPrototypeOf(v) as { constructor?: { name?: unknown } } | null;
  if (proto === Object.prototype || proto === null) return undefined;
  const name = proto.constructor?.name;
  return `must be a plain JSON object, not a class instance${typeof name === 'string' && name ? ` (got a ${name})` : ''}`;
}
/** A job's attributes: a plain JSON object, refused here rather than by the database (a Date) or not at all (a Map). */
const attributes = z.custom<Record<string, unknown>>().check(z.superRefine((v, ctx) => {
  const rule = plainObjectRule(v);
  if (rule) ctx.addIssue({ code: 'custom', message: rule, input: v });
}));
/** Whether s is a job id: a positive integer that fits PostgreSQL's bigint. */
export function isJobId(s: string): boolean {
  return /^[1-9][0-9]{0,18}$/.test(s) && BigInt(s) <= 9_223_372_036_854_775_807n;
}
const jobId = z.string().check(z.refine(isJobId, 'must be a job id (a positive integer as a string, at most 9223372036854775807)'));
// The years PostgreSQL and node-postgres agree on, and then some: a job has no business before 1970.
const FIRST_MS = Date.UTC(1970, 0, 1);
export const LAST_MS = Date.UTC(10000, 0, 1) - 1;
/** A job's time: a valid Date PostgreSQL and node-postgres agree on (runAt, RetryJob's at). */
export function isJobTime(d: unknown): d is Date {
  return d instanceof Date && d.getTime() >= FIRST_MS && d.getTime() <= LAST_MS;
}
// Not z.date(): it turns an invalid Date away as "expected date, received Date".
const validDate = z.custom<Date>((d) => d instanceof Date, 'must be a Date').check(
  z.refine(isJobTime, 'must be a valid Date from 1970 to 9999'));
/** An ISO 8601 date-time with its time zone (Z or ±hh:mm), as HTTP's runAt and the CLI's --at take it. */
export const isoDateTimeSchema = z.pipe(z.pipe(
  z.iso.datetime({ offset: true, error: 'must be an ISO 8601 date-time with a time zone, such as 2030-01-01T09:00:00Z' }),
  z.transform((s: string) => new Date(s))), validDate);
/** throttleSeconds' bound: 30 days, as jobs.publish's throttle_seconds. */
export const MAX_THROTTLE_SECONDS = 30 * 86400;
/** delaySeconds' bound: ten years, as the CLI's --delay. */
export const MAX_DELAY_SECONDS = 10 * 365 * 86400;
const integer = z.int('must be an integer'); // also a check, as classic's .int() uses it
const abortSignal = z.custom<AbortSignal>((s) => typeof s === 'object' && s !== null && 'aborted' in s
  && typeof (s as AbortSignal).addEventListener === 'function', 'must be an AbortSignal');
export { abortSignal as abortSignalSchema };

export const queueNameSchema = name('queue name');
export const jobIdSchema = jobId;

// Numbers are finite in zod 4 (classic's .finite() did nothing).
const bulkOptions = {
  runAt: z.optional(validDate),
  delaySeconds: z.optional(z.number().check(z.minimum(0, 'must be 0 or more'),
    z.maximum(MAX_DELAY_SECONDS, `must be at most ${MAX_DELAY_SECONDS} (ten years)`))),
  timeoutSeconds: z.optional(z.number().check(z.minimum(0.001, 'must be at least 0.001 (a millisecond)'), z.maximum(86400, 'must be at most 86400 seconds'))),
  priority: z.optional(z.number().check(integer, z.minimum(-1_000_000, 'must be at least -1000000'), z.maximum(1_000_000, 'must be at most 1000000'))),
  maxRetries: z.optional(z.number().check(integer, z.minimum(0, 'must be 0 or more'), z.maximum(1000, 'must be at most 1000'))),
};
const runAtOrDelay = {
  message: 'give runAt or delaySeconds, not both', path: ['delaySeconds'],
};

const needsDedupeKey = { message: 'needs a dedupe key (the key whose job it keeps)', path: ['dedupeMode'] };

/** A publishBulk job's options: publish's per-job ones but dedupeMode 'replace' and dependsOn (README: Dedupe key). */
export const bulkPublishOptionsSchema = z.strictObject({
  ...bulkOptions,
  dedupeKey: z.optional(key),
  dedupeMode: z.optional(z.literal('keep', "must be 'keep' in a bulk publish: a replace rewrites a waiting job "
    + 'under its key\'s lock, one job at a time (publish)')),
  serialKey: z.optional(key),
  attributes: z.optional(attributes),
  dependsOn: z.optional(z.never({ error: 'a bulk publish takes none: each dependency is locked and checked '
    + 'per job; publish a job with dependencies one at a time (publish)' })),
  throttleSeconds: z.optional(z.never({ error: 'a bulk publish takes none: a throttle window is locked and '
    + 'opened per key, one job at a time; publish throttled jobs one at a time (publish)' })),
}).check(z.refine((o) => o.runAt === undefined || o.delaySeconds === undefined, runAtOrDelay),
  z.refine((o) => o.dedupeMode === undefined || o.dedupeKey !== undefined, needsDedupeKey));

export const publishOptionsSchema = z.strictObject({
  ...bulkOptions,
  queue: z.optional(name('queue name')),
  dedupeKey: z.optional(key),
  dedupeMode: z.optional(z.enum(['keep', 'replace'], "must be 'keep' or 'replace'")),
  serialKey: z.optional(key),
  dependsOn: z.optional(z.array(jobId).check(z.maxLength(1000, 'must list at most 1000 jobs'))),
  attributes: z.optional(attributes),
  throttleSeconds: z.optional(z.number().check(z.gt(0, 'must be greater than 0'),
    z.maximum(MAX_THROTTLE_SECONDS, `must be at most ${MAX_THROTTLE_SECONDS} seconds (30 days)`))),
}).check(z.refine((o) => o.runAt === undefined || o.delaySeconds === undefined, runAtOrDelay),
  z.refine((o) => o.dedupeMode === undefined || o.dedupeKey !== undefined, {
    message: 'needs a dedupe key (the key whose job it keeps or replaces)', path: ['dedupeMode'] }),
  z.refine((o) => o.throttleSeconds === undefined || o.dedupeKey !== undefined, {
    message: 'needs a dedupe key (the key it throttles)', path: ['throttleSeconds'] }),
  z.refine((o) => o.throttleSeconds === undefined || o.dedupeMode !== 'replace', {
    message: "cannot be given with dedupeMode 'replace' (a throttle keeps the first job of its window, a replace the latest)",
    path: ['throttleSeconds'] }),
  z.refine((o) => o.dedupeMode !== 'replace' || o.dependsOn === undefined, {
    message: "cannot be given with dedupeMode 'replace' (a replaced job keeps its dependencies)", path: ['dependsOn'] }));

/** queues.create's options: the bound, the defaults checked as a publish's own, the dead-letter queue; null clears one. */
export const namedQueueOptionsSchema = z.strictObject({
  maxSize: z.optional(z.nullable(z.number().check(z.refine((n) => Number.isInteger(n) && n >= 1 && n <= 100_000_000,
    'must be an integer between 1 and 100000000')))),
  timeoutSeconds: z.optional(z.nullable(bulkOptions.timeoutSeconds.def.innerType)),
  priority: z.optional(z.nullable(bulkOptions.priority.def.innerType)),
  maxRetries: z.optional(z.nullable(bulkOptions.maxRetries.def.innerType)),
  deadLetter: z.optional(z.nullable(name('queue name'))),
});

export const redriveFilterSchema = z.strictObject({
  ids: z.optional(z.array(jobId)),
  task: z.optional(text(200, 'must be a non-empty pattern')),
  queue: z.optional(name('queue name')),
  endedAfter: z.optional(validDate),
  errorLike: z.optional(text(10_000, 'must be a non-empty pattern')),
  includeCancelled: z.optional(z.boolean('must be a boolean')),
}).check(z.refine((f) => !f.includeCancelled || f.ids !== undefined, {
  message: 'needs ids (cancelled jobs go back by id)', path: ['includeCancelled'] }));

/** Job ids for the set-based admin operations (cancel, reschedule, fail). */
export const jobIdsSchema = z.array(jobId, 'must be an array of job ids');

export const rescheduleOptionsSchema = z.strictObject({
  runAt: bulkOptions.runAt,
  delaySeconds: bulkOptions.delaySeconds,
  priority: bulkOptions.priority,
}).check(z.refine((o) => o.runAt === undefined || o.delaySeconds === undefined, runAtOrDelay),
  z.refine((o) => o.runAt !== undefined || o.delaySeconds !== undefined || o.priority !== undefined,
    'give runAt, delaySeconds or priority'));

// Epoch milliseconds since 2001: a smaller number is most likely seconds
// (Date.now() / 1000 + 60), which would end the drain before it began.
const FIRST_DEADLINE_MS = Date.UTC(2001, 0, 1);
const DEADLINE_RULE = 'must be a valid Date or epoch milliseconds (Date.now() + 55_000), not seconds';

export const drainArgsSchema = z.object({
  batchSize: z.number().check(integer, z.minimum(1, 'must be at least 1'), z.maximum(10000, 'must be at most 10000')),
  deadline: z.pipe(z.custom<Date | number>((d) => d instanceof Date || typeof d === 'number', DEADLINE_RULE),
                   z.transform((d: Date | number) => (d instanceof Date ? d.getTime() : d)))
    .check(z.refine((ms) => ms >= FIRST_DEADLINE_MS && ms <= LAST_MS, DEADLINE_RULE)),
});

/** DrainOptions.lingerMs: milliseconds, up to a day (the deadline bounds it anyway). */
export const lingerMsSchema = z.number({ error: 'must be a number of milliseconds' })
  .check(z.minimum(0, 'must be 0 or more'), z.maximum(86_400_000, 'must be at most 86400000 (a day)'));
/** DrainOptions.pollMs: an idle drain sends one claim per pollMs. */
export const pollMsSchema = z.number({ error: 'must be a number of milliseconds' })
  .check(z.minimum(50, 'must be at least 50'), z.maximum(3_600_000, 'must be at most 3600000 (an hour)'));

/** DrainOptions.exclude's bound, as jobs.pick's exclude. */
const MAX_EXCLUDE = 100;

/**
 * Why a filter or exclude object will not do, or undefined: a plain JSON
 * object PostgreSQL can store (a Map or a Date would go as something else).
 * An exclude object must not be empty: {} is in every job's attributes, so
 * it would exclude them all (a { partner: undefined } goes as {}).
 */
function selectionRule(v: unknown, exclude: boolean): string | undefined {
  const notPlain = plainObjectRule(v);
  if (notPlain) return notPlain;
  let json: string;
  try {
    json = jsonParam(v, '');
  } catch (error) {
    return (error as ValidationError).rule;
  }
  if (exclude && json === '{}') return 'must not be empty: {} is in every job\'s attributes, so it would exclude them all';
  return undefined;
}

// A function: not passable through the CLI or HTTP, which take JSON.
const hook = <E>() => z.custom<(event: E) => void>((f) => typeof f === 'function', 'must be a function (event) => void');

export const drainOptionsSchema = z.strictObject({
  topic: z.optional(topicSchema),
  concurrency: z.optional(z.number().check(integer, z.minimum(1, 'must be at least 1'), z.maximum(10000, 'must be at most 10000'))),
  signal: z.optional(abortSignal),
  graceMs: z.optional(z.number().check(z.minimum(0, 'must be 0 or more'))),
  /** When it fires: stop claiming and give back every running job now, grace or not. */
  hardSignal: z.optional(abortSignal),
  settleMarginMs: z.optional(z.number().check(z.minimum(0, 'must be 0 or more'), z.maximum(60_000, 'must be at most 60000'))),
  flushIntervalMs: z.optional(z.number().check(z.minimum(1, 'must be at least 1'), z.maximum(60_000, 'must be at most 60000'))),
  /** The queue to consume (default 'default'). */
  queue: z.optional(name('queue name')),
  /** Claim only jobs whose attributes contain this object (jsonb @>). */
  filter: z.optional(jsonObject),
  /**
   * Claim no job whose attributes contain any of these objects (at most 100;
   * a job without attributes is never excluded). Its elements are checked
   * below, so that an error names options.exclude[i].
   */
  exclude: z.optional(z.array(z.custom<Record<string, unknown>>(), 'must be an array of JSON objects')
    .check(z.maxLength(MAX_EXCLUDE, `must hold at most ${MAX_EXCLUDE} objects`))),
  /** Recorded on every job this drain runs (default: a random id per drain). */
  workerId: z.optional(workerIdSchema),
  /** How often to ask whether jobs running longer than this were cancelled (default 2000). */
  cancelCheckMs: z.optional(z.number().check(z.minimum(100, 'must be at least 100'), z.maximum(3_600_000, 'must be at most 3600000'))),
  /** How long past the deadline (or the grace after signal, or hardSignal) to wait for a silent database (default 5000). */
  overrunMs: z.optional(z.number().check(z.minimum(0, 'must be 0 or more'), z.maximum(3_600_000, 'must be at most 3600000'))),
  /**
   * How long the queue may stay empty (nothing to claim, nothing running)
   * before the drain returns (default 0: at once); never past the deadline.
   */
  lingerMs: z.optional(lingerMsSchema),
  /** While lingering, how often to claim again when no NOTIFY woke the drain (default 1000). */
  pollMs: z.optional(pollMsSchema),
  /** Called as each claimed job's handler starts (drain-hooks.ts: a throw is caught). */
  onJobStart: z.optional(hook<JobStartEvent>()),
  /** Called once per claimed job when the drain knows its outcome (drain-hooks.ts: a throw is caught). */
  onJobEnd: z.optional(hook<JobEndEvent>()),
}).check(z.superRefine((o, ctx) => {
  const filterRule = o.filter === undefined ? undefined : selectionRule(o.filter, false);
  if (filterRule) ctx.addIssue({ code: 'custom', path: ['filter'], message: filterRule, input: o.filter });
  for (const [i, e] of (o.exclude ?? []).entries()) {
    const rule = selectionRule(e, true);
    if (rule) return ctx.addIssue({ code: 'custom', path: [`exclude[${i}]`], message: rule, input: e });
  }
}));

export type DrainOptions = z.input<typeof drainOptionsSchema>;

export const waitForOptionsSchema = z.strictObject({
  signal: z.optional(abortSignal),
  /** Omit it to wait as long as it takes. */
  timeoutMs: z.optional(z.number().check(z.minimum(0, 'must be 0 or more'))),
});

/** Parses with a schema, turning the first issue into a ValidationError naming its field. */
export function parse<S extends z.ZodMiniType>(schema: S, value: unknown, field: string): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const path = issue.path.map(String).filter(Boolean);
  const name = path.length ? (field ? `${field}.${path.join('.')}` : path.join('.')) : field;
  const message = issue.code === 'unrecognized_keys'
    ? `unknown option ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`
    : issue.message;
  throw new ValidationError(name, message);
}

export { task as taskSchema };

/**
 * Throws unless driver is a Driver: a pg pool or client has query() but
 * neither transaction() nor close(), and takes the drain's per-statement
 * options for a callback.
 */
export function checkDriver(driver: unknown): void {
  checkQueryable(driver, 'driver');
  const d = driver as { transaction?: unknown; close?: unknown };
  if (typeof d.transaction !== 'function' || typeof d.close !== 'function') {
    throw new ValidationError('driver', 'must be a pgdrain driver (with transaction() and close()): '
      + 'wrap a pg pool or client as pgDriver(pool), or pass connectionString');
  }
}

/**
 * Throws unless db can run statements (a Driver, a pg client or pool, a
 * transaction): JavaScript callers may pass an un-awaited pgliteDriver(dir)
 * or the queue itself, which failed later as "db.query is not a function".
 */
export function checkQueryable(db: unknown, field: string): void {
  if (typeof (db as { query?: unknown } | null)?.query === 'function') return;
  const what = typeof (db as { then?: unknown } | null)?.then === 'function' ? 'a Promise: await it first'
    : typeof (db as { driver?: { query?: unknown } } | null)?.driver?.query === 'function' ? 'a queue: pass queue.driver'
    : `got ${db === null ? 'null' : typeof db}`;
  throw new ValidationError(field, `must be a driver or client with a query() method (pgDriver(url), await pgliteDriver(dir), a pg client): ${what}`);
}
