import { Hono, type Context } from 'hono';
import { PgDrainError, translateError, ValidationError } from '../errors.js';
import { parseJson } from '../json-text.js';
import { firstLine } from '../failure-list.js';
import { drainOptionsSchema } from '../drain-options.js';
import { parse } from '../options.js';
import type { Queue } from '../queue.js';
import { getJob, publishEvent } from '../admin.js';
import { listJobs } from '../list-jobs.js';
import { givenUpOn } from '../round-trip-limit.js';
import type { DrainReport } from '../types.js';
import { authentication, credentialsError, type AuthVariables } from './auth.js';
import { limitBody } from './body-limit.js';
import { stopSignal } from './stop-signal.js';
import { endedRequest, errorResponse, HttpError } from './errors.js';
import { mountDashboard } from './dashboard-routes.js';
import { jobCounts, statsAnswer } from './counts.js';
import { DrainMetrics } from './metrics.js';
import { listJobsQuery, parseDrainRequest, parsePublishEventRequest, parsePublishRequest, resolveLimits, tooLarge,
  type HttpLimits } from './requests.js';

// Fields as the core (options.attributes) or the database (depends_on) names them, as a request sends them.
const SENT_AS: Record<string, string> = { depends_on: 'dependsOn', dedupe_key: 'dedupeKey', dedupe_mode: 'dedupeMode',
  serial_key: 'serialKey', jobId: 'id' };

/** A publish error naming the field as the request sent it. */
function asSent(error: unknown): unknown {
  if (!(error instanceof PgDrainError) || error.field === undefined) return error;
  const sent = SENT_AS[error.field] ?? error.field.replace(/^(?:options|filter)\./, '');
  if (sent === error.field) return error;
  const rule = error.message.startsWith(`${error.field}: `) ? error.message.slice(error.field.length + 2) : error.message;
  return new PgDrainError(error.code, `${sent}: ${rule}`, { field: sent, cause: error });
}

/** The part of a Queue the app uses. */
export type AppQueue = Pick<Queue, 'driver' | 'drain' | 'publish' | 'publishBulk'>;

export interface AppOptions {
  /**
   * The queue, or a function of the env a request was fetched with giving
   * that request's queue (a Worker opens its database sockets per request,
   * yet keeps one app per isolate so its metrics and replay guard outlive a
   * request).
   */
  queue: AppQueue | ((env: unknown) => AppQueue);
  /** Bearer token (PGDRAIN_TOKEN); at least 16 characters. */
  token?: string | undefined;
  /** Shared secret for signed requests (PGDRAIN_HMAC_SECRET); at least 16 characters. */
  hmacSecret?: string | undefined;
  /** Server-side bounds; see HttpLimits for the defaults. */
  limits?: Partial<HttpLimits> | undefined;
  /** false: POST /drain answers 404 (a server that has no tasks module). Default true. */
  drain?: boolean | undefined;
  /**
   * The latest deadline (epoch ms) the platform allows a drain, given the
   * request's env bindings: Lambda passes its remaining time, so a drain's
   * budget never outlives the invocation.
   */
  deadlineCap?: ((env: unknown) => number | undefined) | undefined;
  /** Server shutdown: new drains get 503, running ones stop claiming and wind down. */
  signal?: AbortSignal | undefined;
  /**
   * After `signal`, or the disconnect of a POST /drain's caller, how long running handlers may
   * finish before they are stopped and retried, an attempt spent (default: until their timeout).
   */
  graceMs?: number | undefined;
  /** When it fires, running drains stop and retry their running jobs at once (an attempt spent), grace or not. */
  hardSignal?: AbortSignal | undefined;
  /** Gets unexpected errors (500s, database failures) for the server's log; callers only see a code. */
  onError?: ((error: unknown) => void) | undefined;
  /**
   * true: the dashboard's page has forms to pause and resume a queue, redrive
   * failed jobs and cancel a job, each guarded against cross-site requests.
   * Needs a token (it keys the forms' tokens), and only the token takes them:
   * a signed request gets the page without forms. Default false: read-only.
   */
  dashboardActions?: boolean | undefined;
  /**
   * The path a request is routed on, given the request and its env, when the
   * platform puts a prefix before the app's routes in the URL the caller used
   * (API Gateway's stage: /prod/jobs). Default: the URL's path. A signed
   * request is still checked against the URL's path, as the caller sent it.
   */
  routePath?: ((request: Request, env: unknown) => string) | undefined;
}

const HEALTH_TIMEOUT_MS = 3000;
/**
 * How long a good /healthz answer is given again without asking the
 * database. /healthz takes no credentials, and a Worker opens a connection
 * for each request: without it, anyone could make the database open one
 * connection per request they send (max_connections, a backend each).
 * Only a good answer is kept: a failed probe is asked again at once.
 */
export const HEALTH_REUSE_MS = 1000;
/** How long /stats and /metrics wait for their counts. */
const COUNTS_TIMEOUT_MS = 10_000;
/** How long POST /jobs waits for its publish. */
const PUBLISH_TIMEOUT_MS = 10_000;

