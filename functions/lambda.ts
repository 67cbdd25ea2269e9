// AWS Lambda adapter: one handler for schedules and HTTP.
//
//   EventBridge rule / EventBridge Scheduler  → drain(batchSize, now + remaining time − safety margin)
//   Function URL / API Gateway (v1, v2)       → the hono app of src/http (hono/aws-lambda); behind API
//                                               Gateway, a drain also ends before the gateway's timeout
//   anything else ({} too)                    → refused and logged, nothing drained: an API Gateway
//                                               integration that is not a proxy one passes the body
//
// Settings come from the environment, read at the first invocation; a schedule's input may
// override the drain's under "pgdrain" ({"pgdrain": {"queue": "mail", "batchSize": 500}}):
//   DATABASE_URL               PostgreSQL URL (required)
//   PGDRAIN_TOKEN              bearer token for HTTP events (16+ characters)
//   PGDRAIN_HMAC_SECRET        secret for signed HTTP requests (16+ characters)
//   PGDRAIN_BATCH_SIZE         jobs claimed per statement by scheduled drains (default 100)
//   PGDRAIN_TOPIC              only tasks matching this LIKE pattern ('email.%')
//   PGDRAIN_QUEUE              the named queue scheduled drains consume (default 'default')
//   PGDRAIN_FILTER             scheduled drains claim only jobs whose attributes contain this JSON object
//   PGDRAIN_EXCLUDE            … and none that contain an object of this JSON array ('[{"partner":"acme"}]')
//   PGDRAIN_LINGER_SECONDS     scheduled drains wait this long on an empty queue for new work (default 0),
//                              never past their deadline (docs/fast-pickup.md); they LISTEN for publishes
//   PGDRAIN_POLL_SECONDS       while lingering, claim again this often (default 1)
//   PGDRAIN_SAFETY_MARGIN_MS   time kept back from the function's remaining time (default 1000)
//   PGDRAIN_POOL_MAX           connections per warm instance (default 2; a lingering drain's LISTEN session
//                              is one more, outside the pool); with transactional tasks,
//                              a drain runs one job fewer than this at once (at least 1): each holds
//                              a connection, and the drain keeps one for its own statements
//   PGDRAIN_MAX_BUDGET_SECONDS longest drain an HTTP request may ask for (default 300)
//   PGDRAIN_API_GATEWAY_TIMEOUT_SECONDS  API Gateway's integration timeout (default 29): a drain
//                              behind it ends that long after the gateway received the request,
//                              less the safety margin (Function URLs wait 15 minutes)
//
// scripts/build-lambda.mjs bundles this file with your tasks module into one
// file whose `handler` export is createLambdaHandler(tasks).
//
// Here: the handler and the warm instance it keeps. lambda-settings.ts reads
// the variables above, lambda-events.ts tells the events apart, and
// lambda-driver.ts keeps the pool alive across freeze and thaw.
import { Hono } from 'hono';
import { handle } from 'hono/aws-lambda';
import { drain } from '../src/drain.js';
import { sliceUnits } from '../src/error-text.js';
import { ValidationError } from '../src/errors.js';
import { createApp, type AppQueue } from '../src/http/app.js';
import { credentialSettingsError, misconfigured, type Secrets } from '../src/http/misconfigured.js';
import { publish, publishBulk } from '../src/publish.js';
import type { DrainReport, TaskMap } from '../src/types.js';
import { fastPickup } from './fast-pickup.js';
import { reconnectingDriver, type ReconnectingDriver } from './lambda-driver.js';
import { asSent, gatewayEnd, isHttpEvent, routePath, scheduleInput, withoutGetBody, type ScheduleInput } from './lambda-events.js';
import { readSettings, type Env, type Settings } from './lambda-settings.js';

/** The part of the Lambda context the handler reads. */
export interface LambdaContext {
  getRemainingTimeInMillis(): number;
  awsRequestId?: string;
}

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
      // A scheduled invocation fails loudly; an HTTP caller whose credentials pass did nothing wrong:
      // it gets the setting named, not a bare 502. Anyone else gets 401, as from a function set up right.
      if (!(error instanceof ValidationError) || !isHttpEvent(event)) throw error;
      return misconfiguredAnswer(event, context, env, error);
    }
    instance.driver.beginInvocation();
    if (isHttpEvent(event)) return instance.http(event, context);
    let input: ScheduleInput | undefined;
    try {
      input = scheduleInput(event);
    } catch (error) {
      // A drain setting misplaced, a bad pgdrain input: refused and logged as any other.
      throw error instanceof ValidationError ? logRefused(error, event, context) : error;
    }
    if (input) return instance.drain(input, context);
    throw logRefused(refused(event), event, context);
  };
}

