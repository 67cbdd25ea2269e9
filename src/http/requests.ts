import * as z from 'zod/mini';
import { eventNameSchema, eventTakesNo } from '../admin.js';
import { ValidationError } from '../errors.js';
import { checkDrainSelection, type DrainSelection } from '../drain-selection.js';
import { parseJson } from '../json-text.js';
import { lingerMsSchema, pollMsSchema } from '../drain-options.js';
import { bulkPublishOptionsSchema, capOverBase, expiryChecks, publishOptionsSchema } from '../job-options.js';
import { integerCheck, isoDateTimeSchema, queueNameSchema, taskSchema, topicSchema } from '../options.js';
import type { BulkJob, ListJobsFilter, PublishEventOptions, PublishOptions } from '../types.js';
import { HttpError } from './errors.js';
import { check } from './request-check.js';

// Parsing and validation of request bodies and query strings, with errors
// that name the field as the caller wrote it (`jobs[2].timeoutSeconds`).

/** Server-side bounds on what a request may ask for. */
export interface HttpLimits {
  /** Largest batchSize a POST /drain may ask for (default 1000). */
  maxBatchSize: number;
  /** batchSize when the request gives none (default 100, at most maxBatchSize). */
  defaultBatchSize: number;
  /** Longest time budget a POST /drain may ask for, in seconds (default 300). */
  maxBudgetSeconds: number;
  /**
   * Budget when the request gives none (default 90, at most maxBudgetSeconds):
   * over the default 60 s job timeout, since a drain only claims jobs that fit.
   * A drain returns as soon as the queue is empty, so this is only an upper bound.
   */
  defaultBudgetSeconds: number;
  /** Largest request body in bytes; larger gets 413 (default 1 MiB). */
  maxBodyBytes: number;
  /** Most jobs one POST /jobs may publish (default 1000). */
  maxJobsPerRequest: number;
  /** Drains this app runs at once; more get 429 (default 4). */
  maxConcurrentDrains: number;
  /** How far a signed request's timestamp may be from the server's clock, in seconds (default 300). */
  signatureToleranceSeconds: number;
  /** Most failed jobs the dashboard's redrive of a queue puts back per click (default 10000): press again for more. */
  dashboardRedriveRows: number;
}

export const DEFAULT_LIMITS: HttpLimits = {
  maxBatchSize: 1000,
  defaultBatchSize: 100,
  maxBudgetSeconds: 300,
  defaultBudgetSeconds: 90,
  maxBodyBytes: 1024 * 1024,
  maxJobsPerRequest: 1000,
  maxConcurrentDrains: 4,
  signatureToleranceSeconds: 300,
  dashboardRedriveRows: 10_000,
};

const positiveInt = (max: number) => z.number({ error: 'must be a number' })
  .check(integerCheck, z.minimum(1, 'must be at least 1'), z.maximum(max, `must be at most ${max}`));
const seconds = () => z.number({ error: 'must be a number' }).check(z.gt(0, 'must be greater than 0'), z.maximum(86_400, 'must be at most 86400'));

const limitsSchema = z.strictObject({
  maxBatchSize: positiveInt(10_000),
  defaultBatchSize: positiveInt(10_000),
  maxBudgetSeconds: seconds(),
  defaultBudgetSeconds: seconds(),
  maxBodyBytes: positiveInt(100 * 1024 * 1024),
  maxJobsPerRequest: positiveInt(100_000),
  maxConcurrentDrains: positiveInt(1000),
  signatureToleranceSeconds: positiveInt(3600),
  dashboardRedriveRows: positiveInt(1_000_000),
}).check(z.refine((l) => l.defaultBatchSize <= l.maxBatchSize, { message: 'must be at most maxBatchSize', path: ['defaultBatchSize'] }),
  z.refine((l) => l.defaultBudgetSeconds <= l.maxBudgetSeconds, { message: 'must be at most maxBudgetSeconds', path: ['defaultBudgetSeconds'] }));