/**
 * The HTTP API as a web-standard hono app, servable by any runtime
 * (@hono/node-server, a Lambda through hono/aws-lambda, a Worker's fetch):
 *
 *   GET  /healthz  database reachable (no auth; a good answer is reused for HEALTH_REUSE_MS)
 *   POST /drain    run drain(batchSize, budget) and answer its report
 *   POST /jobs     publish one job or { jobs: [...] }
 *   POST /events/:event  publish an event: one job per subscribed queue (fan-out)
 *   GET  /jobs     jobs by queue, task, state and body, newest first; GET /jobs/:id one job
 *   GET  /stats    jobs by queue, task and state
 *   GET  /metrics  Prometheus text: queue gauges and this instance's drain counters
 *   GET  /dashboard  an HTML page: queues, last failures, schedules; with
 *                    dashboardActions, POST /dashboard/ACTION from its forms
 *
 * Every route but /healthz needs a bearer token or a signed request (the
 * dashboard also HTTP Basic with the token as the password), checked
 * before the body is read and before any database work. Errors answer
 * `{ "error": { "code", "message", "field" } }`.
 */
export function createApp(options: AppOptions): Hono<{ Variables: AuthVariables }> {
  const { onError, signal, graceMs, hardSignal, deadlineCap } = options;
  const source = options.queue;
  if (typeof source !== 'function' && (typeof source?.drain !== 'function' || typeof source.driver?.query !== 'function')) {
    throw new ValidationError('queue', 'must be a queue from createQueue(), or a function of the env giving one');
  }
  const queueOf = (c: Context): AppQueue => (typeof source === 'function' ? source(c.env) : source);
  const refused = credentialsError(options);
  if (refused) throw refused;
  const { dashboardActions = false } = options;
  if (typeof dashboardActions !== 'boolean') throw new ValidationError('dashboardActions', 'must be a boolean');
  if (dashboardActions && options.token === undefined) {
    throw new ValidationError('dashboardActions', 'needs a token: a browser logs in to the dashboard with it, and it keys the forms\' tokens');
  }
  // What every POST /drain hands its drain, checked by the drain's own rules here: not a 400
  // at each request naming options.graceMs, a field its caller cannot send.
  for (const name of ['graceMs', 'signal', 'hardSignal'] as const) parse(drainOptionsSchema.shape[name], options[name], name);
  const limits = resolveLimits(options.limits);
  const metrics = new DrainMetrics();
  const auth = authentication({ token: options.token, hmacSecret: options.hmacSecret,
                                toleranceSeconds: limits.signatureToleranceSeconds });

  const { routePath } = options;
  const app = new Hono<{ Variables: AuthVariables }>(routePath ? { getPath: (request, o) => routePath(request, o?.env) } : {});
  app.onError((error, c) => errorResponse(c, endedRequest(c, error), onError));
  app.notFound((c) => errorResponse(c, new HttpError(404, 'not_found', `no route for ${c.req.method} ${c.req.path}`)));

  let healthyAt = -Infinity; // when the database last answered a probe (this app's: a Worker's isolate, a server)
  app.get('/healthz', async (c) => {
    if (Date.now() - healthyAt < HEALTH_REUSE_MS) return c.json({ status: 'ok' });
    // Given up with its connection ended: a probe of a silent database must not hold a pool slot.
    await givenUpOn(queueOf(c).driver, AbortSignal.timeout(HEALTH_TIMEOUT_MS)).query('select 1').catch((error: unknown) => {
      // Reported here once, with what failed; an HttpError is not reported again by errorAnswer.
      onError?.(error);
      throw new HttpError(503, 'database_unavailable', 'database unavailable');
    });
    healthyAt = Date.now();
    return c.json({ status: 'ok' });
  });

  /**
   * Runs a publish bounded by PUBLISH_TIMEOUT_MS, its connection ended when
   * given up on: a silent database must hold neither the request nor a pool
   * slot until TCP gives up. Then a 503 saying `maybe` (what may have been
   * published, and how to send it again).
   */
  const bounded = async <T>(maybe: string, run: (signal: AbortSignal) => Promise<T>): Promise<T> => {
    const signal = AbortSignal.timeout(PUBLISH_TIMEOUT_MS);
    try {
      return await run(signal);
    } catch (error) {
      if (!signal.aborted) throw asSent(translateError(error));
      onError?.(error);
      throw new HttpError(503, 'database_unavailable', `database unavailable: no reply within ${PUBLISH_TIMEOUT_MS / 1000} s; ${maybe}`);
    }
  };

  /**
   * Runs a read given up, its connection ended, after COUNTS_TIMEOUT_MS (a 503) or when its caller
   * hangs up first (the request's signal; a 499 no one reads): a read no one waits for holds no pool slot.
   */
  const read = async <T>(c: Context, run: (signal: AbortSignal) => Promise<T>): Promise<T> => {
    const timeout = AbortSignal.timeout(COUNTS_TIMEOUT_MS);
    const signal = AbortSignal.any([timeout, c.req.raw.signal]);
    try {
      return await run(signal);
    } catch (error) {
      if (!signal.aborted) throw asSent(translateError(error));
      if (!timeout.aborted) throw new HttpError(499, 'request_ended', 'the request ended before its read answered: the read was given up');
      onError?.(error);
      throw new HttpError(503, 'database_unavailable', `database unavailable: no reply within ${COUNTS_TIMEOUT_MS / 1000} s`);
    }
  };

  // Every route's bound on a body, before a signed request's check reads it.
  const bodyLimit = limitBody(limits.maxBodyBytes, () => tooLarge(limits));

  // Before the API's own auth, which it replaces: a browser sends Basic, not a bearer token.
  mountDashboard(app, { auth: auth.checkDashboard, bodyLimit, driverOf: (c) => queueOf(c).driver, read,
                        redriveRows: limits.dashboardRedriveRows,
                        actionsToken: dashboardActions ? options.token : undefined, bounded, onError });

  app.use('*', auth.checkHeaders);
  app.use('*', bodyLimit);
  app.use('*', auth.verifySignature);

  app.post('/drain', async (c) => {
    if (options.drain === false) {
      throw new HttpError(404, 'drain_disabled', 'POST /drain is off: this server has no tasks module (start it with --tasks)');
    }
    if (signal?.aborted) throw new HttpError(503, 'shutting_down', 'the server is shutting down');
    const request = parseDrainRequest(parseJson(await c.req.text()), c.req.queries(), limits);
    if (metrics.active >= limits.maxConcurrentDrains) {
      throw new HttpError(429, 'too_many_drains', `${limits.maxConcurrentDrains} drains are running here already; try again`,
        null, { 'Retry-After': '1' });
    }
    const startedAt = Date.now();
    const cap = deadlineCap?.(c.env);
    const deadline = Math.min(startedAt + request.budgetSeconds * 1000, cap ?? Infinity);
    // A drain whose caller went away stops as on a signal: no more claims (no
    // one would read its report, and it would hold a drain slot until its
    // deadline); running jobs finish within graceMs, the rest are settled. The
    // request's signal fires on a disconnect where the runtime tells (Node's
    // server; workerd with enable_request_signal), else never.
    const { stopOn, release } = stopSignal(signal, c.req.raw.signal);
    const done = metrics.start();
    let report: DrainReport;
    try {
      report = await queueOf(c).drain(request.batchSize, deadline, { topic: request.topic, queue: request.queue, signal: stopOn,
                                                                     graceMs, hardSignal, lingerMs: request.lingerMs, pollMs: request.pollMs,
                                                                     filter: request.filter, exclude: request.exclude });
    } catch (error) {
      done(undefined, Date.now() - startedAt);
      throw translateError(error);
    } finally {
      release();
    }
    done(report, report.durationMs);
    // jobs.job keeps each failure's full error; the answer its first line, cut (Lambda caps a reply at 6 MB).
    return c.json({ ...report, failures: report.failures.map((f) => ({ ...f, error: firstLine(f.error) })) });
  });

  app.post('/jobs', async (c) => {
    const request = parsePublishRequest(parseJson(await c.req.text()), limits);
    const queue = queueOf(c);
    if (request.kind === 'one') {
      const id = await bounded('the job may have been published (with a dedupeKey, sending it again with the same key gets '
        + 'that job, not a second one)', (signal) => queue.publish(request.task, request.body, { ...request.options, signal }));
      return c.json({ id }, 201);
    }
    const ids = await bounded('the jobs may have been published (sending them again gets the same job for each job with a '
      + 'dedupeKey; check the others before sending them again)', (signal) => queue.publishBulk(request.jobs, request.queue, { signal }));
    return c.json({ ids }, 201);
  });

  app.post('/events/:event', async (c) => {
    const request = parsePublishEventRequest(c.req.param('event'), parseJson(await c.req.text()));
    const ids = await bounded('the event may have been published: check its queues before sending it again',
      (signal) => publishEvent(queueOf(c).driver, request.event, request.body, { ...request.options, signal }));
    return c.json({ ids }, 201);
  });

  app.get('/jobs', async (c) => {
    const filter = listJobsQuery(c.req.queries());
    return c.json({ jobs: await read(c, (signal) => listJobs(queueOf(c).driver, filter, { signal })) });
  });

  app.get('/jobs/:id', async (c) => {
    const id = c.req.param('id');
    const job = await read(c, (signal) => getJob(queueOf(c).driver, id, { signal }));
    if (!job) throw new HttpError(404, 'not_found', `no job ${id} (never published, or deleted: by retention or deleteJobs)`);
    return c.json({ job });
  });

  app.get('/stats', async (c) => c.json(statsAnswer(await read(c, (signal) => jobCounts(queueOf(c).driver, signal)))));

  app.get('/metrics', async (c) => {
    const { rows, stopped } = await read(c, (signal) => jobCounts(queueOf(c).driver, signal));
    const text = metrics.render(rows, stopped.length);
    return c.text(text, 200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' });
  });

  return app;
}
