// The Lambda handler as deployed: the bundle built by scripts/build-lambda.mjs,
// run through lambda-local (the context's remaining time runs down for real)
// with EventBridge, EventBridge Scheduler and Function URL (payload 2.0)
// events, against a real PostgreSQL.
import { execFileSync } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import lambdaLocal from 'lambda-local';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { tcpProxy } from './support/tcp-proxy.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} } });
const TOKEN = 'lambda-token-0123456789abcdef';
const SECRET = 'lambda-hmac-secret-0123456789';

const dir = mkdtempSync(join(tmpdir(), 'pgdrain-lambda-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
// The tasks module bundled into the function. It counts running handlers on
// globalThis so the test can see that nothing is left running, and keeps when
// each started (Date.now(), the clock the adapter's deadline is on).
writeFileSync(join(dir, 'tasks.mjs'), `
import { defineTask } from ${JSON.stringify(resolve('src/define-task.ts'))};
const state = (globalThis.__lambdaTasks ??= { running: 0, starts: [] });
const sleep = (ms, signal) => new Promise((resolve, reject) => {
  const t = setTimeout(resolve, ms);
  signal.addEventListener('abort', () => { clearTimeout(t); reject(signal.reason); }, { once: true });
});
async function tracked(fn) {
  state.running++;
  state.starts.push(Date.now());
  try { return await fn(); } finally { state.running--; }
}
export const work = {
  quick: (body, ctx) => tracked(async () => ({ job: ctx.job.id })),
  slow: (body, ctx) => tracked(() => sleep(body?.ms ?? 100, ctx.signal).then(() => 'slow done')),
  hang: (body, ctx) => tracked(() => sleep(3_600_000, ctx.signal)),
};
export const other = { job: async () => 'other done' };
// Runs in the transaction that acks it, holding a pooled connection for body.s seconds. Keeps the most jobs
// leased at once as it began and as it ended (claimed, their outcomes not yet recorded: its own among them).
export const tx = { hold: defineTask('tx.hold', async (body, ctx) => {
  const leased = async () => {
    const { rows } = await ctx.db.query('select count(*)::int as n from jobs.job_queue where lease_until is not null');
    state.mostLeased = Math.max(state.mostLeased ?? 0, rows[0].n);
  };
  await leased();
  await ctx.db.query('select pg_sleep($1)', [body.s]);
  await leased();
}, { transactional: true }) };
`);
const build = execFileSync(process.execPath, ['scripts/build-lambda.mjs', '--tasks', join(dir, 'tasks.mjs'), '--outdir', dir],
                           { encoding: 'utf8' });
const BUNDLE = join(dir, 'index.mjs');
const tasksState = () => (globalThis as { __lambdaTasks?: { running: number; starts: number[]; mostLeased?: number } }).__lambdaTasks;
const running = () => tasksState()?.running ?? 0;
/** When each handler started since the last call, taken. */
const handlerStarts = () => tasksState()?.starts.splice(0) ?? [];
/** When the invocation times out, as the function read it from getRemainingTimeInMillis (Date.now() + what was left). */
const timesOut: number[] = [];
/**
 * Whether every handler of an invocation started by the deadline the adapter gave drain() (the
 * invocation's end, as read, less PGDRAIN_SAFETY_MARGIN_MS: 1 s): what it did, not how long it took.
 */
function startedByDeadline(starts: number[]) {
  const ends = timesOut.splice(0);
  return { read: ends.length > 0, started: starts.length > 0, late: starts.filter((t) => t > Math.min(...ends) - 1000).length };
}

const ENV = { DATABASE_URL: db.url, PGDRAIN_TOKEN: TOKEN, PGDRAIN_HMAC_SECRET: SECRET, PGDRAIN_BATCH_SIZE: '8', PGDRAIN_POOL_MAX: '2' };

/** One invocation of the bundle's handler; a warm instance per bundle path (ES modules load once). */
function invoke(event: unknown, timeoutMs: number, bundle = BUNDLE, env: Record<string, string> = ENV): Promise<any> {
  return lambdaLocal.execute({ event, lambdaPath: bundle, esm: true, lambdaHandler: 'handler', timeoutMs,
                               environment: env, verboseLevel: 0, contextOverwrite: (context: { getRemainingTimeInMillis(): number }) => {
                                 const remaining = context.getRemainingTimeInMillis;
                                 context.getRemainingTimeInMillis = () => {
                                   const ms = remaining();
                                   timesOut.push(Date.now() + ms);
                                   return ms;
                                 };
                               } });
}

// Event shapes as AWS delivers them.
const eventBridge = () => ({
  version: '0', id: randomUUID(), 'detail-type': 'Scheduled Event', source: 'aws.events', account: '123456789012',
  time: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), region: 'us-east-1',
  resources: ['arn:aws:events:us-east-1:123456789012:rule/pgdrain-every-minute'], detail: {},
});
// EventBridge Scheduler delivers the schedule's Input, after substituting its
// context attributes: this is deploy/lambda/template.yaml's Input.
const scheduler = (pgdrain?: object) => ({
  source: 'aws.scheduler', 'detail-type': 'Scheduled Event', time: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
  id: 'd32c5kddcf5bb8c3', resources: ['arn:aws:scheduler:us-east-1:123456789012:schedule/default/pgdrain-drain'],
  ...(pgdrain ? { pgdrain } : {}),
});
function functionUrl(method: string, path: string, opts: { body?: string; headers?: Record<string, string>; base64?: boolean } = {}) {
  const [rawPath, rawQueryString = ''] = path.split('?');
  return {
    version: '2.0', routeKey: '$default', rawPath, rawQueryString,
    headers: { host: 'abcdefghijklmnop.lambda-url.us-east-1.on.aws', 'x-forwarded-proto': 'https', 'x-forwarded-port': '443',
               'x-amzn-trace-id': 'Root=1-67890abc-0123456789abcdef01234567', 'user-agent': 'curl/8.5.0',
               ...(opts.body ? { 'content-type': 'application/json' } : {}), ...opts.headers },
    ...(rawQueryString ? { queryStringParameters: Object.fromEntries(new URLSearchParams(rawQueryString)) } : {}),
    requestContext: {
      accountId: 'anonymous', apiId: 'abcdefghijklmnop', domainName: 'abcdefghijklmnop.lambda-url.us-east-1.on.aws',
      domainPrefix: 'abcdefghijklmnop', requestId: randomUUID(), routeKey: '$default', stage: '$default',
      time: '23/Nov/2026:02:40:00 +0000', timeEpoch: Date.now(),
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '203.0.113.7', userAgent: 'curl/8.5.0' },
    },
    ...(opts.body === undefined ? {} : { body: opts.base64 ? Buffer.from(opts.body).toString('base64') : opts.body,
                                         isBase64Encoded: Boolean(opts.base64) }),
  };
}
const bearer = { authorization: `Bearer ${TOKEN}` };
// API Gateway's shapes of the same request: a REST API (payload 1.0) and an HTTP API (payload 2.0).
// Both carry when the gateway received the request (ms since the epoch).
function restApi(method: string, path: string, opts: { body?: string; headers?: Record<string, string>; receivedAt?: number } = {}) {
  const headers = { host: 'a1b2c3d4e5.execute-api.us-east-1.amazonaws.com', 'content-type': 'application/json', ...opts.headers };
  return {
    resource: '/{proxy+}', path, httpMethod: method, headers,
    multiValueHeaders: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, [v]])),
    queryStringParameters: null, multiValueQueryStringParameters: null, pathParameters: { proxy: path.slice(1) }, stageVariables: null,
    requestContext: {
      resourceId: 'abc123', resourcePath: '/{proxy+}', httpMethod: method, extendedRequestId: 'c6af9ac6-7b61-11e6-9a41', requestTime: '23/Nov/2026:02:40:00 +0000',
      path: `/prod${path}`, accountId: '123456789012', protocol: 'HTTP/1.1', stage: 'prod', domainPrefix: 'a1b2c3d4e5',
      requestTimeEpoch: opts.receivedAt ?? Date.now(), requestId: randomUUID(),
      identity: { sourceIp: '203.0.113.7', userAgent: 'curl/8.5.0' },
      domainName: 'a1b2c3d4e5.execute-api.us-east-1.amazonaws.com', apiId: 'a1b2c3d4e5',
    },
    body: opts.body ?? null, isBase64Encoded: false,
  };
}
function httpApi(method: string, path: string, opts: { body?: string; headers?: Record<string, string> } = {}) {
  const event = functionUrl(method, path, opts);
  event.headers.host = 'a1b2c3d4e5.execute-api.us-east-1.amazonaws.com';
  Object.assign(event.requestContext, { accountId: '123456789012', apiId: 'a1b2c3d4e5', domainPrefix: 'a1b2c3d4e5',
                                        domainName: 'a1b2c3d4e5.execute-api.us-east-1.amazonaws.com' });
  return event;
}

