// The Lambda events the handler tells apart: HTTP (Function URL, API
// Gateway), whose answers it shapes, and schedules (EventBridge rule or
// Scheduler), whose `pgdrain` input it checks.
import { getPath } from 'hono/utils/url';
import * as z from 'zod/mini';
import { checkDrainSelection, type DrainSelection } from '../src/drain-selection.js';
import { ValidationError } from '../src/errors.js';
import { integerCheckSaying, parse, queueNameSchema, topicSchema } from '../src/options.js';
import { lingerSecondsSchema, pollSecondsSchema } from './fast-pickup.js';

/** Options a schedule may carry in its input: `{ "pgdrain": { "batchSize": 200, "topic": "email.%", "lingerSeconds": 50 } }`. */
const scheduleInputSchema = z.strictObject({
  batchSize: z.optional(z.number({ error: 'must be a number' }).check(integerCheckSaying('must be an integer'), z.minimum(1, 'must be at least 1'),
    z.maximum(10_000, 'must be at most 10000'))),
  topic: z.optional(topicSchema), // drain()'s rule, as PGDRAIN_TOPIC's
  queue: z.optional(queueNameSchema),
  lingerSeconds: z.optional(lingerSecondsSchema),
  pollSeconds: z.optional(pollSecondsSchema),
  filter: z.optional(z.unknown()), // JSON, as drain() takes them: checked by scheduleInput as drain() checks them
  exclude: z.optional(z.unknown()),
});
export type ScheduleInput = Omit<z.output<typeof scheduleInputSchema>, 'filter' | 'exclude'> & DrainSelection;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Function URL and API Gateway HTTP API (payload 2.0), API Gateway REST (1.0). */
export function isHttpEvent(event: unknown): boolean {
  return isObject(event) && isObject(event.requestContext) && (event.version === '2.0' || typeof event.httpMethod === 'string');
}

/**
 * An HTTP event as hono's adapter can take it: a GET or HEAD without the body
 * it was sent (a Function URL passes one on), as node serve reads it. The
 * adapter would make a Request of it, which refuses a GET with a body: a
 * plain-text 400 "Invalid request" for a request node serve answers.
 */
export function withoutGetBody(event: Record<string, unknown>): Record<string, unknown> {
  const http = isObject(event.requestContext) && isObject(event.requestContext.http) ? event.requestContext.http : undefined;
  const method = event.httpMethod ?? http?.method;
  if ((method !== 'GET' && method !== 'HEAD') || event.body === undefined || event.body === null) return event;
  const { body: _, isBase64Encoded: __, ...rest } = event;
  return rest;
}

/** The prefix before the app's routes in the path an event's caller sent (asSent), by event. */
const routePrefixes = new WeakMap<object, string>();
const under = (path: string, prefix: string) => path === prefix || path.startsWith(`${prefix}/`);

/**
 * An HTTP event whose request URL is the path its caller sent, which a signed
 * request signs. API Gateway on a named stage puts the stage (or a custom
 * domain's base path) before the app's routes in the URL the caller used
 * (https://ID.execute-api.REGION.amazonaws.com/prod/jobs): an HTTP API
 * (payload 2.0) passes that path on in rawPath, a REST API (1.0) passes it in
 * requestContext.path, and the path without it in `path`. routePath routes
 * the request without the prefix; a Function URL has none.
 */
export function asSent(event: Record<string, unknown>): Record<string, unknown> {
  const context = isObject(event.requestContext) ? event.requestContext : {};
  if (typeof event.rawPath === 'string') {
    const stage = context.stage;
    if (typeof stage === 'string' && stage !== '$default' && under(event.rawPath, `/${stage}`)) routePrefixes.set(event, `/${stage}`);
    return event;
  }
  const { path } = event;
  const sent = context.path;
  if (typeof path !== 'string' || !path.startsWith('/') || typeof sent !== 'string' || sent === path || !sent.endsWith(path)) {
    return event;
  }
  const staged = { ...event, path: sent };
  routePrefixes.set(staged, sent.slice(0, sent.length - path.length));
  return staged;
}

