import * as z from 'zod/mini';
import type { ValidationError } from './errors.js';
import { jsonParam } from './json-text.js';
import { abortSignalSchema, integerCheck, LAST_MS, plainObjectRule, queueNameSchema, topicSchema, workerIdSchema } from './options.js';
import type { JobEndEvent, JobStartEvent } from './types.js';

// drain(batchSize, deadline, options)'s arguments, checked before it claims
// anything, with a message naming the field and the rule.

// Epoch milliseconds since 2001: a smaller number is most likely seconds
// (Date.now() / 1000 + 60), which would end the drain before it began.
const FIRST_DEADLINE_MS = Date.UTC(2001, 0, 1);
const DEADLINE_RULE = 'must be a valid Date or epoch milliseconds (Date.now() + 55_000), not seconds';

export const drainArgsSchema = z.object({
  batchSize: z.number().check(integerCheck, z.minimum(1, 'must be at least 1'), z.maximum(10000, 'must be at most 10000')),
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

const jsonObject = z.custom<Record<string, unknown>>(
  (v) => typeof v === 'object' && v !== null && !Array.isArray(v), 'must be a JSON object');

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
  concurrency: z.optional(z.number().check(integerCheck, z.minimum(1, 'must be at least 1'), z.maximum(10000, 'must be at most 10000'))),
  signal: z.optional(abortSignalSchema),
  graceMs: z.optional(z.number('must be a number of 0 or more').check(z.minimum(0, 'must be 0 or more'))),
  /** When it fires: stop claiming, and stop every running job now (retried at once, an attempt spent), grace or not. */
  hardSignal: z.optional(abortSignalSchema),
  settleMarginMs: z.optional(z.number().check(z.minimum(0, 'must be 0 or more'), z.maximum(60_000, 'must be at most 60000'))),
  flushIntervalMs: z.optional(z.number().check(z.minimum(1, 'must be at least 1'), z.maximum(60_000, 'must be at most 60000'))),
  /** The queue to consume (default 'default'). */
  queue: z.optional(queueNameSchema),
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
