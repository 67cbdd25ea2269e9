/**
 * Cloudflare Workers adapter: a module Worker whose cron trigger drains the
 * queue, and whose fetch() serves the HTTP API (POST /drain, POST /jobs, …).
 *
 * Your tasks are bundled into the Worker (a Worker cannot load code at run
 * time). Write an entry file and point wrangler.toml's `main` at it:
 *
 *     // worker.ts
 *     import { createWorker } from 'pgdrain/cloudflare';
 *     import * as tasks from './tasks.js';
 *     export default createWorker(tasks);
 *
 * `wrangler deploy` bundles it with the tasks module and everything it imports,
 * @neondatabase/serverless included when it is installed (an optional peer
 * dependency: the Neon drivers need it, a Worker on Hyperdrive does not; one
 * deployed without it answers a Neon binding with an error saying to install
 * it). functions/cloudflare-demo.ts is this repository's Worker, around the
 * demo tasks.
 *
 * Time limits (Workers platform): one cron invocation may run 15 minutes of
 * wall-clock time; CPU time is 30 s by default on the Paid plan (up to 5 min
 * with `[limits] cpu_ms`), 10 ms on Free. The drain's deadline is wall-clock,
 * so the default 25 s bounds the CPU a drain can use below the 30 s default
 * too; DRAIN_DEADLINE_SECONDS may go up to 840 (14 min), keeping the last
 * settle statement inside the 15 minutes. A drain never starts a job whose
 * timeout does not fit before its deadline: with the default 25 s, publish
 * the jobs a Worker drains with a timeoutSeconds under 24.5 (the queue's
 * default is 60), or raise DRAIN_DEADLINE_SECONDS. A cron drain that finds
 * due jobs but can run none of them logs a warning saying so.
 *
 * Connections: a Worker invocation may hold 6 open at once; the pool takes
 * at most 4, leaving 2 for the handlers' own fetch() calls (1 while a drain
 * lingers over pg: its LISTEN session is a fifth, outside the pool). A transactional
 * task holds one while it runs, so a Worker whose tasks include one runs at
 * most 3 jobs at once, keeping one connection for the drain's own claims and
 * settles.
 *
 * Compatibility flags (wrangler.toml): nodejs_compat (pg, the Neon driver)
 * and enable_request_signal: with it a POST /drain whose caller disconnects
 * stops claiming (request.signal fires); without it the drain goes on to its
 * deadline, and may be cut 30 s after the disconnect.
 *
 * Bindings (wrangler.toml [vars], secrets, [[hyperdrive]]):
 * - DATABASE_URL (secret): the database; used through the Neon WebSocket Pool.
 * - HYPERDRIVE (optional binding): when bound, pg connects through it instead.
 * - DATABASE_DRIVER: force "hyperdrive", "neon" (WebSocket Pool), "neon-http" or "pg".
 * - PGDRAIN_TOKEN and/or PGDRAIN_HMAC_SECRET (secrets, 16+ characters): how
 *   HTTP callers authenticate (bearer token, signed request), as for `pgdrain serve`.
 * - DRAIN_BATCH (default 50), DRAIN_DEADLINE_SECONDS (default 25), DRAIN_TOPIC,
 *   DRAIN_QUEUE (a named queue), DRAIN_FILTER (a JSON object the attributes
 *   of claimed jobs contain), DRAIN_EXCLUDE (a JSON array of up to 100
 *   objects: no job whose attributes contain one is claimed): the cron drain,
 *   and the defaults of POST /drain (batchSize, budgetSeconds, topic, queue,
 *   filter, exclude: each one the request gives replaces its binding).
 * - PGDRAIN_LINGER_SECONDS (default 0), PGDRAIN_POLL_SECONDS (default 1): the
 *   cron drain waits that long on an empty queue for new work, claiming every
 *   poll, never past DRAIN_DEADLINE_SECONDS (docs/fast-pickup.md). It LISTENs
 *   for publishes with DATABASE_DRIVER=pg; Hyperdrive (transaction pooling)
 *   and the Neon drivers only poll.
 * - NEON_WS_PROXY / NEON_HTTP_ENDPOINT: a self-hosted WebSocket proxy or HTTP
 *   endpoint in front of a PostgreSQL that is not Neon.
 */
