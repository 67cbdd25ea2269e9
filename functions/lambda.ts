// AWS Lambda adapter: one handler for schedules and HTTP.
//
//   EventBridge rule / EventBridge Scheduler  → drain(batchSize, now + remaining time − safety margin)
//   Function URL / API Gateway (v1, v2)       → the hono app of src/http (hono/aws-lambda); behind API
//                                               Gateway, a drain also ends before the gateway's timeout
//
// Settings come from the environment, read at the first invocation:
//   DATABASE_URL               PostgreSQL URL (required)
//   PGDRAIN_TOKEN              bearer token for HTTP events (16+ characters)
//   PGDRAIN_HMAC_SECRET        secret for signed HTTP requests (16+ characters)
//   PGDRAIN_BATCH_SIZE         jobs claimed per statement by scheduled drains (default 100)
//   PGDRAIN_TOPIC              only tasks matching this LIKE pattern ('email.%')
//   PGDRAIN_QUEUE              the named queue scheduled drains consume (default 'default')
//   PGDRAIN_FILTER             scheduled drains claim only jobs whose attributes contain this JSON object
//   PGDRAIN_EXCLUDE            … and none that contain an object of this JSON array ('[{"partner":"acme"}]')
//   PGDRAIN_LINGER_SECONDS     scheduled drains wait this long on an empty queue for new work (default 0),
//                              never past their deadline (README "Fast pickup"); they LISTEN for publishes
//   PGDRAIN_POLL_SECONDS       while lingering, claim again this often (default 1)
//   PGDRAIN_SAFETY_MARGIN_MS   time kept back from the function's remaining time (default 1000)
//   PGDRAIN_POOL_MAX           connections per warm instance (default 2); with transactional tasks,
//                              also how many jobs a drain runs at once (each holds a connection)
//   PGDRAIN_MAX_BUDGET_SECONDS longest drain an HTTP request may ask for (default 300)
//   PGDRAIN_API_GATEWAY_TIMEOUT_SECONDS  API Gateway's integration timeout (default 29): a drain
//                              behind it ends that long after the gateway received the request,
//                              less the safety margin (Function URLs wait 15 minutes)
//
// scripts/build-lambda.mjs bundles this file with your tasks module into one
// file whose `handler` export is createLambdaHandler(tasks).
import { handle } from 'hono/aws-lambda';
import pg from 'pg';
import * as z from 'zod/mini';
import type { Driver } from '../src/db/driver.js';
import { ownedClient, poolEnder } from '../src/db/pg-pool.js';
import { listenQueued, pgDriver } from '../src/db/pg.js';
import { drain } from '../src/drain.js';
import { ValidationError } from '../src/errors.js';
import { createApp, type AppQueue } from '../src/http/app.js';
import { checkDrainSelection, checkDrainSelectionSettings, type DrainSelection } from '../src/drain-selection.js';
import { parse, queueNameSchema } from '../src/options.js';
import { publish, publishBulk } from '../src/publish.js';
import type { DrainReport, TaskMap } from '../src/types.js';
import { fastPickup, lingerSecondsSchema, pollSecondsSchema, settingSeconds } from './fast-pickup.js';

/** The part of the Lambda context the handler reads. */
export interface LambdaContext {
  getRemainingTimeInMillis(): number;
  awsRequestId?: string;
}

type Env = Record<string, string | undefined>;

const count = (min: number, max: number) => z.pipe(
  z.pipe(z.string().check(z.regex(/^\d+$/, 'must be a whole number')), z.transform(Number)),
  z.number().check(z.minimum(min, `must be at least ${min}`), z.maximum(max, `must be at most ${max}`)));
const secret = () => z.optional(z.string().check(z.minLength(16, 'must be at least 16 characters')));