/** The path an event's request is routed on (createApp's routePath): its URL's, without asSent's prefix. */
export function routePath(request: Request, env: unknown): string {
  const path = getPath(request);
  const event = isObject(env) ? env.event : undefined;
  const prefix = isObject(event) ? routePrefixes.get(event) : undefined;
  return prefix !== undefined && under(path, prefix) ? path.slice(prefix.length) || '/' : path;
}

// A Function URL's domain: https://<url-id>.lambda-url.<region>.on.aws
// (in the China regions: …lambda-url.<region>.on.amazonwebservices.com.cn)
const FUNCTION_URL_DOMAIN = /\.lambda-url\.[a-z0-9-]+\.on\.(aws|amazonwebservices\.com\.cn)$/;

/**
 * When API Gateway gives up on this request (epoch ms): its integration
 * timeout after it received the request. Infinity for a Function URL (15
 * minutes: the function's own timeout is the bound) and for anything that
 * is not API Gateway (an ALB's requestContext has no apiId).
 */
export function gatewayEnd(event: unknown, timeoutSeconds: number): number {
  const context = isObject(event) && isObject(event.requestContext) ? event.requestContext : {};
  if (typeof context.apiId !== 'string' || FUNCTION_URL_DOMAIN.test(String(context.domainName))) return Infinity;
  // requestTimeEpoch (REST, payload 1.0) or timeEpoch (HTTP API, 2.0); the gateway's clock, so never after ours.
  const received = Number(context.requestTimeEpoch ?? context.timeEpoch);
  return (Number.isFinite(received) ? Math.min(received, Date.now()) : Date.now()) + timeoutSeconds * 1000;
}

/**
 * A schedule: an EventBridge rule's "Scheduled Event" (source aws.events),
 * an EventBridge Scheduler invocation (its input is whatever the schedule
 * sets: the sample template sends the same envelope with source
 * aws.scheduler), or any event carrying `pgdrain` options (a rule's constant
 * input). Returns the options, or undefined for anything else, an empty
 * event ({}) too: it is what an API Gateway integration that is not a proxy
 * one makes of a request without a body, and would drain for its caller;
 * throws for an event with a drain setting at its top level (`queue`, …).
 */
export function scheduleInput(event: unknown): ScheduleInput | undefined {
  if (!isObject(event)) return undefined;
  // A drain setting beside "pgdrain" instead of in it would be ignored, and the
  // drain would consume what the function's settings say: the wrong queue, unseen.
  const misplaced = Object.keys(scheduleInputSchema.shape).find((key) => key in event);
  if (misplaced) {
    throw new ValidationError(`event.${misplaced}`,
      `put drain settings under "pgdrain": {"pgdrain": {"${misplaced}": …}}`);
  }
  const scheduled = event['detail-type'] === 'Scheduled Event' && (event.source === 'aws.events' || event.source === 'aws.scheduler');
  if (!scheduled && !('pgdrain' in event)) return undefined;
  // Not read as none: a null (a template's variable left empty) would drain with the function's settings, unseen.
  if (event.pgdrain !== undefined && !isObject(event.pgdrain)) {
    const got = event.pgdrain === null ? 'null' : Array.isArray(event.pgdrain) ? 'an array' : `a ${typeof event.pgdrain}`;
    throw new ValidationError('event.pgdrain', `must be an object of drain settings ({"batchSize": 200, …}) or left out, got ${got}`);
  }
  const { filter, exclude, ...input } = parse(scheduleInputSchema, event.pgdrain ?? {}, 'event.pgdrain');
  return { ...input, ...checkDrainSelection({ filter, exclude },
                                             { filter: 'event.pgdrain.filter', exclude: 'event.pgdrain.exclude' }) };
}