/** Fills defaults and checks the limits an app is built with. */
export function resolveLimits(given: Partial<HttpLimits> = {}): HttpLimits {
  const merged = { ...DEFAULT_LIMITS, ...given };
  // A smaller maximum given without a default pulls the default down with it.
  if (given.defaultBatchSize === undefined) merged.defaultBatchSize = Math.min(merged.defaultBatchSize, merged.maxBatchSize);
  if (given.defaultBudgetSeconds === undefined) {
    merged.defaultBudgetSeconds = Math.min(merged.defaultBudgetSeconds, merged.maxBudgetSeconds);
  }
  return check(limitsSchema, merged, 'limits');
}

/** What POST /drain asked for, within the limits. */
export interface DrainRequest extends DrainSelection {
  batchSize: number;
  budgetSeconds: number;
  topic?: string;
  queue?: string;
  /** DrainOptions.lingerMs: the request is held while the drain lingers, never past its budget. */
  lingerMs?: number;
  pollMs?: number;
}

const NUMERIC_FIELDS = new Set(['batchSize', 'budgetSeconds', 'lingerMs', 'pollMs']);
const JSON_FIELDS = new Set(['filter', 'exclude']);

/**
 * Reads batchSize, budgetSeconds, topic, queue, lingerMs, pollMs, filter and
 * exclude from the JSON body, else from the query string (filter and exclude
 * there as JSON text: ?filter=%7B%22region%22%3A%22eu%22%7D).
 */
export function parseDrainRequest(body: unknown, query: Record<string, string[]>, limits: HttpLimits): DrainRequest {
  if (body !== undefined && !isPlainObject(body)) throw new ValidationError('body', 'must be a JSON object');
  const fromQuery: Record<string, unknown> = {};
  for (const [key, values] of Object.entries(query)) {
    // Not the first of two silently (?exclude=[]&exclude=[…] claimed every job).
    if (values.length > 1) throw new ValidationError(key, `must be given once in the query string, got ${values.length}`);
    const value = values[0]!;
    // A number as JSON would spell it (1e2, 0.5, -3): as a number, so the query and the body take the same values.
    // A blank filter or exclude stays text, refused as the body's "" is.
    fromQuery[key] = NUMERIC_FIELDS.has(key) && /^\s*-?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+)?\s*$/i.test(value) ? Number(value)
      : JSON_FIELDS.has(key) && value.trim() !== '' ? parseJson(value, key) : value;
  }
  const schema = z.strictObject({
    batchSize: z._default(z.number({ error: 'must be a number' }).check(integerCheck, z.minimum(1, 'must be at least 1'),
      z.maximum(limits.maxBatchSize, `must be at most ${limits.maxBatchSize} (the server's maximum)`)),
      limits.defaultBatchSize),
    budgetSeconds: z._default(z.number({ error: 'must be a number of seconds' }).check(z.gt(0, 'must be greater than 0'),
      z.maximum(limits.maxBudgetSeconds, `must be at most ${limits.maxBudgetSeconds} seconds (the server's maximum)`)),
      limits.defaultBudgetSeconds),
    topic: z.optional(topicSchema),
    queue: z.optional(queueNameSchema),
    lingerMs: z.optional(lingerMsSchema),
    pollMs: z.optional(pollMsSchema),
    filter: z.optional(z.unknown()), // checked below, as drain() checks them
    exclude: z.optional(z.unknown()),
  });
  const { filter, exclude, ...request } = check(schema, { ...fromQuery, ...(body as object | undefined) }, '', undefined, 'http-drain');
  return { ...request, ...checkDrainSelection({ filter, exclude }) };
}

