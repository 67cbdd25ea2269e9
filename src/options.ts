import * as z from 'zod/mini';
import { en } from 'zod/locales';
import { ValidationError } from './errors.js';
import { type PeerCall, unknownOptions } from './peer-options.js';

// Validation at the TS edge, mirroring the SQL checks so a bad call fails
// before any round trip with a message naming the field and the rule. Here:
// the pieces the option schemas share (names, storable text, job ids, dates,
// JSON attributes) and parse(); job-options.ts and drain-options.ts build
// the options of publish and the like, and of drain, from them.

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
/**
 * Whether s holds at most max characters as PostgreSQL's length() counts them
 * (code points): a string's .length counts UTF-16 code units, two for an
 * emoji, so a key SQL takes would be refused. zod's maxLength counts code
 * points already (zod 4.6); this is for checks written by hand. Counts only
 * past max units.
 */
export function fitsChars(s: string, max: number): boolean {
  if (s.length <= max) return true;
  if (s.length > 2 * max) return false;
  let n = 0;
  for (const _ of s) if (++n > max) return false;
  return true;
}
/** Whether s is empty or only whitespace (space, tab, newline, CR, form feed, vertical tab), as jobs.blank (sql/0002). */
export function isBlank(s: string): boolean {
  return /^[ \t\n\r\f\v]*$/.test(s);
}
/**
 * An admin call's reason (cancel, fail, a queue's purge), recorded as the
 * jobs' error: left out for the default, else not blank, as jobs.check_reason.
 */
export const reasonSchema = z.string({ error: 'must be a string' }).check(
  z.refine((s: string) => !isBlank(s), 'must be a non-empty text, not only whitespace, or left out (the default reason)'), storable);
/** With notBlank, a text of only whitespace is refused as an empty one is (keys, topics, worker ids: as the SQL checks). */
const text = (max: number, empty = 'must be a non-empty text', notBlank = false) =>
  z.string({ error: 'must be a string' }).check(notBlank ? z.refine((s: string) => !isBlank(s), empty) : z.minLength(1, empty),
    z.maxLength(max, `must be at most ${max} characters`), storable);
const key = text(500, undefined, true);
/** What a drain records as worker_id. */
export const workerIdSchema = text(200, undefined, true);
/** A drain's topic: a LIKE pattern over task names. */
export const topicSchema = text(200, 'must be a non-empty pattern', true);
/**
 * Why v is not a plain JSON object, or undefined: a Date would be stored as
 * a string, a Map or Set as {}, a class instance as its own fields only.
 */
export function plainObjectRule(v: unknown): string | undefined {
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
const JOB_ID_RULE = 'must be a job id (a positive integer as a string, at most 9223372036854775807)';
// The rule for a number too (getJob(42)), not zod's stock "expected string, received number".
const jobId = z.string({ error: JOB_ID_RULE }).check(z.refine(isJobId, JOB_ID_RULE));
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
// Number.isInteger, not z.int(), which takes only safe integers: 1e16, an
// integer past every range here, was told 'must be an integer' rather than
// its bound. Each use checks its range after this; integerCheckSaying
// words it for its field ('must be an integer number of milliseconds').
export const integerCheckSaying = (rule: string) => z.refine<number>((n) => Number.isInteger(n), rule);
const integer = integerCheckSaying('must be an integer');
const abortSignal = z.custom<AbortSignal>((s) => typeof s === 'object' && s !== null && 'aborted' in s
  && typeof (s as AbortSignal).addEventListener === 'function', 'must be an AbortSignal');
export { abortSignal as abortSignalSchema };

export const queueNameSchema = name('queue name');
// 46: pg_cron's job names hold 63 bytes, 17 of them 'pgdrain:schedule:' (jobs.schedule's rule).
export const scheduleNameSchema = z.string().check(z.regex(/^[A-Za-z0-9_.:-]{1,46}$/, 'must be 1 to 46 letters, digits, _ . : or -'));
export const jobIdSchema = jobId;

/**
 * Parses with a schema, turning the first issue into a ValidationError naming its field. peerHints: the
 * call (publish, drain, schedule, queue) whose options these are; an unknown key that is a pg-boss or
 * graphile-worker option of that call also names the option that does its work (peer-options.ts).
 */
export function parse<S extends z.ZodMiniType>(schema: S, value: unknown, field: string, peerHints: PeerCall | false = false): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const path = issue.path.map(String).filter(Boolean);
  const name = path.length ? (field ? `${field}.${path.join('.')}` : path.join('.')) : field;
  const message = issue.code === 'unrecognized_keys' ? unknownOptions(issue.keys, peerHints) : issue.message;
  throw new ValidationError(name, message);
}

export { attributes as attributesSchema, integer as integerCheck, key as keySchema, task as taskSchema, text as textSchema,
  validDate as validDateSchema };