import { createApp } from '../src/http/app.js';
import { DEFAULT_OVERRUN_MS } from '../src/drain.js';
import { ValidationError, type DrainReport, type Queue, type TaskMap } from '../src/index.js';
import { openQueue } from './cloudflare-queue.js';
import { asBindingError, MAX_DEADLINE_SECONDS, readSettings, type Env, type Settings } from './cloudflare-settings.js';
import { fastPickup } from './fast-pickup.js';
import { credentialSettingsError, misconfigured } from '../src/http/misconfigured.js';

// Types only beside createWorker: workerd takes every named export of the entry module for a handler.
export type { Env } from './cloudflare-settings.js';

/** The parts of the Workers runtime types this file uses. */
export interface ScheduledController {
  cron: string;
  scheduledTime: number;
}
export interface ExecutionContext {
  waitUntil(promise: Promise<unknown>): void;
}
export interface WorkerHandlers {
  fetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response>;
  scheduled(controller: ScheduledController, env: Env, ctx: ExecutionContext): Promise<void>;
}

/**
 * After a POST /drain's caller disconnects, how long its running jobs may go
 * on: Cloudflare keeps waitUntil work 30 s after a disconnect; this leaves
 * the drain's wait for a silent database (DEFAULT_OVERRUN_MS) and a second
 * for the last settle inside them.
 */
const DISCONNECT_GRACE_MS = 30_000 - DEFAULT_OVERRUN_MS - 1000;

/**
 * The cron side: one drain with the configured batch, deadline and linger
 * (the deadline bounds it); its topic, queue and selection are the queue's
 * (openQueue). scheduled() gets no remaining time, so the deadline counts
 * from now (a late start does not shorten it), not from controller.scheduledTime.
 */
async function runDrain(tasks: TaskMap, env: Env, ctx: ExecutionContext, settings: Settings): Promise<DrainReport> {
  const queue = await openQueue(tasks, env, settings);
  try {
    return await queue.drain(settings.DRAIN_BATCH, Date.now() + settings.DRAIN_DEADLINE_SECONDS * 1000,
                             fastPickup(settings.PGDRAIN_LINGER_SECONDS, settings.PGDRAIN_POLL_SECONDS));
  } finally {
    // Closing the pool needs no one to wait for it; waitUntil keeps the invocation alive until it is done.
    ctx.waitUntil(queue.close().catch(() => {}));
  }
}

/**
 * Due jobs whose timeout is longer than the whole budget never fit a cron
 * drain: each one claims nothing, for ever. Says so, and how to fix it.
 */
function unfitWarning(report: DrainReport, settings: Settings): string | undefined {
  if (report.claimed > 0 || report.skipped === 0) return undefined;
  const seconds = settings.DRAIN_DEADLINE_SECONDS;
  return `pgdrain: this drain claimed nothing: ${report.skipped} due job${report.skipped === 1 ? ' has' : 's have'} a timeout`
    + ` longer than DRAIN_DEADLINE_SECONDS (${seconds} s, less a 0.5 s settle margin), so no cron drain will run them.`
    + ` Publish them with a timeoutSeconds under ${seconds - 0.5} (the queue's default timeout is 60 s),`
    + ` or raise DRAIN_DEADLINE_SECONDS above their timeout (at most ${MAX_DEADLINE_SECONDS}; over 30 s of CPU needs [limits] cpu_ms).`;
}

/** One JSON line per drain, for Workers Logs. */
function summary(report: DrainReport): Record<string, unknown> {
  const { failures, ...counts } = report;
  return { ...counts, failures: failures.slice(0, 10).map(({ id, task, attempt, willRetry, error }) =>
    ({ id, task, attempt, willRetry, error: error.split('\n')[0] })) };
}

/**
 * The fetch side: the shared HTTP app (src/http: POST /drain, POST /jobs,
 * GET /stats, /metrics, /healthz). One app per isolate, so /metrics counts
 * every drain the isolate served and the signed-request replay guard
 * remembers across requests; each request gets a queue of its own, whose
 * sockets close with it (a Worker cannot keep them across requests), handed
 * to the app in the request's env. A wrong binding answers 500 naming it to a
 * caller whose credentials pass (it did nothing wrong), 401 to anyone else
 * (src/http/misconfigured.ts).
 */