const jobShape = {
  task: taskSchema,
  body: z.optional(z.unknown()),
  runAt: z.optional(isoDateTimeSchema),
  delaySeconds: publishOptionsSchema.shape.delaySeconds,
  timeoutSeconds: publishOptionsSchema.shape.timeoutSeconds,
  priority: publishOptionsSchema.shape.priority,
  maxRetries: publishOptionsSchema.shape.maxRetries,
  // The job's own retry policy, as publish() takes it.
  retryDelaySeconds: publishOptionsSchema.shape.retryDelaySeconds,
  retryBackoff: publishOptionsSchema.shape.retryBackoff,
  retryDelayMaxSeconds: publishOptionsSchema.shape.retryDelayMaxSeconds,
  // Its expiry (ISO time, or seconds after its scheduled time).
  expiresAt: z.optional(isoDateTimeSchema),
  expiresInSeconds: publishOptionsSchema.shape.expiresInSeconds,
  // Its own dead-letter queue (the database checks that it exists, and makes no loop).
  deadLetter: publishOptionsSchema.shape.deadLetter,
  // Its group ({ id, tier? }): a queue's groupConcurrency caps each group's running jobs.
  group: publishOptionsSchema.shape.group,
};
const runAtOrDelay = z.refine<{ runAt?: Date; delaySeconds?: number }>((j) => j.runAt === undefined || j.delaySeconds === undefined, {
  message: 'give runAt or delaySeconds, not both', path: ['delaySeconds'],
});
const needsDedupeKey = z.refine<{ dedupeMode?: string; dedupeKey?: string }>(
  (j) => j.dedupeMode === undefined || j.dedupeKey !== undefined,
  { message: 'needs a dedupeKey (the key whose job it keeps)', path: ['dedupeMode'] });
/** A job of a bulk takes publishBulk's options: dedupeMode 'keep' or 'keep_waiting' only, no dependsOn. */
const jobSchema = z.strictObject({
  ...jobShape, dedupeKey: bulkPublishOptionsSchema.shape.dedupeKey, dedupeMode: bulkPublishOptionsSchema.shape.dedupeMode,
  serialKey: bulkPublishOptionsSchema.shape.serialKey, attributes: bulkPublishOptionsSchema.shape.attributes,
}).check(runAtOrDelay, needsDedupeKey, capOverBase, ...expiryChecks);
/**
 * One job takes every option publish() does. A dedupe key lets a client that
 * got no answer (or a 503 after its commit) publish again and get the same
 * job; so does a bulk whose jobs all have one.
 */
const oneJobSchema = z.strictObject({
  ...jobShape, dedupeKey: publishOptionsSchema.shape.dedupeKey, dedupeMode: publishOptionsSchema.shape.dedupeMode,
  queue: publishOptionsSchema.shape.queue,
  serialKey: publishOptionsSchema.shape.serialKey, dependsOn: publishOptionsSchema.shape.dependsOn,
  attributes: publishOptionsSchema.shape.attributes, throttleSeconds: publishOptionsSchema.shape.throttleSeconds,
}).check(runAtOrDelay, capOverBase, ...expiryChecks);

/** POST /jobs: one job (`{ task, body, …options }`) or many (`{ jobs: [ … ] }`). */
export type PublishRequest =
  | { kind: 'one'; task: string; body: unknown; options: PublishOptions }
  | { kind: 'many'; jobs: BulkJob[]; queue?: string };

export function parsePublishRequest(body: unknown, limits: HttpLimits): PublishRequest {
  if (!isPlainObject(body)) throw new ValidationError('body', 'must be a JSON object: one job, or { "jobs": [ … ] }');
  if ('jobs' in body) {
    const schema = z.strictObject({
      jobs: z.array(jobSchema, { error: 'must be an array of jobs' }).check(z.minLength(1, 'must hold at least one job'),
        z.maxLength(limits.maxJobsPerRequest, `must hold at most ${limits.maxJobsPerRequest} jobs (the server's maximum)`)),
      queue: z.optional(queueNameSchema), // all of them, as publishBulk takes one
    });
    const { jobs, queue } = check(schema, body, '', /^\.jobs\[\d+\]$/);
    // attributes came from JSON.parse, as below.
    return { kind: 'many', jobs: jobs as BulkJob[], ...(queue === undefined ? {} : { queue }) };
  }
  const { task, body: jobBody, ...options } = check(oneJobSchema, body, '', /^$/);
  // attributes came from JSON.parse: JSON values all the way down.
  return { kind: 'one', task, body: jobBody, options: options as PublishOptions };
}