/** Open LISTEN sessions of lingering drains (src/db/pg-events.ts names them). */
const listening = async () => (await sql<{ n: number }>(
  `select count(*)::int as n from pg_stat_activity where datname = $1 and application_name = 'pgdrain-events'`, [db.name]))[0]!.n;
const leased = async () => (await sql<{ n: number }>('select count(*)::int as n from jobs.job_queue where lease_until is not null'))[0]!.n;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
});

describe('the bundle', () => {
  it('is one ES module exporting handler; the build reports its size', async () => {
    expect(build).toMatch(/index\.mjs \d+\.\d KiB \(gzip \d+\.\d KiB\)/);
    console.log(build.trim());
    const mod = await import(BUNDLE);
    expect(typeof mod.handler).toBe('function');
  });
});

describe('deploy/lambda/template.yaml', () => {
  const cfnTags = ['Ref', 'GetAtt', 'Sub'].map((name) => ({ tag: `!${name}`, resolve: (value: string) => ({ [name]: value }) }));
  const template = parseYaml(readFileSync('deploy/lambda/template.yaml', 'utf8'), { customTags: cfnTags });
  const fn = template.Resources.DrainFunction.Properties;

  it('points at the bundle npm run build:lambda writes, and its handler export', () => {
    expect(template.Transform).toBe('AWS::Serverless-2016-10-31');
    expect(resolve('deploy/lambda', fn.CodeUri)).toBe(resolve('dist/lambda'));
    const [file, exported] = fn.Handler.split('.');
    expect(basename(BUNDLE)).toBe(`${file}.mjs`);
    expect(exported).toBe('handler');
    expect(Object.keys(fn.Environment.Variables)).toEqual(expect.arrayContaining(['DATABASE_URL', 'PGDRAIN_TOKEN', 'PGDRAIN_HMAC_SECRET']));
    expect(fn.Timeout).toBeGreaterThan(60.5 + fn.Environment.Variables.PGDRAIN_SAFETY_MARGIN_MS / 1000); // the default job timeout fits
    expect(existsSync(dirname(BUNDLE))).toBe(true);
  });

  it("its schedule's input, as Scheduler fills it in, is an event the handler drains on", async () => {
    const input = fn.Events.Drain.Properties.Input
      .replace('<aws.scheduler.execution-id>', 'd32c5kddcf5bb8c3').replace('<aws.scheduler.scheduled-time>', '2026-11-23T02:40:00Z')
      .replace('<aws.scheduler.schedule-arn>', 'arn:aws:scheduler:us-east-1:123456789012:schedule/default/pgdrain-Drain');
    await queue.publish('work.quick', null, { timeoutSeconds: 5 });
    expect(await invoke(JSON.parse(input), 10_000)).toMatchObject({ claimed: 1, succeeded: 1, stoppedBy: 'empty' });
  });
});

