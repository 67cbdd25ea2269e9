import { Command, Option } from 'commander';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DEFAULT_OVERRUN_MS } from '../drain.js';
import { PgDrainError, translateError, ValidationError } from '../errors.js';
import { createQueue } from '../queue.js';
import { connect } from './connect.js';
import { fromEnv } from './env.js';
import { integer, nonBlank, seconds, tasksModule } from './flag-parsers.js';
import { capConnections, DEFAULT_HEADERS_TIMEOUT_S, DEFAULT_KEEP_ALIVE_TIMEOUT_S, DEFAULT_MAX_CONNECTIONS,
         DEFAULT_REQUEST_TIMEOUT_S, serverOptions, type BoundFlags } from './serve-bounds.js';
import { listenForStop, unlessAgain, type StopSignals } from './signals.js';
import { loadTasks } from './tasks-module.js';

const log = (line: string) => process.stderr.write(`${line}\n`);

interface ServeOptions extends BoundFlags {
  port: number;
  host: string;
  tasks?: string;
  maxBatch?: number;
  maxBudget?: number;
  maxBody?: number;
  grace: number;
  dsn?: string;
  dashboardActions?: boolean;
  dashboardRedriveRows?: number;
}

/** A listen error as the flag to fix (else the CLI would call a host it cannot resolve a database outage). */
function listenError(error: unknown, opts: ServeOptions): unknown {
  const code = (error as { code?: unknown }).code;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EADDRNOTAVAIL') {
    return new ValidationError('--host', `cannot listen on ${JSON.stringify(opts.host)} (${code})`, { cause: error });
  }
  if (code === 'EADDRINUSE' || code === 'EACCES') {
    return new ValidationError('--port', `cannot listen on port ${opts.port} (${code === 'EADDRINUSE' ? 'in use' : 'not permitted'})`,
                               { cause: error });
  }
  return error;
}

/** What the API answers 503 for: an outage, whose every request would log it again. */
const OUTAGES = new Set(['database_unavailable', 'not_migrated', 'resources_exhausted']);

/**
 * serve's log line for an error a request met: one line (code, message) for
 * an outage, so that one does not flood the log with a stack per request; the
 * stack for anything else (a 500: a bug, or a failure pgdrain does not know).
 * A bound on the database that ran out (AbortSignal.timeout's reason) is an outage.
 */
function errorLine(error: unknown): string {
  const e = translateError(error);
  if (e instanceof PgDrainError && OUTAGES.has(e.code)) return `pgdrain: ${e.code}: ${e.message.split('\n')[0]}`;
  if (e instanceof Error && e.name === 'TimeoutError') return `pgdrain: database_unavailable: no reply (${e.message})`;
  return `pgdrain: ${error instanceof Error ? error.stack ?? error.message : String(error)}`;
}

/** After the grace and the overrun, how much longer a drain's answer may take to go out. */
const CUT_MARGIN_MS = 2000;

/**
 * `pgdrain serve`: the HTTP API on Node. Credentials come from the
 * environment only (PGDRAIN_TOKEN, PGDRAIN_HMAC_SECRET), never from flags,
 * which other users of the machine can read in the process list. Without
 * --tasks it publishes and reports but does not drain. On SIGTERM it stops
 * accepting, lets running drains wind down (--grace), then exits; a second
 * SIGTERM or a SIGINT makes them stop their running jobs at once (nacked, an attempt spent: retried, or failed with no retries left).
 */