/**
 * POST /events/:event: the event (from the path) and `{ body, runAt,
 * delaySeconds, timeoutSeconds, priority, maxRetries, attributes,
 * retryDelaySeconds, retryBackoff, retryDelayMaxSeconds, expiresAt,
 * expiresInSeconds, group }`, each optional, as POST /jobs takes them.
 */
export interface PublishEventRequest {
  event: string;
  body: unknown;
  options: PublishEventOptions;
}

const publishEventSchema = z.strictObject({
  body: z.optional(z.unknown()),
  runAt: jobShape.runAt,
  delaySeconds: jobShape.delaySeconds,
  timeoutSeconds: jobShape.timeoutSeconds,
  priority: jobShape.priority,
  maxRetries: jobShape.maxRetries,
  attributes: publishOptionsSchema.shape.attributes,
  retryDelaySeconds: jobShape.retryDelaySeconds,
  retryBackoff: jobShape.retryBackoff,
  retryDelayMaxSeconds: jobShape.retryDelayMaxSeconds,
  expiresAt: jobShape.expiresAt,
  expiresInSeconds: jobShape.expiresInSeconds,
  group: publishOptionsSchema.shape.group,
}).check(runAtOrDelay, capOverBase, ...expiryChecks);

export function parsePublishEventRequest(event: string, body: unknown): PublishEventRequest {
  check(eventNameSchema, event, 'event');
  if (body !== undefined && !isPlainObject(body)) {
    throw new ValidationError('body', 'must be a JSON object: { "body": …, "runAt" | "delaySeconds", "timeoutSeconds", "priority", '
      + '"maxRetries", "attributes", "retryDelaySeconds", "retryBackoff", "retryDelayMaxSeconds", "expiresAt" | "expiresInSeconds", "group" }');
  }
  const refused = eventTakesNo(body);
  if (refused) throw new ValidationError(...refused);
  const { body: eventBody, ...options } = check(publishEventSchema, body ?? {}, '');
  // attributes came from JSON.parse: JSON values all the way down.
  return { event, body: eventBody, options: options as PublishEventOptions };
}


const LIST_PARAMETERS = ['queue', 'task', 'state', 'body', 'before', 'limit'];

/** GET /jobs's query string as listJobs' filter (which checks the values): each parameter once, body as JSON. */
export function listJobsQuery(query: Record<string, string[]>): ListJobsFilter {
  const filter: Record<string, unknown> = {};
  for (const [key, values] of Object.entries(query)) {
    if (!LIST_PARAMETERS.includes(key)) {
      throw new ValidationError(key, `unknown query parameter (GET /jobs takes ${LIST_PARAMETERS.join(', ')})`);
    }
    if (values.length > 1) throw new ValidationError(key, `must be given once in the query string, got ${values.length}`);
    const value = values[0]!;
    if (key === 'body' && value.trim() === '') throw new ValidationError(key, 'is empty: give JSON the body contains, or leave it out');
    filter[key] = key === 'body' ? parseJson(value, key) : key === 'limit' && /^\d+$/.test(value) ? Number(value) : value;
  }
  return filter as ListJobsFilter;
}

/** Throws 413 when a body is larger than the limit (for bodies that arrive without a length). */
export function tooLarge(limits: HttpLimits): HttpError {
  return new HttpError(413, 'payload_too_large', `body: must be at most ${limits.maxBodyBytes} bytes`, 'body');
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