const isEmpty = (event: unknown) => typeof event === 'object' && event !== null && !Array.isArray(event) && Object.keys(event).length === 0;

// What sends {} on a schedule: an EventBridge Scheduler schedule without input, and an EventBridge rule
// whose target input is part of the matched event (a Scheduled Event's $.detail is {}) or an input transformer.
const EMPTY_EVENT_HINT = '; an EventBridge Scheduler schedule without input sends this empty event too, and so does an '
  + 'EventBridge rule whose target input is part of the matched event ($.detail) or an input transformer: give the '
  + 'schedule the input {"pgdrain": {}}, and the rule\'s target the constant input {"pgdrain": {}} (or the matched event)';

/**
 * The error for an event that is neither a schedule nor an HTTP event with the
 * proxy shape (requestContext): nothing drained. An API Gateway integration
 * that is not a proxy one hands the function the request's body (or its
 * mapping template's output) as the event, with no credential checked.
 */
function refused(event: unknown): ValidationError {
  return new ValidationError('event', 'is neither a schedule (a "Scheduled Event" of aws.events or aws.scheduler, or '
    + '{"pgdrain": {…}}) nor an HTTP event of a Function URL or an API Gateway proxy integration: nothing was drained '
    + '(behind API Gateway, use a proxy integration: another hands the function the request\'s body as its event)'
    + (isEmpty(event) ? EMPTY_EVENT_HINT : ''));
}

/** At most this many characters of a refusal's message are thrown and logged. */
const REFUSAL_CHARS = 800;

/**
 * error, or, when its message is longer than REFUSAL_CHARS (an unknown key's
 * name is quoted whole), the same refusal with its rule cut to fit: the
 * runtime logs a thrown error whole (message, field and rule), and a key is
 * the caller's text. The longest of our own, an empty event's, is 619 characters.
 */
function cut(error: ValidationError): ValidationError {
  if (error.message.length <= REFUSAL_CHARS) return error;
  const field = error.field ?? 'event';
  return new ValidationError(field, `${sliceUnits(error.rule, Math.max(0, REFUSAL_CHARS - field.length - 3))}…`);
}

/** error, refusing event, logged as {"pgdrain": "refused", …} with the event's keys: cut to REFUSAL_CHARS, and returned so. */
function logRefused(error: ValidationError, event: unknown, context: LambdaContext): ValidationError {
  // Its keys, not its values (a body's secrets), and at most 10 of 40 characters: a key is the caller's text too.
  const keys = (o: object) => Object.keys(o).slice(0, 10).map((key) => (key.length > 40 ? `${key.slice(0, 40)}…` : key));
  const shape = typeof event === 'object' && event !== null ? { keys: keys(event) } : event === null ? 'null' : typeof event;
  const refusal = cut(error);
  console.error(JSON.stringify({ pgdrain: 'refused', requestId: context.awsRequestId, error: refusal.message, event: shape }));
  return refusal;
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
      // No credential, or one createApp refuses (a token with a space): named by its variable.
      const refused = credentialSettingsError(this.settings, '', 'set one on the function to serve HTTP events');
      if (refused) return misconfiguredAnswer(event, context, this.settings, refused);
      const app = createApp({
        queue: this.queue, token, hmacSecret, routePath,
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
    return this.httpHandler(asSent(withoutGetBody(event as Record<string, unknown>)) as never, context);
  }
}

/**
 * An HTTP event to a function whose settings are wrong (error names the
 * setting): logged, then answered as src/http/misconfigured.ts says, routed
 * as the app routes (API Gateway's stage).
 */
function misconfiguredAnswer(event: unknown, context: LambdaContext, secrets: Secrets, error: ValidationError): Promise<unknown> {
  console.error('pgdrain: the function is misconfigured:', error.message);
  const app = new Hono().all('*', (c) => misconfigured(c.req.raw, secrets, error, { routePath, env: c.env }));
  const answer = handle(app) as unknown as (event: never, context: LambdaContext) => Promise<unknown>;
  return answer(asSent(withoutGetBody(event as Record<string, unknown>)) as never, context);
}