export function serveCommand(): Command {
  return new Command('serve')
    .description('serve the HTTP API: POST /drain, POST /jobs, POST /events/:event, GET /stats, /healthz, /metrics')
    .addOption(new Option('--port <n>', 'port to listen on (0: any free port)').argParser(integer(0, 65535))
      .env('PORT').default(8080))
    .option('--host <address>', 'address to listen on (0.0.0.0 in a container)', nonBlank('an address (0.0.0.0 for every interface)'),
      '127.0.0.1')
    .option('--tasks <module>', 'ES module whose exports are the task handlers (default: PGDRAIN_TASKS; without either, POST /drain is off)',
      tasksModule)
    .option('--max-batch <n>', 'largest batchSize a request may ask for (default 1000)', integer(1, 10000))
    .option('--max-budget <seconds>', 'longest drain a request may ask for (default 300)', seconds(0.1, 86400))
    .option('--max-body <bytes>', 'largest request body (default 1048576)', integer(1, 100 * 1024 * 1024))
    .option('--headers-timeout <seconds>', `longest a request's headers may take to arrive (default ${DEFAULT_HEADERS_TIMEOUT_S})`,
      seconds(0.1, 3600))
    .option('--request-timeout <seconds>', `longest a whole request (headers and body, not the answer) may take to arrive `
      + `(default ${DEFAULT_REQUEST_TIMEOUT_S}, or --headers-timeout if longer)`, seconds(0.1, 86400))
    .option('--keep-alive-timeout <seconds>', `how long an idle keep-alive connection stays open (default ${DEFAULT_KEEP_ALIVE_TIMEOUT_S}; `
      + 'behind a load balancer, longer than its idle timeout)', seconds(0.1, 3600))
    .option('--max-connections <n>', `most open connections; past it the one longest without a request in progress is closed `
      + `(default ${DEFAULT_MAX_CONNECTIONS})`, integer(1, 1_000_000))
    .option('--grace <seconds>', 'on SIGTERM, how long running handlers may finish', seconds(0, 3600), 10)
    .option('--dashboard-actions', 'GET /dashboard gets forms: pause/resume a queue, redrive failed jobs, cancel a job (needs PGDRAIN_TOKEN)')
    .option('--dashboard-redrive-rows <n>', 'most failed jobs the dashboard\'s redrive of a queue puts back per click (default 10000; '
      + 'with --dashboard-actions)', integer(1, 1_000_000))
    .addOption(new Option('--dsn <url>', 'PostgreSQL URL (default: DATABASE_URL, else the embedded database)'))
    .action(async (_flags: unknown, cmd: Command) => {
      // As drain reads it (the image sets PGDRAIN_TASKS for both commands): by --tasks' rule, set but empty refused.
      fromEnv(cmd, cmd.options.find((o) => o.long === '--tasks')!, 'PGDRAIN_TASKS');
      const opts = cmd.opts<ServeOptions>();
      // Set to "" is unset (a template's optional secret), as the Lambda and the Worker take it (docs/http-and-lambda.md).
      const token = process.env.PGDRAIN_TOKEN || undefined;
      const hmacSecret = process.env.PGDRAIN_HMAC_SECRET || undefined;
      if (token === undefined && hmacSecret === undefined) {
        // Said as the Lambda's and the Worker's misconfiguration is (credentialSettingsError).
        throw new ValidationError('PGDRAIN_TOKEN', 'is not set, nor PGDRAIN_HMAC_SECRET: set one (a bearer token, or the secret of '
          + 'signed requests) of at least 16 characters');
      }
      // As for drain: the first SIGTERM stops new work and gives running handlers
      // the grace; a second SIGTERM or a SIGINT stops their jobs now (nacked, an attempt spent). Taken
      // before the tasks module loads, so a signal then is logged, a second one
      // ends a slow load, and a failed start-up still exits (done(), then
      // exitWhenEnded) though the module left a timer running, signals held or not.
      const stopping = listenForStop(opts.grace, log, "the server's shutdown");
      try {
        await serveWith(opts, stopping, token, hmacSecret);
      } finally {
        stopping.done();
      }
    });
}