const settingsSchema = z.object({
  DATABASE_URL: z.string({ error: "is required: the PostgreSQL URL (set it in the function's environment)" })
    .check(z.regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL')),
  PGDRAIN_TOKEN: secret(),
  PGDRAIN_HMAC_SECRET: secret(),
  PGDRAIN_BATCH_SIZE: z._default(count(1, 10_000), 100),
  PGDRAIN_TOPIC: z.optional(z.string().check(z.maxLength(200))),
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
type Settings = z.output<typeof settingsSchema> & { selection: DrainSelection };

/** Options a schedule may carry in its input: `{ "pgdrain": { "batchSize": 200, "topic": "email.%", "lingerSeconds": 50 } }`. */
const scheduleInputSchema = z.strictObject({
  batchSize: z.optional(z.number().check(z.int('must be an integer'), z.minimum(1, 'must be at least 1'),
    z.maximum(10_000, 'must be at most 10000'))),
  topic: z.optional(z.string().check(z.minLength(1, 'must be a non-empty pattern'), z.maxLength(200))),
  queue: z.optional(queueNameSchema),
  lingerSeconds: z.optional(lingerSecondsSchema),
  pollSeconds: z.optional(pollSecondsSchema),
  filter: z.optional(z.unknown()), // JSON, as drain() takes them: checked by scheduleInput as drain() checks them
  exclude: z.optional(z.unknown()),
});
type ScheduleInput = Omit<z.output<typeof scheduleInputSchema>, 'filter' | 'exclude'> & DrainSelection;

/**
 * Builds the Lambda handler for a tasks module. The queue, its connection
 * pool and the HTTP app live as long as the warm instance: created at the
 * first invocation, reused by the next ones.
 */
export function createLambdaHandler(tasks: TaskMap, env: Env = process.env) {
  let instance: Instance | undefined;
  return async function handler(event: unknown, context: LambdaContext): Promise<unknown> {
    try {
      instance ??= new Instance(tasks, readSettings(env));
    } catch (error) {
      // A caller over HTTP did nothing wrong: it gets the setting named, not a bare 502.
      if (!(error instanceof ValidationError) || !isHttpEvent(event)) throw error;
      console.error('pgdrain: the function is misconfigured:', error.message);
      return jsonResult(500, { error: { code: 'not_configured', field: error.field, message: error.message } });
    }
    instance.driver.beginInvocation();
    if (isHttpEvent(event)) return instance.http(event, context);
    const input = scheduleInput(event);
    if (input) return instance.drain(input, context);
    throw new ValidationError('event', 'is not an EventBridge, EventBridge Scheduler, Function URL or API Gateway event');
  };
}

function readSettings(env: Env): Settings {
  // An empty variable counts as unset.
  const given = Object.fromEntries(Object.keys(settingsSchema.shape).map((k) => [k, env[k] || undefined]));
  const settings = parse(settingsSchema, given, '');
  return { ...settings, selection: checkDrainSelectionSettings(settings.PGDRAIN_FILTER, settings.PGDRAIN_EXCLUDE,
                                                           { filter: 'PGDRAIN_FILTER', exclude: 'PGDRAIN_EXCLUDE' }) };
}

class Instance {
  readonly driver: ReconnectingDriver;
  private readonly queue: AppQueue;
  private httpHandler: ((event: never, context: LambdaContext) => Promise<unknown>) | undefined;

  constructor(tasks: TaskMap, private readonly settings: Settings) {
    this.driver = reconnectingDriver(settings.DATABASE_URL, settings.PGDRAIN_POOL_MAX);
    // createQueue's wiring without its migrate(), which would put every migration's SQL in the bundle.
    const db = this.driver;
    const publishOne: AppQueue['publish'] = (task, body, options) => publish(db, task, body, options);
    this.queue = {
      driver: db,
      publish: publishOne,
      publishBulk: (jobs, queue, options) => publishBulk(db, jobs, queue, options),
      // A database that stops answering is given up within the safety margin,
      // so the invocation fails with database_unavailable before Lambda times it out.
      drain: (batchSize, deadline, options) => drain({ db, tasks, publish: publishOne }, batchSize, deadline,
                                                     { overrunMs: settings.PGDRAIN_SAFETY_MARGIN_MS / 2, ...options }),
    };
  }

  /** A scheduled drain: the budget (and so any linger) is what the invocation has left, minus the safety margin. */
  async drain(input: ScheduleInput, context: LambdaContext): Promise<DrainReport> {
    const deadline = Date.now() + context.getRemainingTimeInMillis() - this.settings.PGDRAIN_SAFETY_MARGIN_MS;
    const report = await this.queue.drain(input.batchSize ?? this.settings.PGDRAIN_BATCH_SIZE, deadline,
                                          { topic: input.topic ?? this.settings.PGDRAIN_TOPIC,
                                            queue: input.queue ?? this.settings.PGDRAIN_QUEUE,
                                            filter: input.filter ?? this.settings.selection.filter,
                                            exclude: input.exclude ?? this.settings.selection.exclude,
                                            ...fastPickup(input.lingerSeconds ?? this.settings.PGDRAIN_LINGER_SECONDS,
                                                          input.pollSeconds ?? this.settings.PGDRAIN_POLL_SECONDS) });
    // A scheduled invocation's result goes nowhere: the log line is what an operator sees.
    const { failures, ...summary } = report;
    console.log(JSON.stringify({ pgdrain: 'drain', requestId: context.awsRequestId, ...summary,
                                 failures: failures.slice(0, 10).map((f) => ({ ...f, error: f.error.split('\n')[0] })) }));
    return report;
  }

  /** An HTTP event, through the hono app; a drain's deadline is capped by the remaining time and API Gateway's timeout. */
  http(event: unknown, context: LambdaContext): Promise<unknown> {
    if (!this.httpHandler) {
      const { PGDRAIN_TOKEN: token, PGDRAIN_HMAC_SECRET: hmacSecret, PGDRAIN_SAFETY_MARGIN_MS: margin,
              PGDRAIN_API_GATEWAY_TIMEOUT_SECONDS: gatewaySeconds } = this.settings;
      if (!token && !hmacSecret) {
        return Promise.resolve(jsonResult(500, { error: { code: 'not_configured', field: 'PGDRAIN_TOKEN',
          message: 'set PGDRAIN_TOKEN or PGDRAIN_HMAC_SECRET on the function to serve HTTP events' } }));
      }
      const app = createApp({
        queue: this.queue, token, hmacSecret,
        limits: this.settings.PGDRAIN_MAX_BUDGET_SECONDS ? { maxBudgetSeconds: this.settings.PGDRAIN_MAX_BUDGET_SECONDS } : {},
        deadlineCap: (bindings) => {
          const { lambdaContext: lambda, event: request } = bindings as { lambdaContext?: LambdaContext; event?: unknown };
          const ends = [lambda ? Date.now() + lambda.getRemainingTimeInMillis() : Infinity, gatewayEnd(request, gatewaySeconds)];
          return Math.min(...ends) - margin;
        },
        onError: (error) => console.error('pgdrain:', error),
      });
      this.httpHandler = handle(app) as unknown as (event: never, context: LambdaContext) => Promise<unknown>;
    }
    return this.httpHandler(event as never, context);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Function URL and API Gateway HTTP API (payload 2.0), API Gateway REST (1.0). */
function isHttpEvent(event: unknown): boolean {
  return isObject(event) && isObject(event.requestContext) && (event.version === '2.0' || typeof event.httpMethod === 'string');
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
function gatewayEnd(event: unknown, timeoutSeconds: number): number {
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
 * aws.scheduler; a schedule without input sends {}), or any event carrying
 * `pgdrain` options. Returns the options, or undefined for anything else.
 */
function scheduleInput(event: unknown): ScheduleInput | undefined {
  if (!isObject(event)) return undefined;
  const scheduled = event['detail-type'] === 'Scheduled Event' && (event.source === 'aws.events' || event.source === 'aws.scheduler');
  if (!scheduled && Object.keys(event).length > 0 && !('pgdrain' in event)) return undefined;
  const { filter, exclude, ...input } = parse(scheduleInputSchema, event.pgdrain ?? {}, 'event.pgdrain');
  return { ...input, ...checkDrainSelection({ filter, exclude },
                                             { filter: 'event.pgdrain.filter', exclude: 'event.pgdrain.exclude' }) };
}

function jsonResult(statusCode: number, body: unknown) {
  return { statusCode, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), isBase64Encoded: false };
}

interface ReconnectingDriver extends Driver {
  /** Marks the start of an invocation: the pool's connections are not yet proven alive. */
  beginInvocation(): void;
}

// Errors that mean the connection was dead before the statement could run.
const LOST = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', '57P01', '57P02', '57P03', '08003', '08006']);
function connectionLost(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown } | null;
  return (typeof e?.code === 'string' && LOST.has(e.code))
    || (typeof e?.message === 'string' && /Connection terminated|not queryable|Client was closed/i.test(e.message));
}

/**
 * A pg pool that survives freeze/thaw. Between invocations Lambda freezes the
 * process; the database, a proxy or a NAT may drop its idle connections
 * meanwhile without the pool noticing, and the first statement after the
 * thaw fails on a dead socket. So each invocation first proves the pool with
 * `select 1`; if that finds the connection dead, the pool is replaced (the
 * old one ended in the background) and the invocation's statements run on
 * the fresh one. Only the probe is ever sent twice: a statement whose reply
 * was lost may have committed (a publish would then exist twice).
 */
function reconnectingDriver(url: string, max: number): ReconnectingDriver {
  const newPool = () => {
    // 10 s to open a connection, set on the client: as the pool's
    // connectionTimeoutMillis it would also fail a statement that waits
    // longer for a connection a handler holds (a transactional one).
    const pool = new pg.Pool({ connectionString: url, max, keepAlive: true, Client: ownedClient(10_000),
                               application_name: 'pgdrain-lambda' });
    pool.on('error', () => {}); // an idle client lost its server; the pool drops it
    return { pool, end: poolEnder(pool) };
  };
  let { pool, end } = newPool();
  let driver = pgDriver(pool);
  let proven = false;
  let proving: Promise<void> | undefined;
  const replacePool = () => {
    const old = end;
    ({ pool, end } = newPool());
    driver = pgDriver(pool);
    void old().catch(() => {});
  };
  const probe = async (signal?: AbortSignal): Promise<void> => {
    try {
      await driver.query('select 1', [], signal ? { signal } : undefined);
    } catch (error) {
      // A statement given up on (signal) was ended on purpose: not a stale pool.
      if (!connectionLost(error) || signal?.aborted) throw error;
      console.warn(`pgdrain: a pooled connection died while the function was idle (${(error as Error).message}); reconnecting`);
      replacePool();
    }
    proven = true;
  };
  /** Resolves once this invocation's pool is proven (one probe, shared by the statements that wait for it). */
  const proved = (signal?: AbortSignal): Promise<void> | undefined => {
    if (proven) return undefined;
    proving ??= probe(signal).finally(() => { proving = undefined; });
    return proving;
  };
  return {
    maxConnections: max, // drain() runs fewer transactional handlers at once
    query: async (text, params, options) => {
      await proved(options?.signal);
      return driver.query(text, params, options);
    },
    transaction: async (fn) => {
      await proved();
      return driver.transaction(fn);
    },
    close: () => end(),
    beginInvocation: () => { proven = false; },
    // A lingering drain's LISTEN session, outside the pool: opened when it first idles, closed before it returns
    // (so never frozen with the function), as pgDriver(url) does.
    onQueued: (fn) => listenQueued(url, fn),
  };
}