function httpServer(tasks: TaskMap): (request: Request, env: Env, ctx: ExecutionContext) => Promise<Response> {
  // The request's queue rides in the env the app is fetched with.
  const QUEUE = '__pgdrainQueue';
  let built: { app: ReturnType<typeof createApp>; key: string } | undefined;
  const appFor = (env: Env, settings: Settings) => {
    // Bindings are fixed per deployment; rebuilt only if they differ (tests run several Workers).
    const key = JSON.stringify([env.PGDRAIN_TOKEN, env.PGDRAIN_HMAC_SECRET, settings.DRAIN_DEADLINE_SECONDS, settings.DRAIN_BATCH]);
    if (built?.key !== key) {
      // None set, or one createApp refuses: named by its binding (createApp would say token / hmacSecret).
      const refused = credentialSettingsError(env, 'env.', 'set one (wrangler secret put PGDRAIN_TOKEN) to serve HTTP requests');
      if (refused) throw refused;
      built = {
        key,
        app: createApp({
          queue: (env) => (env as Record<typeof QUEUE, Queue>)[QUEUE],
          token: env.PGDRAIN_TOKEN || undefined,
          hmacSecret: env.PGDRAIN_HMAC_SECRET || undefined,
          // DRAIN_DEADLINE_SECONDS is sized to the CPU limit: no request may ask for more.
          limits: { maxBudgetSeconds: settings.DRAIN_DEADLINE_SECONDS, defaultBudgetSeconds: settings.DRAIN_DEADLINE_SECONDS,
                    defaultBatchSize: settings.DRAIN_BATCH },
          // The only signal here is a caller's disconnect: its running jobs get until the 30 s Cloudflare then
          // gives waitUntil, less the wait for a silent database, before they are stopped and retried.
          graceMs: DISCONNECT_GRACE_MS,
          onError: (error) => console.error('pgdrain:', error),
        }),
      };
    }
    return built.app;
  };
  return async (request, env, ctx) => {
    let queue: Queue | undefined;
    try {
      const settings = readSettings(env);
      const app = appFor(env, settings);
      queue = await openQueue(tasks, env, settings);
      const answer = Promise.resolve(app.fetch(request, { ...env, [QUEUE]: queue }, ctx as never));
      // A caller that disconnects cancels the request's work: under waitUntil
      // (30 s after a disconnect) a drain still settles what it ran. With the
      // enable_request_signal flag the disconnect fires request.signal: the
      // drain stops claiming, and what runs past DISCONNECT_GRACE_MS is
      // stopped and retried. Without the flag it drains on to its deadline
      // and may be cut at those 30 s (its jobs then come back after their leases).
      ctx.waitUntil(answer.then(() => undefined, () => undefined));
      return await answer;
    } catch (error) {
      const e = asBindingError(error);
      if (!(e instanceof ValidationError) || !e.field?.startsWith('env.')) throw error;
      console.error('pgdrain: the Worker is misconfigured:', e.message);
      return await misconfigured(request, env, e); // credentials first: an anonymous caller gets 401
    } finally {
      if (queue) ctx.waitUntil(queue.close().catch(() => {}));
    }
  };
}

/** Builds the Worker's handlers around your tasks. */
export function createWorker(tasks: TaskMap): WorkerHandlers {
  return {
    fetch: httpServer(tasks),
    async scheduled(controller, env, ctx) {
      try {
        const settings = readSettings(env);
        const report = await runDrain(tasks, env, ctx, settings);
        console.log(JSON.stringify({ pgdrain: 'drain', cron: controller.cron, ...summary(report) }));
        const warning = unfitWarning(report, settings);
        if (warning) console.warn(warning);
      } catch (error) {
        // Thrown again so the invocation shows as failed; the jobs are safe in the database.
        console.error(`pgdrain: cron ${controller.cron} drain failed`, error);
        throw error;
      }
    },
  };
}