/** Serve's start-up, then the server until it has shut down; the caller listens for signals. */
async function serveWith(opts: ServeOptions, stopping: StopSignals, token: string | undefined,
                         hmacSecret: string | undefined): Promise<void> {
  // The HTTP stack loads only for this command, keeping drain's cold start short.
  const [{ serve }, { createApp }, { credentialRule }] =
    await Promise.all([import('@hono/node-server'), import('../http/app.js'), import('../http/auth.js')]);
  // Before the tasks module and the database: a bad credential creates nothing.
  for (const [variable, kind, value] of [['PGDRAIN_TOKEN', 'token', token], ['PGDRAIN_HMAC_SECRET', 'hmacSecret', hmacSecret]] as const) {
    const rule = value === undefined ? null : credentialRule(kind, value);
    if (rule) throw new ValidationError(variable, rule);
  }
  const bounds = serverOptions(opts);
  if (opts.dashboardActions && token === undefined) {
    throw new ValidationError('--dashboard-actions', 'needs PGDRAIN_TOKEN: a browser logs in to the dashboard with it, and it keys the forms\' tokens');
  }
  if (opts.dashboardRedriveRows !== undefined && !opts.dashboardActions) {
    throw new ValidationError('--dashboard-redrive-rows', 'bounds the dashboard\'s redrive button: give --dashboard-actions too');
  }
  const tasks = opts.tasks === undefined ? undefined : await unlessAgain(loadTasks(opts.tasks), stopping.again, (name) =>
    new PgDrainError('tasks_module', `cannot load tasks module ${opts.tasks}: a second signal (${name}) came before it had loaded`,
                     { field: '--tasks' }));
  const { driver } = await connect(opts.dsn, log);
  try {
    const app = createApp({
      queue: createQueue({ driver, tasks }),
      token, hmacSecret,
      drain: tasks !== undefined,
      dashboardActions: opts.dashboardActions === true,
      limits: {
        ...(opts.maxBatch === undefined ? {} : { maxBatchSize: opts.maxBatch }),
        ...(opts.maxBudget === undefined ? {} : { maxBudgetSeconds: opts.maxBudget }),
        ...(opts.maxBody === undefined ? {} : { maxBodyBytes: opts.maxBody }),
        ...(opts.dashboardRedriveRows === undefined ? {} : { dashboardRedriveRows: opts.dashboardRedriveRows }),
      },
      signal: stopping.signal,
      graceMs: opts.grace * 1000,
      hardSignal: stopping.hardSignal,
      onError: (error) => log(errorLine(error)),
    });
    // Requests being answered: a drain whose caller went away runs on (its grace, its last settle)
    // after its connection closed, and server.close() waits for connections only.
    const answering = new Set<Promise<unknown>>();
    const fetch = (request: Request, env: unknown) => {
      const answer = Promise.resolve(app.fetch(request, env));
      answering.add(answer);
      const forget = () => void answering.delete(answer);
      answer.then(forget, forget);
      return answer;
    };
    await new Promise<void>((resolve, reject) => {
      const server = serve({ fetch, port: opts.port, hostname: opts.host, serverOptions: bounds }, (info: AddressInfo) => {
        const host = info.family === 'IPv6' ? `[${info.address}]` : info.address;
        log(`pgdrain: serving on http://${host}:${info.port}${tasks ? '' : ' (no --tasks: POST /drain is off)'}`);
        // A signal that came before it listened (while it loaded, or held from start-up) acts now.
        if (stopping.signal.aborted) shutDown();
      });
      server.once('error', (error) => reject(listenError(error, opts)));
      // Before any socket comes: serve() only starts listening.
      capConnections(server as Server, opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS, log);
      // Not before it listens: close() would fail (not running), and the listen would go on.
      stopping.signal.addEventListener('abort', () => {
        if (server.listening) shutDown();
      }, { once: true });
      /** Once every request being answered has been, or at `at` (epoch ms: a drain's answer is bounded by then). */
      function answered(at: number): Promise<unknown> {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const bound = new Promise((done) => (timer = setTimeout(done, Math.max(0, at - Date.now()))));
        return Promise.race([Promise.allSettled([...answering]), bound]).finally(() => clearTimeout(timer));
      }
      function shutDown() {
        log('pgdrain: shutting down: no new requests; running drains stop claiming');
        // close() waits for connections with a request in flight, then for the requests still being
        // answered (drains wind down within --grace, their callers there or not).
        const cutAt = Date.now() + opts.grace * 1000 + DEFAULT_OVERRUN_MS + CUT_MARGIN_MS;
        server.close((error) => (error ? reject(error) : void answered(cutAt).then(() => resolve())));
        // A request whose body never finishes (a client gone quiet, or anyone
        // holding a half-sent request open) would hold close() forever: past
        // the grace and a drain's overrun, every connection left is cut.
        const cut = setTimeout(() => (server as { closeAllConnections?(): void }).closeAllConnections?.(), cutAt - Date.now());
        cut.unref();
      }
    });
  } finally {
    stopping.done();
    await driver.close().catch(() => {});
  }
}
