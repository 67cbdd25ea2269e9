import { z } from 'zod';
import { ValidationError } from './errors.js';

// Validation at the TS edge, mirroring the SQL checks so a bad call fails
// before any round trip with a message naming the field and the rule.

export const TASK_PATTERN = /^[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*$/;

const task = z.string().min(1, 'must be a non-empty task name').max(200, 'must be at most 200 characters')
  .regex(TASK_PATTERN, 'must be dot-separated words of letters, digits, _ : or -');

const name = (what: string) => z.string().min(1, `must be a non-empty ${what}`).max(200, 'must be at most 200 characters')
  .regex(TASK_PATTERN, 'must be dot-separated words of letters, digits, _ : or -');
const key = z.string().min(1, 'must be a non-empty text').max(500, 'must be at most 500 characters');
const jsonObject = z.custom<Record<string, unknown>>(
  (v) => typeof v === 'object' && v !== null && !Array.isArray(v), 'must be a JSON object');
const jobId = z.string().regex(/^[1-9][0-9]{0,18}$/, 'must be a job id (a positive integer as a string)');

export const queueNameSchema = name('queue name');
export const jobIdSchema = jobId;

const bulkOptions = {
  runAt: z.date().refine((d) => !Number.isNaN(d.getTime()), 'must be a valid Date').optional(),
  delaySeconds: z.number().finite().min(0, 'must be 0 or more').optional(),
  timeoutSeconds: z.number().finite().gt(0, 'must be greater than 0').max(86400, 'must be at most 86400 seconds').optional(),
  priority: z.number().int('must be an integer').min(-1_000_000).max(1_000_000).optional(),
  maxRetries: z.number().int('must be an integer').min(0, 'must be 0 or more').max(1000).optional(),
};
const runAtOrDelay = {
  message: 'give runAt or delaySeconds, not both', path: ['delaySeconds'],
};

export const bulkPublishOptionsSchema = z.strictObject(bulkOptions)
  .refine((o) => o.runAt === undefined || o.delaySeconds === undefined, runAtOrDelay);

export const publishOptionsSchema = z.strictObject({
  ...bulkOptions,
  queue: name('queue name').optional(),
  dedupeKey: key.optional(),
  serialKey: key.optional(),
  dependsOn: z.array(jobId).max(1000, 'must list at most 1000 jobs').optional(),
  attributes: jsonObject.optional(),
}).refine((o) => o.runAt === undefined || o.delaySeconds === undefined, runAtOrDelay);

export const redriveFilterSchema = z.strictObject({
  ids: z.array(jobId).optional(),
  task: z.string().min(1, 'must be a non-empty pattern').max(200).optional(),
  queue: name('queue name').optional(),
  endedAfter: z.date().refine((d) => !Number.isNaN(d.getTime()), 'must be a valid Date').optional(),
  errorLike: z.string().min(1, 'must be a non-empty pattern').optional(),
});

export const drainArgsSchema = z.object({
  batchSize: z.number().int('must be an integer').min(1, 'must be at least 1').max(10000, 'must be at most 10000'),
  deadline: z.union([z.date(), z.number().finite('must be a finite epoch-milliseconds number')])
    .transform((d) => (d instanceof Date ? d.getTime() : d))
    .refine((ms) => Number.isFinite(ms), 'must be a valid Date or epoch milliseconds'),
});

export const drainOptionsSchema = z.strictObject({
  topic: z.string().min(1, 'must be a non-empty pattern').max(200).optional(),
  concurrency: z.number().int('must be an integer').min(1, 'must be at least 1').max(10000).optional(),
  signal: z.custom<AbortSignal>((s) => typeof s === 'object' && s !== null && 'aborted' in s, 'must be an AbortSignal').optional(),
  graceMs: z.number().min(0, 'must be 0 or more').optional(),
  /** When it fires: stop claiming and give back every running job now, grace or not. */
  hardSignal: z.custom<AbortSignal>((s) => typeof s === 'object' && s !== null && 'aborted' in s, 'must be an AbortSignal').optional(),
  settleMarginMs: z.number().min(0, 'must be 0 or more').max(60_000).optional(),
  flushIntervalMs: z.number().min(1, 'must be at least 1').max(60_000).optional(),
  /** The queue to consume (default 'default'). */
  queue: name('queue name').optional(),
  /** Claim only jobs whose attributes contain this object (jsonb @>). */
  filter: jsonObject.optional(),
  /** Recorded on every job this drain runs (default: a random id per drain). */
  workerId: z.string().min(1, 'must be a non-empty text').max(200).optional(),
  /** How often to ask whether jobs running longer than this were cancelled (default 2000). */
  cancelCheckMs: z.number().min(100, 'must be at least 100').max(3_600_000).optional(),
});

export type DrainOptions = z.input<typeof drainOptionsSchema>;

/** Parses with a schema, turning the first issue into a ValidationError naming its field. */
export function parse<S extends z.ZodType>(schema: S, value: unknown, field: string): z.output<S> {
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