describe('scheduled drains', () => {
  it('an EventBridge rule event drains the queue and returns the report', async () => {
    await queue.publishBulk(Array.from({ length: 30 }, () => ({ task: 'work.quick', timeoutSeconds: 5 })));
    const report = await invoke(eventBridge(), 30_000);
    expect(report).toMatchObject({ claimed: 30, succeeded: 30, failed: 0, stoppedBy: 'empty' });
    expect(report.batches).toBeGreaterThanOrEqual(4); // PGDRAIN_BATCH_SIZE=8
    expect(await sql('select count(*)::int as n from jobs.job where status = $1', ['success'])).toEqual([{ n: 30 }]);
  });

  it('an EventBridge Scheduler event takes batchSize and topic from its input', async () => {
    await queue.publishBulk([...Array.from({ length: 5 }, () => ({ task: 'work.quick', timeoutSeconds: 5 })),
                             { task: 'other.job', timeoutSeconds: 5 }]);
    const report = await invoke(scheduler({ batchSize: 2, topic: 'work.%' }), 30_000);
    expect(report).toMatchObject({ claimed: 5, succeeded: 5, stoppedBy: 'empty' });
    expect(report.batches).toBeGreaterThanOrEqual(3);
    expect(await sql('select task from jobs.job_queue')).toEqual([{ task: 'other.job' }]);
    // An empty event drains nothing (lambda-event-shapes): give a schedule an input, as the template does.
    await expect(invoke({}, 30_000)).rejects.toMatchObject({ errorType: 'ValidationError' });
    expect(await sql('select task from jobs.job_queue')).toEqual([{ task: 'other.job' }]);
  });

  it("an event's queue names the named queue it drains", async () => {
    await sql(`select jobs.create_queue('mail')`);
    try {
      await queue.publish('work.quick', null, { timeoutSeconds: 5, queue: 'mail' });
      await queue.publish('work.quick', null, { timeoutSeconds: 5 });
      expect(await invoke(scheduler({ queue: 'mail' }), 30_000)).toMatchObject({ claimed: 1, succeeded: 1 });
      expect(await sql('select queue from jobs.job_queue')).toEqual([{ queue: 'default' }]);
    } finally {
      await sql(`truncate jobs.job_queue, jobs.job; delete from jobs.queue where name = 'mail'`);
    }
  });

  it('a drain setting at the top level of a schedule, not under "pgdrain", fails naming it and claims nothing', async () => {
    await queue.publish('work.quick', null, { timeoutSeconds: 5 });
    const failure = (field: string) => ({ errorType: 'ValidationError',
      errorMessage: expect.stringMatching(new RegExp(`^event\\.${field}: put drain settings under "pgdrain"`)) });
    // Ignored, these would drain the default queue: the one job above.
    await expect(invoke({ ...scheduler(), queue: 'mail' }, 10_000)).rejects.toMatchObject(failure('queue'));
    await expect(invoke({ ...eventBridge(), topic: 'other.%' }, 10_000)).rejects.toMatchObject(failure('topic'));
    await expect(invoke({ ...scheduler({ batchSize: 2 }), lingerSeconds: 5 }, 10_000)).rejects.toMatchObject(failure('lingerSeconds'));
    await expect(invoke({ batchSize: 5 }, 10_000)).rejects.toMatchObject(failure('batchSize'));
    expect(await sql('select count(*)::int as n from jobs.job')).toEqual([{ n: 0 }]);
    expect(await leased()).toBe(0);
  });

  it('with lingerSeconds it picks up a job published while it lingers, woken by its NOTIFY, and ends before its deadline', async () => {
    // pollSeconds 30: no poll comes before the deadline, so only the LISTEN session can wake it.
    await queue.publish('work.quick', { n: 1 }, { timeoutSeconds: 1 });
    const invocation = invoke(scheduler({ lingerSeconds: 5, pollSeconds: 30 }), 15_000);
    // The first job shows as done with the claim that found the queue empty:
    // a drain without a linger returns there, and would never see the second.
    await vi.waitFor(async () => expect(await sql(`select count(*)::int as n from jobs.job`)).toEqual([{ n: 1 }]),
                     { timeout: 10_000, interval: 20 });
    await queue.publish('work.quick', { n: 2 }, { timeoutSeconds: 1 });
    await vi.waitFor(async () => expect(await listening()).toBe(1), { timeout: 10_000, interval: 20 });
    const report = await invocation; // rejects with "Task timed out" if the linger outlived the function
    expect(report).toMatchObject({ claimed: 2, succeeded: 2, stoppedBy: 'empty' });
    expect(await sql(`select body->>'n' as n, status from jobs.job order by 1`))
      .toEqual([{ n: '1', status: 'success' }, { n: '2', status: 'success' }]);
    expect(await listening()).toBe(0); // closed before the invocation returned: nothing left to freeze
  });

  it('PGDRAIN_LINGER_SECONDS and PGDRAIN_POLL_SECONDS make every scheduled drain linger; a linger longer than the budget ends at the deadline', async () => {
    const bundle = join(dir, 'linger.mjs'); // a cold instance: settings are read at the first invocation
    copyFileSync(BUNDLE, bundle);
    await queue.publish('work.quick', { n: 1 }, { timeoutSeconds: 1 });
    try {
      const invocation = invoke(eventBridge(), 6000, bundle, { ...ENV, PGDRAIN_LINGER_SECONDS: '3600', PGDRAIN_POLL_SECONDS: '0.1' });
      await vi.waitFor(async () => expect(await sql(`select count(*)::int as n from jobs.job`)).toEqual([{ n: 1 }]),
                       { timeout: 10_000, interval: 20 });
      await queue.publish('work.quick', { n: 2 }, { timeoutSeconds: 1 });
      // An hour's linger in a function with 6 s left: it returns inside them (lambda-local rejects otherwise).
      expect(await invocation).toMatchObject({ claimed: 2, succeeded: 2, stoppedBy: 'empty' });
    } finally {
      // lambda-local leaves an invocation's environment in process.env, where later cold instances would read it.
      delete process.env.PGDRAIN_LINGER_SECONDS;
      delete process.env.PGDRAIN_POLL_SECONDS;
    }
    expect(await sql(`select count(*)::int as n from jobs.job where status = 'success'`)).toEqual([{ n: 2 }]);
  });

  it('bad schedule input and unknown events fail the invocation with the field named', async () => {
    // lambda-local reports a failed invocation as Lambda does: { errorType, errorMessage, stackTrace }
    const failure = (message: RegExp) => ({ errorType: 'ValidationError', errorMessage: expect.stringMatching(message) });
    await expect(invoke(scheduler({ batchSize: 0 }), 10_000)).rejects.toMatchObject(failure(/^event\.pgdrain\.batchSize: must be at least 1/));
    await expect(invoke(scheduler({ batch: 5 }), 10_000)).rejects.toMatchObject(failure(/^event\.pgdrain: unknown option "batch"/));
    await expect(invoke(scheduler({ lingerSeconds: -1 }), 10_000))
      .rejects.toMatchObject(failure(/^event\.pgdrain\.lingerSeconds: must be a number of seconds from 0 to 86400$/));
    await expect(invoke(scheduler({ lingerSeconds: '30' }), 10_000))
      .rejects.toMatchObject(failure(/^event\.pgdrain\.lingerSeconds: must be a number of seconds/));
    await expect(invoke(scheduler({ lingerSeconds: 30, pollSeconds: 0.01 }), 10_000))
      .rejects.toMatchObject(failure(/^event\.pgdrain\.pollSeconds: must be a number of seconds from 0.05 to 3600$/));
    await expect(invoke({ Records: [{ eventSource: 'aws:sqs' }] }, 10_000)).rejects.toMatchObject(failure(/^event: is neither a schedule/));
    // The runtime logs the thrown error whole: an unknown key of 100 000 characters is cut, not thrown (and logged) whole.
    const long = await invoke(scheduler({ ['k'.repeat(100_000)]: 1 }), 10_000).catch((e: { errorMessage: string; stackTrace: string[] }) => e);
    expect(long).toMatchObject(failure(/^event\.pgdrain: unknown option "k{700,}…$/));
    expect(long.errorMessage.length).toBeLessThanOrEqual(801);
    expect(JSON.stringify(long).length).toBeLessThan(5000);
    // null, or an object's stand-in, is not "no settings": it would drain with the function's own (the job below), unseen.
    await queue.publish('work.quick', null, { timeoutSeconds: 5 });
    await expect(invoke({ ...scheduler(), pgdrain: null }, 10_000))
      .rejects.toMatchObject(failure(/^event\.pgdrain: must be an object of drain settings .* got null$/));
    await expect(invoke({ pgdrain: null }, 10_000)).rejects.toMatchObject(failure(/^event\.pgdrain: must be an object .* got null$/));
    await expect(invoke({ pgdrain: [] }, 10_000)).rejects.toMatchObject(failure(/^event\.pgdrain: must be an object .* got an array$/));
    await expect(invoke(scheduler({ batchSize: null }), 10_000)).rejects.toMatchObject(failure(/^event\.pgdrain\.batchSize: must be a number$/));
    expect(await sql('select count(*)::int as n from jobs.job')).toEqual([{ n: 0 }]);
    expect(await leased()).toBe(0);
  });

  // 5 s remaining leaves the drain 4 s after its 1 s safety margin: the hang's 1 s timeout ends well
  // inside it even when the claim's answer is slow (2 s remaining left 1 s, and a claim answered 0.4 s
  // late on a loaded machine left the hang released at the deadline, or nothing claimed). 60 jobs of
  // 1 s on 8 slots need 7.5 s, so the deadline still stops the drain with work running. A job of 4 s,
  // first in line, fits the 5 s left, less drain()'s settle margin (0.5 s), but never what the deadline it is
  // given leaves (at most 5 - 1 - 0.5 s): no claim takes it.
  it('with 5 s remaining it returns before the function times out and leaves nothing running', async () => {
    await queue.publishBulk([...Array.from({ length: 60 }, () => ({ task: 'work.slow', body: { ms: 1000 }, timeoutSeconds: 2 })),
                             { task: 'work.hang', timeoutSeconds: 1, priority: 1 },
                             { task: 'work.quick', timeoutSeconds: 4, priority: 2 }]);
    handlerStarts();
    timesOut.length = 0;
    // The deadline contract: lambda-local rejects with "Task timed out" if it overruns.
    const report = await invoke(eventBridge(), 5000);
    expect(report.stoppedBy).toBe('deadline');
    expect(startedByDeadline(handlerStarts())).toEqual({ read: true, started: true, late: 0 });
    expect(report.claimed).toBeGreaterThan(0);
    expect(report.claimed).toBeLessThan(61);
    expect(report.succeeded + report.retried + report.failed + report.released).toBe(report.claimed);
    expect(report.failures).toEqual(expect.arrayContaining([expect.objectContaining({ task: 'work.hang', willRetry: true })]));
    expect(running()).toBe(0);
    expect(await leased()).toBe(0);
    expect(await sql(`select attempt from jobs.job_queue where task = 'work.quick'`)).toEqual([{ attempt: 0 }]);
    // nothing lost: every job is still queued or ended
    const { n } = (await sql<{ n: number }>('select (select count(*) from jobs.job_queue) + (select count(*) from jobs.job) as n'))[0]!;
    expect(Number(n)).toBe(62);
  });
});

describe('HTTP events (Function URL, payload 2.0)', () => {
  it('publishes, reports stats and refuses requests without credentials', async () => {
    const created = await invoke(functionUrl('POST', '/jobs', { body: JSON.stringify({ task: 'work.quick', timeoutSeconds: 5 }), headers: bearer }), 10_000);
    expect(created).toMatchObject({ statusCode: 201, headers: { 'content-type': expect.stringMatching(/^application\/json/) } });
    expect(JSON.parse(created.body)).toEqual({ id: expect.stringMatching(/^\d+$/) });
    const many = JSON.stringify({ jobs: [{ task: 'work.quick', timeoutSeconds: 5 }, { task: 'work.quick', timeoutSeconds: 5 }] });
    expect((await invoke(functionUrl('POST', '/jobs', { body: many, headers: bearer, base64: true }), 10_000)).statusCode).toBe(201);

    const stats = await invoke(functionUrl('GET', '/stats', { headers: bearer }), 10_000);
    expect(JSON.parse(stats.body).stats).toEqual([{ queue: 'default', task: 'work.quick', state: 'pending', jobs: 3, oldestDueSeconds: expect.any(Number) }]);

    const denied = await invoke(functionUrl('POST', '/drain', { body: '{}' }), 10_000);
    expect(denied.statusCode).toBe(401);
    expect(JSON.parse(denied.body)).toEqual({ error: { code: 'unauthorized', message: expect.any(String), field: null } });
    const bad = await invoke(functionUrl('POST', '/drain?batchSize=0', { headers: bearer }), 10_000);
    expect(JSON.parse(bad.body)).toMatchObject({ error: { code: 'invalid_argument', field: 'batchSize' } });
    expect(await leased()).toBe(0);
  });

  it('a GET with a body (a Function URL passes it on) is answered as node serve answers it, not a failed invocation', async () => {
    const stats = await invoke(functionUrl('GET', '/stats', { headers: bearer, body: '{"x":1}' }), 10_000);
    expect(stats.statusCode).toBe(200);
    expect(JSON.parse(stats.body)).toHaveProperty('stats');
    const page = await invoke(functionUrl('GET', '/dashboard', { headers: bearer, body: 'x'.repeat(100) }), 10_000);
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('<h1>pgdrain</h1>');
  });

  it('a signed POST /drain drains; its budget is capped by the remaining time', async () => {
    // 7 s to the invocation's end, 6 s to the drain's deadline (PGDRAIN_SAFETY_MARGIN_MS: 1 s): a first claim sent up
    // to 4.5 s late (a loaded machine; 0.5 s settle margin) still fits a 1 s job, and 100 jobs at 4 per 0.3 s cannot
    // all be claimed in 5.5 s. Before, 3 s to its end and 0.5 s jobs: a first claim 1 s late claimed nothing.
    await queue.publishBulk(Array.from({ length: 100 }, () => ({ task: 'work.slow', body: { ms: 300 }, timeoutSeconds: 1 })));
    const body = JSON.stringify({ batchSize: 4, budgetSeconds: 300 });
    const ts = Math.floor(Date.now() / 1000);
    const mac = createHmac('sha256', SECRET).update(`${ts}\nPOST\n/drain\n${body}`).digest('hex');
    handlerStarts();
    timesOut.length = 0;
    // The deadline contract: lambda-local rejects with "Task timed out" if it overruns.
    const answer = await invoke(functionUrl('POST', '/drain', { body, headers: { 'x-pgdrain-timestamp': String(ts), 'x-pgdrain-signature': `sha256=${mac}` } }), 7000);
    expect(answer.statusCode).toBe(200);
    expect(startedByDeadline(handlerStarts())).toEqual({ read: true, started: true, late: 0 });
    const report = JSON.parse(answer.body);
    expect(report).toMatchObject({ stoppedBy: 'deadline' });
    expect(report.claimed).toBeGreaterThan(0);
    expect(report.claimed).toBeLessThan(100);
    expect(running()).toBe(0);
    expect(await leased()).toBe(0);
  });
});

describe('HTTP events (API Gateway)', () => {
  it("a POST /drain's budget stays under API Gateway's 29 s, counted from when the gateway received the request", async () => {
    const body = JSON.stringify({ budgetSeconds: 300 });
    // The function has 60 s left, API Gateway 29 s: a job that needs 40 s cannot finish before the gateway gives up.
    await queue.publish('work.quick', null, { timeoutSeconds: 40 });
    for (const event of [restApi('POST', '/drain', { body, headers: bearer }), httpApi('POST', '/drain', { body, headers: bearer })]) {
      const answer = await invoke(event, 60_000);
      expect(answer.statusCode).toBe(200);
      expect(JSON.parse(answer.body)).toMatchObject({ claimed: 0, skipped: 1, stoppedBy: 'deadline' });
    }
    // A request the gateway received 25 s ago (a cold start, a queue) has under 4 s left.
    await queue.publish('work.quick', null, { timeoutSeconds: 5 });
    const late = await invoke(restApi('POST', '/drain', { body, headers: bearer, receivedAt: Date.now() - 25_000 }), 60_000);
    expect(JSON.parse(late.body)).toMatchObject({ claimed: 0, skipped: 2, stoppedBy: 'deadline' });
    // A Function URL waits up to 15 minutes: the same request runs both.
    const answer = await invoke(functionUrl('POST', '/drain', { body, headers: bearer }), 60_000);
    expect(JSON.parse(answer.body)).toMatchObject({ claimed: 2, succeeded: 2, stoppedBy: 'empty' });
    // So does a Function URL in the China regions, under its own domain.
    await queue.publish('work.quick', null, { timeoutSeconds: 40 });
    const china = functionUrl('POST', '/drain', { body, headers: bearer }) as { requestContext: { domainName: string } };
    china.requestContext.domainName = 'abcdefghijklmnop.lambda-url.cn-north-1.on.amazonwebservices.com.cn';
    expect(JSON.parse((await invoke(china, 60_000)).body)).toMatchObject({ claimed: 1, succeeded: 1 });
  });
});

describe('configuration', () => {
  it('a bad PGDRAIN_LINGER_SECONDS or PGDRAIN_POLL_SECONDS fails scheduled invocations naming it, and claims nothing', async () => {
    await queue.publish('work.quick', null, { timeoutSeconds: 5 });
    for (const [name, variable, value, rule] of [['bad-linger.mjs', 'PGDRAIN_LINGER_SECONDS', 'a minute', 'from 0 to 86400'],
                                                 ['bad-poll.mjs', 'PGDRAIN_POLL_SECONDS', '0', 'from 0.05 to 3600']]) {
      const bundle = join(dir, name!); // a cold instance of its own
      copyFileSync(BUNDLE, bundle);
      await expect(invoke(eventBridge(), 10_000, bundle, { ...ENV, [variable!]: value! })).rejects.toMatchObject({
        errorType: 'ValidationError', errorMessage: `${variable}: must be a number of seconds ${rule}, got ${JSON.stringify(value)}` });
      delete process.env[variable!]; // lambda-local leaves it in process.env
    }
    expect(await sql('select attempt from jobs.job_queue')).toEqual([{ attempt: 0 }]);
  });

  it('a blank or too long PGDRAIN_TOPIC fails scheduled invocations naming it (not as the drain\'s options.topic), and claims nothing', async () => {
    await queue.publish('work.quick', null, { timeoutSeconds: 5 });
    for (const [name, value, rule] of [['blank-topic.mjs', ' \t', 'must be a non-empty pattern'],
                                       ['long-topic.mjs', 'x'.repeat(201), 'must be at most 200 characters']]) {
      const bundle = join(dir, name!); // a cold instance of its own
      copyFileSync(BUNDLE, bundle);
      await expect(invoke(eventBridge(), 10_000, bundle, { ...ENV, PGDRAIN_TOPIC: value! })).rejects.toMatchObject({
        errorType: 'ValidationError', errorMessage: `PGDRAIN_TOPIC: ${rule}, got ${JSON.stringify(value)}` });
      delete process.env.PGDRAIN_TOPIC; // lambda-local leaves it in process.env
    }
    expect(await sql('select attempt from jobs.job_queue')).toEqual([{ attempt: 0 }]);
  });

  it('without DATABASE_URL (unset or empty), HTTP events answer 500 naming it, and scheduled ones fail naming it', async () => {
    const saved = process.env.DATABASE_URL; // lambda-local leaves each invocation's environment in process.env
    delete process.env.DATABASE_URL;
    try {
      for (const [name, env] of [['unset.mjs', { PGDRAIN_TOKEN: TOKEN }], ['empty.mjs', { ...ENV, DATABASE_URL: '' }]] as const) {
        const bundle = join(dir, name); // a cold instance of its own
        copyFileSync(BUNDLE, bundle);
        const answer = await invoke(functionUrl('POST', '/drain', { body: '{}', headers: bearer }), 10_000, bundle, env);
        expect(answer).toMatchObject({ statusCode: 500, headers: { 'content-type': 'application/json' } });
        expect(JSON.parse(answer.body)).toEqual({ error: { code: 'not_configured', field: 'DATABASE_URL',
          message: 'DATABASE_URL: is required: the PostgreSQL URL (set it in the function\'s environment)' } });
        await expect(invoke(eventBridge(), 10_000, bundle, env))
          .rejects.toMatchObject({ errorType: 'ValidationError', errorMessage: expect.stringMatching(/^DATABASE_URL: is required/) });
        delete process.env.DATABASE_URL;
      }
    } finally {
      if (saved !== undefined) process.env.DATABASE_URL = saved;
    }
  });
});

describe('the connection pool across invocations', () => {
  it('runs no more transactional tasks at once than PGDRAIN_POOL_MAX: none spends an attempt waiting for a connection', async () => {
    // PGDRAIN_BATCH_SIZE=8 would claim 8 at once; the pool holds 2 connections, its transactional handlers take
    // one (its size less one), so the rest would wait their turn with their timeouts running. Counted, not timed:
    // the most jobs leased at once, as each handler began and ended, stay within that one. Before, 0.5 s holds
    // against a 1.5 s timeout decided it, and a loaded machine's slow claim or commit could nack a job that ran.
    ((globalThis as { __lambdaTasks?: object }).__lambdaTasks ??= { running: 0, starts: [] });
    tasksState()!.mostLeased = 0;
    await queue.publishBulk(Array.from({ length: 8 }, () => ({ task: 'tx.hold', body: { s: 0.3 }, timeoutSeconds: 30 })));
    expect(await invoke(eventBridge(), 60_000)).toMatchObject({ claimed: 8, succeeded: 8, retried: 0, stale: 0 });
    expect(tasksState()!.mostLeased).toBe(1);
    expect(await sql(`select status, attempts, count(*)::int as n from jobs.job group by 1, 2`))
      .toEqual([{ status: 'success', attempts: 1, n: 8 }]);
  });

  const backends = async () => (await sql<{ pid: number }>(
    `select pid from pg_stat_activity where datname = $1 and application_name = 'pgdrain-lambda' order by pid`, [db.name])).map((r) => r.pid);

  it('is reused by warm invocations and stays within PGDRAIN_POOL_MAX', async () => {
    // A cold instance of its own: the shared one's connections may be older
    // than pg's 10 s idle timeout and close while this test watches.
    const bundle = join(dir, 'pool.mjs');
    copyFileSync(BUNDLE, bundle);
    const others = await backends();
    const ours = async () => (await backends()).filter((pid) => !others.includes(pid));
    await invoke(eventBridge(), 10_000, bundle);
    const first = await ours();
    expect(first.length).toBeGreaterThan(0);
    for (let i = 0; i < 4; i++) {
      await queue.publishBulk(Array.from({ length: 10 }, () => ({ task: 'work.quick', timeoutSeconds: 5 })));
      expect(await invoke(i % 2 ? eventBridge() : functionUrl('GET', '/stats', { headers: bearer }), 10_000, bundle))
        .toBeTruthy();
    }
    const later = await ours();
    expect(later.length).toBeLessThanOrEqual(2);
    // The first invocation's connections still serve: the pool outlived the
    // invocations. (It may have grown to its max: a claim and the cancel
    // check overlapping open a second one.)
    expect(first.every((pid) => later.includes(pid))).toBe(true);
  });

  it('waits for a connection as long as the drain does: a handler holding the only one for 11 s fails no other job', async () => {
    // PGDRAIN_POOL_MAX=1: the transactional handler's transaction holds the pool's one connection,
    // and the settles of the quick jobs wait for it, longer than the 10 s a connection may take to open.
    const bundle = join(dir, 'one.mjs');
    copyFileSync(BUNDLE, bundle);
    await queue.publish('tx.hold', { s: 11 }, { timeoutSeconds: 30 });
    await queue.publishBulk(Array.from({ length: 3 }, () => ({ task: 'work.quick', timeoutSeconds: 30 })));
    const report = await invoke(eventBridge(), 60_000, bundle, { ...ENV, PGDRAIN_POOL_MAX: '1' });
    expect(report).toMatchObject({ claimed: 4, succeeded: 4, failed: 0, retried: 0, stale: 0 });
    expect(await leased()).toBe(0);
  });

  it('survives connections that died while the function was frozen', async () => {
    // While Lambda freezes a function, the network path (a NAT, a proxy, the
    // server's idle timeout) may drop its connections without the frozen pool
    // noticing. This TCP proxy does exactly that: sever() closes the database
    // side and leaves the function's side open; the socket is found dead only
    // when the function writes to it after the thaw.
    const proxy = await deadlyProxy(new URL(db.url));
    afterAll(() => proxy.close());
    const bundle = join(dir, 'frozen.mjs'); // another path: a separate (cold) instance
    copyFileSync(BUNDLE, bundle);
    const url = new URL(db.url);
    url.port = String(proxy.port);
    const env = { ...ENV, DATABASE_URL: url.href };

    await queue.publish('work.quick', null, { timeoutSeconds: 5 });
    expect(await invoke(eventBridge(), 10_000, bundle, env)).toMatchObject({ claimed: 1, succeeded: 1 });
    const opened = proxy.opened();
    proxy.sever();

    await queue.publish('work.quick', null, { timeoutSeconds: 5 });
    expect(await invoke(eventBridge(), 10_000, bundle, env)).toMatchObject({ claimed: 1, succeeded: 1 });
    expect(proxy.opened()).toBeGreaterThan(opened); // it reconnected
    const after = proxy.opened();
    await invoke(functionUrl('GET', '/stats', { headers: bearer }), 10_000, bundle, env);
    expect(proxy.opened()).toBe(after); // and the fresh pool is reused
    expect(await leased()).toBe(0);
  });

  it('a publish whose reply was lost after it committed is not sent again: one job, not two', async () => {
    const proxy = await deadlyProxy(new URL(db.url));
    afterAll(() => proxy.close());
    const bundle = join(dir, 'lost-reply.mjs'); // a cold instance of its own
    copyFileSync(BUNDLE, bundle);
    const url = new URL(db.url);
    url.port = String(proxy.port);
    const env = { ...ENV, DATABASE_URL: url.href };
    const post = (n: number) => invoke(functionUrl('POST', '/jobs', { headers: bearer, body: JSON.stringify({ task: 'work.quick', body: { n } }) }),
                                       10_000, bundle, env) as Promise<{ statusCode: number }>;
    expect((await post(1)).statusCode).toBe(201);
    proxy.dropNextReply(); // as a NAT or proxy restart between invocations would
    expect((await post(2)).statusCode).toBe(201);
    expect(await sql(`select count(*)::int as n from jobs.job_queue where body = '{"n": 2}'`)).toEqual([{ n: 1 }]);
  });

  it('a database that stops answering fails the invocation with database_unavailable before Lambda times it out', async () => {
    const target = new URL(db.url);
    const proxy = await tcpProxy(target.hostname, Number(target.port));
    afterAll(() => proxy.close());
    const bundle = join(dir, 'unanswered.mjs');
    copyFileSync(BUNDLE, bundle);
    const url = new URL(db.url);
    url.port = String(proxy.port);
    // 8 s to the invocation's end, 7 s to the drain's deadline (PGDRAIN_SAFETY_MARGIN_MS: 1 s): a first claim sent up
    // to 5.5 s late (a loaded machine; 0.5 s settle margin) still fits a 1 s job. Before, 4 s to its end: a first
    // claim 1.5 s late claimed nothing, and the poll below waited for a lease until the test timed out.
    await queue.publishBulk(Array.from({ length: 20 }, () => ({ task: 'work.slow', body: { ms: 300 }, timeoutSeconds: 1 })));
    const invocation = invoke(eventBridge(), 8000, bundle, { ...ENV, DATABASE_URL: url.href }).then(() => 'returned', (e) => e);
    while ((await leased()) === 0) await new Promise((r) => setTimeout(r, 20));
    proxy.freeze(); // no error ever comes: only silence
    // Given up half the 1 s safety margin after the deadline, not "Task timed out".
    expect(await invocation).toMatchObject({ errorType: 'PgDrainError', errorMessage: expect.stringMatching(
      /^database unavailable: no reply within 500 ms after the drain's deadline(; \d+ jobs?'s? outcomes? (was|were) not recorded .+)?$/) });
    // Nothing lost: once the leases it held end, every job runs.
    await sql('update jobs.job_queue set lease_until = now() where lease_until > now()');
    expect(await invoke(eventBridge(), 20_000)).toMatchObject({ stoppedBy: 'empty', failed: 0, retried: 0 });
    expect(await sql(`select count(*)::int as n from jobs.job where status = 'success'`)).toEqual([{ n: 20 }]);
  });
});

/** A TCP proxy whose sever() kills the upstream side and resets the client side on its next write. */
async function deadlyProxy(target: URL) {
  let opened = 0;
  const pairs = new Set<{ client: Socket; upstream: Socket; dead: boolean }>();
  const server = createServer((client) => {
    opened++;
    const pair = { client, upstream: connect(Number(target.port), target.hostname), dead: false };
    pairs.add(pair);
    client.on('data', (chunk) => (pair.dead ? client.resetAndDestroy() : pair.upstream.write(chunk)));
    pair.upstream.on('data', (chunk) => client.write(chunk));
    pair.upstream.on('close', () => { if (!pair.dead) client.destroy(); });
    client.on('close', () => { pair.upstream.destroy(); pairs.delete(pair); });
    client.on('error', () => {});
    pair.upstream.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    opened: () => opened,
    sever() {
      for (const pair of pairs) {
        pair.dead = true;
        pair.upstream.destroy();
      }
    },
    /** The next reply on each open connection is dropped and its client reset: the statement ran, its answer is lost. */
    dropNextReply() {
      for (const pair of pairs) {
        pair.upstream.removeAllListeners('data');
        pair.upstream.once('data', () => pair.client.resetAndDestroy());
      }
    },
    close: () => new Promise((r) => server.close(r)),
  };
}
