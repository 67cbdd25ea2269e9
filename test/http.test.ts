// The HTTP API on a real server on 127.0.0.1 against a real PostgreSQL:
// auth (bearer, signed requests), 400/401/413/429/503 answers, publish,
// drain, stats, metrics, concurrent drains, and `pgdrain serve` as a process.
import { serve, type ServerType } from '@hono/node-server';
import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { createApp, signRequest } from '../src/http/index.js';
import { HEALTH_REUSE_MS } from '../src/http/app.js';
import { ReplayGuard } from '../src/http/auth.js';
import { DrainMetrics } from '../src/http/metrics.js';
import { pgDriver } from '../src/db/pg.js';
import { createQueue, ValidationError, type JobContext, type TaskMap } from '../src/index.js';
import { emptyDb, testDb } from './support/db.js';
import { until } from './support/drain-process.js';
import { yearLike } from './support/future-year.js';
import { startServe } from './support/serve-process.js';
import { proxiedUrl, tcpProxy } from './support/tcp-proxy.js';

const db = await testDb();
const sql = db.sql;
const TOKEN = 'test-token-0123456789abcdef';
const SECRET = 'test-hmac-secret-0123456789';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const runs = new Map<string, number>();
const tasks: TaskMap = {
  record: async (_body: unknown, ctx: JobContext) => {
    runs.set(ctx.job.id, (runs.get(ctx.job.id) ?? 0) + 1);
    await sleep(2);
    return { ran: ctx.job.id };
  },
  fail: async () => { throw new Error('deliberate failure'); },
};
const shared = { ...db.driver, close: async () => {} };
const limits = { maxBatchSize: 50, maxBudgetSeconds: 30, maxBodyBytes: 4096, maxJobsPerRequest: 20, maxConcurrentDrains: 8 };

const servers: ServerType[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

/** Serves an app on 127.0.0.1 (a free port) and returns its base URL. */
async function listen(app: { fetch: (req: Request) => Response | Promise<Response> }): Promise<string> {
  return new Promise((done) => {
    const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => done(`http://127.0.0.1:${info.port}`));
    servers.push(server);
  });
}

const base = await listen(createApp({ queue: createQueue({ driver: shared, tasks }), token: TOKEN, hmacSecret: SECRET, limits }));

interface Answer { status: number; body: any; text: string; headers: Headers }
async function call(method: string, path: string, opts: { body?: unknown; raw?: string; token?: string | null;
                                                          headers?: Record<string, string>; url?: string } = {}): Promise<Answer> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token !== null && !opts.headers?.['x-pgdrain-signature']) headers.authorization = `Bearer ${opts.token ?? TOKEN}`;
  const payload = opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
  if (payload !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${opts.url ?? base}${path}`, { method, headers, body: payload });
  const text = await res.text();
  let body: unknown;
  try { body = JSON.parse(text); } catch { body = undefined; }
  return { status: res.status, body, text, headers: res.headers };
}

/** Signs as the docs say, with node:crypto: an independent check of the scheme. */
function signed(method: string, pathAndQuery: string, body: string, ts = Math.floor(Date.now() / 1000)): Record<string, string> {
  const mac = createHmac('sha256', SECRET).update(`${ts}\n${method}\n${pathAndQuery}\n${body}`).digest('hex');
  return { 'x-pgdrain-timestamp': String(ts), 'x-pgdrain-signature': `sha256=${mac}` };
}

const queued = async () => (await sql<{ n: number }>('select count(*)::int as n from jobs.job_queue'))[0]!.n;
const expectError = (a: Answer, status: number, code: string, field: string | null) => {
  expect(a.status).toBe(status);
  expect(a.body).toEqual({ error: { code, message: expect.any(String), field } });
  expect(a.text).not.toMatch(/\n\s+at |\.ts:\d+/); // never a stack trace
};

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
  runs.clear();
});

describe('authentication', () => {
  it('/healthz needs none; every other route answers 401 without credentials', async () => {
    expect(await call('GET', '/healthz', { token: null })).toMatchObject({ status: 200, body: { status: 'ok' } });
    for (const [method, path] of [['POST', '/drain'], ['POST', '/jobs'], ['GET', '/stats'], ['GET', '/metrics'], ['GET', '/nope']]) {
      const a = await call(method!, path!, { token: null, body: method === 'POST' ? { task: 'record' } : undefined });
      expectError(a, 401, 'unauthorized', null);
      expect(a.headers.get('www-authenticate')).toBe('Bearer realm="pgdrain"');
    }
    expect(await queued()).toBe(0);
  });

  it('a wrong token or scheme is 401 naming the header', async () => {
    expectError(await call('GET', '/stats', { token: `${TOKEN}x` }), 401, 'unauthorized', 'authorization');
    expectError(await call('GET', '/stats', { token: 'short' }), 401, 'unauthorized', 'authorization');
    expectError(await call('GET', '/stats', { token: null, headers: { authorization: `Basic ${TOKEN}` } }), 401, 'unauthorized', 'authorization');
  });

  it('/healthz and /stats give up on a silent connection and end it: a probe does not hold a pool slot', async () => {
    const { proxy, url: via } = await proxiedUrl(db.url);
    const queue = createQueue({ driver: pgDriver(via, { max: 1 }), tasks });
    try {
      const url = await listen(createApp({ queue, token: TOKEN, limits }));
      expect((await call('GET', '/healthz', { url, token: null })).status).toBe(200);
      // The pool's one connection goes silent; new ones still get through (a failover, a lost NAT entry).
      proxy.freezeOpen();
      // Each probe past the time a good answer is given again (HEALTH_REUSE_MS): it asks the database.
      const realNow = Date.now.bind(Date);
      let shift = 0;
      vi.spyOn(Date, 'now').mockImplementation(() => realNow() + shift);
      shift += HEALTH_REUSE_MS;
      expectError(await call('GET', '/healthz', { url, token: null }), 503, 'database_unavailable', null);
      shift += HEALTH_REUSE_MS;
      expect((await call('GET', '/healthz', { url, token: null })).status).toBe(200); // on a new connection
      vi.restoreAllMocks();
      proxy.freezeOpen();
      expectError(await call('GET', '/stats', { url }), 503, 'database_unavailable', null);
      expect((await call('GET', '/stats', { url })).status).toBe(200);
    } finally {
      vi.restoreAllMocks();
      await queue.close();
      await proxy.close();
    }
  });

  it('answers 401 before any database work: a server whose database is down still says 401', async () => {
    const down = await listen(createApp({ queue: createQueue({ connectionString: 'postgres://postgres@127.0.0.1:1/none', tasks }),
                                          token: TOKEN, limits }));
    expectError(await call('POST', '/jobs', { url: down, token: 'wrong-token-0123456789', body: { task: 'a' } }), 401, 'unauthorized', 'authorization');
    // the right token reaches the database, which is down: 503 with no driver detail
    const a = await call('POST', '/jobs', { url: down, body: { task: 'a' } });
    expectError(a, 503, 'database_unavailable', null);
    expect(a.body.error.message).toBe('database unavailable');
    expectError(await call('GET', '/healthz', { url: down, token: null }), 503, 'database_unavailable', null);
  });

  it('accepts a signed request; refuses a bad signature, another path, a stale timestamp and a replay', async () => {
    const body = JSON.stringify({ task: 'record', body: { n: 1 } });
    expect(await call('POST', '/jobs', { raw: body, headers: signed('POST', '/jobs', body) })).toMatchObject({ status: 201 });
    // the exported client helper signs the same way
    expect((await call('GET', '/stats', { headers: await signRequest(SECRET, 'GET', '/stats', '') })).status).toBe(200);

    expectError(await call('POST', '/jobs', { raw: body.replace('1', '2'), headers: signed('POST', '/jobs', body) }),
      401, 'unauthorized', 'x-pgdrain-signature');
    expectError(await call('POST', '/drain', { raw: body, headers: signed('POST', '/jobs', body) }), 401, 'unauthorized', 'x-pgdrain-signature');
    // 300 s either way is the tolerance; 10 s more, so a second ticking over mid-test changes nothing.
    const now = Math.floor(Date.now() / 1000);
    expectError(await call('POST', '/jobs', { raw: body, headers: signed('POST', '/jobs', body, now - 310) }), 401, 'unauthorized', 'x-pgdrain-timestamp');
    expectError(await call('POST', '/jobs', { raw: body, headers: signed('POST', '/jobs', body, now + 310) }), 401, 'unauthorized', 'x-pgdrain-timestamp');
    // Another body: the first request's signature may share this second's timestamp.
    const body2 = JSON.stringify({ task: 'record', body: { n: 2 } });
    const once = signed('POST', '/jobs', body2, Math.floor(Date.now() / 1000) - 1);
    expect((await call('POST', '/jobs', { raw: body2, headers: once })).status).toBe(201);
    const replay = await call('POST', '/jobs', { raw: body2, headers: once });
    expectError(replay, 401, 'unauthorized', 'x-pgdrain-signature');
    expect(replay.body.error.message).toMatch(/replay/);
    // Identical requests in one second sign differently with a fraction of a second; signRequest adds one.
    const [a, b] = await Promise.all([signRequest(SECRET, 'POST', '/jobs', body2), signRequest(SECRET, 'POST', '/jobs', body2)]);
    expect(a['x-pgdrain-timestamp']).toMatch(/^\d+\.\d{6}$/);
    expect([(await call('POST', '/jobs', { raw: body2, headers: a })).status,
            (await call('POST', '/jobs', { raw: body2, headers: b })).status]).toEqual([201, 201]);
    expectError(await call('GET', '/stats', { headers: { ...signed('GET', '/stats', ''), 'x-pgdrain-timestamp': '1733356800.1234567' } }),
      401, 'unauthorized', 'x-pgdrain-timestamp');
    expectError(await call('GET', '/stats', { headers: { 'x-pgdrain-timestamp': String(Date.now()), 'x-pgdrain-signature': 'sha256=00' } }),
      401, 'unauthorized', 'x-pgdrain-timestamp');
    expect(await queued()).toBe(4);
  });

  it('the replay guard, full of signatures still in their window, refuses new ones instead of forgetting one', () => {
    vi.useFakeTimers({ now: 1_000_000, toFake: ['Date'] });
    try {
      const guard = new ReplayGuard(60_000, 3);
      expect(['a', 'b', 'c'].map((s) => guard.use(s))).toEqual(['fresh', 'fresh', 'fresh']);
      vi.setSystemTime(1_010_000);
      expect(guard.use('d')).toBe(50); // seconds until 'a' leaves the window
      expect(guard.use('a')).toBe('replay'); // evicting it for 'd' would have let this through
      vi.setSystemTime(1_060_001);
      expect(guard.use('d')).toBe('fresh');
      expect(guard.use('a')).toBe('fresh'); // out of the window: its timestamp is refused before this check
    } finally {
      vi.useRealTimers();
    }
  });

  it('accepts a request signed with the openssl recipe of deploy/lambda/README.md', async () => {
    const body = '{"batchSize":5,"budgetSeconds":10}';
    const script = `ts=$(date +%s); sig=$(printf '%s\\nPOST\\n/drain\\n%s' "$ts" "$BODY" | openssl dgst -sha256 -hmac "$HMAC_SECRET" -hex | sed 's/^.* //'); echo "$ts $sig"`;
    const [ts, sig] = execFileSync('bash', ['-c', script], { env: { ...process.env, BODY: body, HMAC_SECRET: SECRET }, encoding: 'utf8' }).trim().split(' ');
    const a = await call('POST', '/drain', { raw: body, headers: { 'x-pgdrain-timestamp': ts!, 'x-pgdrain-signature': `sha256=${sig}` } });
    expect(a).toMatchObject({ status: 200, body: { claimed: 0, stoppedBy: 'empty' } });
  });
});

describe('bad input is 400 naming the field, and writes nothing', () => {
  it.each([
    ['/drain', '{"batchSize": ', 'body'],
    ['/drain', '[1]', 'body'],
    ['/drain', '{"batchSize": 0}', 'batchSize'],
    ['/drain', '{"batchSize": 2.5}', 'batchSize'],
    ['/drain', '{"batchSize": 51}', 'batchSize'],
    ['/drain', '{"batchSize": "10"}', 'batchSize'],
    ['/drain', '{"budgetSeconds": 31}', 'budgetSeconds'],
    ['/drain', '{"budgetSeconds": 0}', 'budgetSeconds'],
    ['/drain', '{"topic": ""}', 'topic'],
    ['/drain', '{"deadline": 5}', 'deadline'],
    ['/drain?batchSize=abc', '', 'batchSize'],
    ['/drain?budgetSeconds=99', '', 'budgetSeconds'],
    ['/jobs', '', 'body'],
    ['/jobs', '{}', 'task'],
    ['/jobs', '{"task": "bad name"}', 'task'],
    ['/jobs', '{"task": "a", "timeoutSeconds": 0}', 'timeoutSeconds'],
    ['/jobs', '{"task": "a", "priority": 1.5}', 'priority'],
    ['/jobs', '{"task": "a", "runAt": "tomorrow"}', 'runAt'],
    ['/jobs', '{"task": "a", "runAt": "1969-12-31T23:59:59Z"}', 'runAt'],
    ['/jobs', '{"jobs": [{"task": "a"}, {"task": "a", "runAt": "9999-12-31T23:59:59.999-01:00"}]}', 'jobs[1].runAt'],
    ['/jobs', '{"task": "a", "runAt": "2030-01-01T00:00:00Z", "delaySeconds": 5}', 'delaySeconds'],
    ['/jobs', '{"task": "a", "colour": "red"}', 'colour'],
    ['/jobs', '{"jobs": []}', 'jobs'],
    ['/jobs', '{"jobs": {"task": "a"}}', 'jobs'],
    ['/jobs', JSON.stringify({ jobs: Array.from({ length: 21 }, () => ({ task: 'a' })) }), 'jobs'],
    ['/jobs', '{"jobs": [{"task": "a"}, {"task": "b"}, {"task": "c", "maxRetries": -1}]}', 'jobs[2].maxRetries'],
    ['/jobs', '{"task": "a", "delaySeconds": 1e13}', 'delaySeconds'],
    ['/jobs', '{"jobs": [{"task": "a"}, {"task": "b", "delaySeconds": 1e300}]}', 'jobs[1].delaySeconds'],
    ['/jobs', '{"task": "a", "body": {"s": "half \\ud800 pair"}}', 'body'],
    ['/drain', '{"queue": "two words"}', 'queue'],
    ['/jobs', '{"task": "a", "queue": ""}', 'queue'],
    ['/jobs', '{"task": "a", "dependsOn": ["x"]}', 'dependsOn[0]'],
    ['/jobs', '{"task": "a", "attributes": [1]}', 'attributes'],
    ['/jobs', '{"jobs": [{"task": "a", "queue": "q"}]}', 'jobs[0].queue'],
    // Named as sent, not as the core (options.attributes) or the database (depends_on) names them.
    ['/jobs', '{"task": "a", "dependsOn": ["99999"]}', 'dependsOn'],
    ['/jobs', '{"task": "a", "attributes": {"a": "nul\\u0000"}}', 'attributes'],
    ['/jobs', '{"task": "a", "dependsOn": "1"}', 'dependsOn'],
    // A number JSON.parse would alter is refused, never stored changed.
    ['/jobs', '{"task": "a", "body": {"id": 12345678901234567890}}', 'body'],
    ['/jobs', '{"task": "a", "attributes": {"x": 1e400}}', 'body'],
  ])('POST %s %s → %s', async (path, raw, field) => {
    const a = await call('POST', path, { raw });
    expectError(a, 400, 'invalid_argument', field);
    expect(a.body.error.message.startsWith(`${field}: `)).toBe(true);
    expect(await queued()).toBe(0);
  });

  it('text PostgreSQL cannot store (a NUL byte) is 400 naming the field, before any database work', async () => {
    const a = await call('POST', '/drain', { raw: '{"topic": "a\\u0000b"}' });
    expectError(a, 400, 'invalid_argument', 'topic');
    expect(a.body.error.message).toBe('topic: must not contain \\u0000 (PostgreSQL text cannot store it)');
  });
});

describe('a full queue is 429 queue_full, naming the queue', () => {
  it('POST /jobs beyond max_size', async () => {
    await sql(`update jobs.queue set max_size = 1 where name = 'default'`);
    try {
      expect((await call('POST', '/jobs', { body: { task: 'a' } })).status).toBe(201);
      const a = await call('POST', '/jobs', { body: { task: 'a' } });
      expectError(a, 429, 'queue_full', 'queue');
      expect(a.body.error.message).toMatch(/queue 'default' is full/);
      expect(await queued()).toBe(1);
    } finally {
      await sql(`update jobs.queue set max_size = null where name = 'default'`);
      await sql('truncate jobs.job_queue');
    }
  });
});

describe('oversized bodies are 413', () => {
  const big = JSON.stringify({ jobs: Array.from({ length: 20 }, () => ({ task: 'record', body: 'x'.repeat(300) })) });

  it('with a Content-Length, and with a signed request, before the signature is checked', async () => {
    expectError(await call('POST', '/jobs', { raw: big }), 413, 'payload_too_large', 'body');
    expectError(await call('POST', '/jobs', { raw: big, headers: signed('POST', '/jobs', big) }), 413, 'payload_too_large', 'body');
    expect(await queued()).toBe(0);
  });

  it('with a chunked body that has no length', async () => {
    const { port } = new URL(base);
    const answer = await new Promise<{ status: number; text: string }>((done, fail) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: '/jobs', method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
        let text = '';
        res.on('data', (c) => (text += c)).on('end', () => done({ status: res.statusCode!, text }));
      });
      req.on('error', fail);
      for (let i = 0; i < big.length; i += 1000) req.write(big.slice(i, i + 1000));
      req.end();
    });
    expect(answer.status).toBe(413);
    expect(JSON.parse(answer.text)).toEqual({ error: { code: 'payload_too_large', message: 'body: must be at most 4096 bytes', field: 'body' } });
    expect(await queued()).toBe(0);
  });
});

describe('publish, drain, stats, metrics', () => {
  it('POST /jobs with a dedupeKey: a retry (after a lost answer or a 503) gets the same job, not a second one', async () => {
    const first = await call('POST', '/jobs', { body: { task: 'record', body: { order: 42 }, dedupeKey: 'order-42' } });
    const again = await call('POST', '/jobs', { body: { task: 'record', body: { order: 42 }, dedupeKey: 'order-42' } });
    expect(first.status).toBe(201);
    expect(again).toMatchObject({ status: 201, body: { id: first.body.id } });
    expect(await queued()).toBe(1);
    // A bulk job's dedupeKey is kept too: the job already holding the key answers.
    expect(await call('POST', '/jobs', { body: { jobs: [{ task: 'record', dedupeKey: 'order-42' }] } }))
      .toMatchObject({ status: 201, body: { ids: [first.body.id] } });
    expect(await queued()).toBe(1);
  });

  it('drain metrics: claims and outcomes are counters, skipped jobs a gauge of the last drain (one job skipped twice is one)', () => {
    const metrics = new DrainMetrics();
    const report = { claimed: 2, succeeded: 1, failed: 0, retried: 1, released: 0, cancelled: 0, stale: 0, skipped: 1,
                     skippedTimeouts: { shortestSeconds: 60, longestSeconds: 60, budgetSeconds: 5 }, queuePaused: false, queueAtMaxRunning: false,
                     queueAtGroupConcurrency: false,
                     stoppedBy: 'deadline', durationMs: 10, batches: 2, failures: [], failuresOmitted: 0, interrupted: { nacked: 0, released: 0 },
                     releasedUnstarted: 0 } as const;
    metrics.start()({ ...report, failures: [] }, 10);
    metrics.start()({ ...report, failures: [] }, 10);
    const lines = metrics.render([], 0).split('\n');
    expect(lines).toEqual(expect.arrayContaining(['pgdrain_drain_claimed_total 4', 'pgdrain_drain_jobs_total{outcome="succeeded"} 2',
      'pgdrain_drain_jobs_total{outcome="retried"} 2', 'pgdrain_drain_skipped_jobs 1']));
    expect(lines.filter((l) => /outcome="(claimed|skipped)"/.test(l))).toEqual([]);
  });

  it('publishes one and many, reports stats, drains them, counts it all in /metrics', async () => {
    // a fresh app: its drain counters start at zero
    const url = await listen(createApp({ queue: createQueue({ driver: shared, tasks }), token: TOKEN, limits }));
    const one = await call('POST', '/jobs', { url, body: { task: 'record', body: { n: 0 }, priority: 5, timeoutSeconds: 10 } });
    expect(one).toMatchObject({ status: 201, body: { id: expect.stringMatching(/^\d+$/) } });
    // Timeouts under the budget: a drain claims only jobs that can finish before its deadline.
    const many = await call('POST', '/jobs', { url, body: { jobs: [{ task: 'record', timeoutSeconds: 10 }, { task: 'fail', maxRetries: 0, timeoutSeconds: 10 },
                                                               { task: 'record', runAt: new Date(`${yearLike(2099)}-01-01T00:00:00Z`) }] } });
    expect(many.body.ids).toHaveLength(3);
    // The same task in another queue is counted apart (and left alone by the drain below).
    await sql(`select jobs.create_queue('other')`);
    await sql(`select jobs.publish('record', null, queue => 'other', timeout_seconds => 10)`);
    const stats = await call('GET', '/stats', { url });
    expect(stats.body.stats).toEqual(expect.arrayContaining([
      { queue: 'default', task: 'record', state: 'pending', jobs: 2, oldestDueSeconds: expect.any(Number) },
      { queue: 'default', task: 'record', state: 'scheduled', jobs: 1, oldestDueSeconds: null },
      { queue: 'default', task: 'fail', state: 'pending', jobs: 1, oldestDueSeconds: expect.any(Number) },
      { queue: 'other', task: 'record', state: 'pending', jobs: 1, oldestDueSeconds: expect.any(Number) }]));

    // The query takes numbers as JSON spells them: 5e0 as the body's 5.
    const drained = await call('POST', '/drain?batchSize=5e0', { url, body: { budgetSeconds: 20 } });
    expect(drained.status).toBe(200);
    expect(drained.body).toMatchObject({ claimed: 3, succeeded: 2, failed: 1, stoppedBy: 'empty' });
    expect(drained.body.failures).toEqual([expect.objectContaining({ task: 'fail', error: 'Error: deliberate failure', willRetry: false })]);
    expect(await sql(`select status, error from jobs.job where task = 'fail'`))
      .toEqual([{ status: 'failure', error: expect.stringMatching(/^Error: deliberate failure\n\s+at /) }]); // the full stack stays in the database
    expect(await sql(`select result from jobs.job where job_id = $1`, [one.body.id])).toEqual([{ result: { ran: one.body.id } }]);

    const metrics = await call('GET', '/metrics', { url });
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const lines = metrics.text.trimEnd().split('\n');
    const sample = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*\})? [-+]?(\d+(\.\d+)?(e[-+]?\d+)?|Inf)$/;
    for (const line of lines) expect(line).toMatch(line.startsWith('#') ? /^# (HELP|TYPE) \S+ .+$/ : sample);
    expect(lines).toEqual(expect.arrayContaining([
      'pgdrain_jobs{queue="default",task="record",state="scheduled"} 1',
      'pgdrain_jobs{queue="default",task="fail",state="failure"} 1',
      'pgdrain_jobs{queue="other",task="record",state="pending"} 1',
      'pgdrain_drain_claimed_total 3', 'pgdrain_drain_jobs_total{outcome="succeeded"} 2',
      'pgdrain_drain_jobs_total{outcome="failed"} 1', 'pgdrain_drain_skipped_jobs 0', 'pgdrain_drains_running 0',
      'pgdrain_schedules_stopped 0']));
    expect(lines.filter((l) => l.startsWith('pgdrain_drains_total'))).toEqual(['pgdrain_drains_total{stopped_by="empty"} 1']);
    // Successes stay out of the gauge: counting them reads the whole history on every scrape.
    expect(lines.filter((l) => l.includes('state="success"'))).toEqual([]);
    expect(lines).toContain('pgdrain_drain_duration_seconds_count 1');

  });

  it('concurrent POST /drain calls never run a job twice', async () => {
    await call('POST', '/jobs', { body: { jobs: Array.from({ length: 20 }, () => ({ task: 'record', timeoutSeconds: 10 })) } });
    await createQueue({ driver: shared }).publishBulk(Array.from({ length: 380 }, () => ({ task: 'record', timeoutSeconds: 10 })));
    const answers = await Promise.all(Array.from({ length: 6 }, () => call('POST', '/drain', { body: { batchSize: 20, budgetSeconds: 30 } })));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 200]);
    expect(answers.reduce((n, a) => n + a.body.claimed, 0)).toBe(400);
    expect(answers.filter((a) => a.body.claimed > 0).length).toBeGreaterThan(1); // they really ran side by side
    expect(runs.size).toBe(400);
    expect([...runs.values()].every((n) => n === 1)).toBe(true);
    expect(await sql(`select count(*)::int as n, max(attempts)::int as attempts from jobs.job where status = 'success'`))
      .toEqual([{ n: 400, attempts: 1 }]);
  });

  it('more drains than maxConcurrentDrains get 429 with Retry-After', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const url = await listen(createApp({ token: TOKEN, limits: { ...limits, maxConcurrentDrains: 1 },
      queue: createQueue({ driver: shared, tasks: { hold: async () => { started(); await gate; } } }) }));
    await call('POST', '/jobs', { url, body: { task: 'hold', timeoutSeconds: 20 } });
    const first = call('POST', '/drain', { url, body: { budgetSeconds: 25 } });
    await running;
    const second = await call('POST', '/drain', { url });
    expectError(second, 429, 'too_many_drains', null);
    expect(second.headers.get('retry-after')).toBe('1');
    release();
    expect((await first).body).toMatchObject({ claimed: 1, succeeded: 1 });
  });

  it('an unmigrated database is 503 not_migrated, without SQL in the message', async () => {
    const empty = await emptyDb();
    const queue = createQueue({ connectionString: empty.url, tasks });
    afterAll(() => queue.close());
    const url = await listen(createApp({ queue, token: TOKEN }));
    for (const a of [await call('POST', '/jobs', { url, body: { task: 'a' } }), await call('POST', '/drain', { url }), await call('GET', '/stats', { url })]) {
      expectError(a, 503, 'not_migrated', null);
      expect(a.body.error.message).toBe('the jobs schema is missing or out of date: run pgdrain migrate');
    }
  });

  it('createApp refuses to run without credentials, or with short ones, naming the option', () => {
    const queue = createQueue({ driver: shared });
    expect(() => createApp({ queue })).toThrow(/^token: /);
    expect(() => createApp({ queue, hmacSecret: 'short' })).toThrow(/^hmacSecret: must be a string of at least 16/);
    expect(() => createApp({ queue, token: TOKEN, limits: { maxBatchSize: 0 } })).toThrow(/^limits\.maxBatchSize: /);
  });

  it('createApp refuses a graceMs, signal or hardSignal its drains could not take, naming the option (not 400 at every POST /drain)', () => {
    const queue = createQueue({ driver: shared, tasks });
    for (const graceMs of [-1, Number.NaN, '5' as unknown as number]) {
      expect(() => createApp({ queue, token: TOKEN, graceMs })).toThrow(ValidationError);
      expect(() => createApp({ queue, token: TOKEN, graceMs })).toThrow(/^graceMs: must be/);
    }
    expect(() => createApp({ queue, token: TOKEN, hardSignal: {} as AbortSignal })).toThrow(/^hardSignal: must be an AbortSignal/);
    expect(() => createApp({ queue, token: TOKEN, signal: 'stop' as unknown as AbortSignal })).toThrow(/^signal: must be an AbortSignal/);
    for (const graceMs of [0, 1500, undefined]) expect(() => createApp({ queue, token: TOKEN, graceMs, signal: new AbortController().signal })).not.toThrow();
  });
});

describe('named queues and job options over HTTP', () => {
  it('POST /jobs takes queue, serialKey, dependsOn and attributes (bulk: one queue for all); POST /drain drains a named queue', async () => {
    await sql(`select jobs.create_queue('mail')`);
    try {
      const first = await call('POST', '/jobs', { body: { task: 'record', queue: 'mail', serialKey: 'k', attributes: { t: 1 }, timeoutSeconds: 5 } });
      expect(first.status).toBe(201);
      const id = (first.body as { id: string }).id;
      const second = await call('POST', '/jobs', { body: { task: 'record', queue: 'mail', dependsOn: [id], timeoutSeconds: 5 } });
      const bulk = await call('POST', '/jobs', { body: { queue: 'mail', jobs: [{ task: 'record', timeoutSeconds: 5 }] } });
      expect([second.status, bulk.status]).toEqual([201, 201]);
      expect(await sql(`select queue, serial_key, attributes, waiting_deps from jobs.job_queue order by job_id`)).toEqual([
        { queue: 'mail', serial_key: 'k', attributes: { t: 1 }, waiting_deps: 0 },
        { queue: 'mail', serial_key: null, attributes: null, waiting_deps: 1 },
        { queue: 'mail', serial_key: null, attributes: null, waiting_deps: 0 }]);
      // The default queue's drain leaves them; the mail queue's runs them.
      expect(await call('POST', '/drain', { body: { budgetSeconds: 20 } })).toMatchObject({ status: 200, body: { claimed: 0 } });
      expect(await call('POST', '/drain', { body: { budgetSeconds: 20, queue: 'mail' } }))
        .toMatchObject({ status: 200, body: { claimed: 3, succeeded: 3 } });
    } finally {
      await sql(`truncate jobs.job_queue, jobs.job, jobs.dependency; delete from jobs.queue where name = 'mail'`);
    }
  });
});

describe('GET /jobs/:id', () => {
  it('answers a job as it is now; 404 when there is none; 400 for an id that is not one', async () => {
    const published = await call('POST', '/jobs', { body: { task: 'record', body: { n: 1 }, timeoutSeconds: 5 } });
    const id = (published.body as { id: string }).id;
    const pending = await call('GET', `/jobs/${id}`);
    expect(pending).toMatchObject({ status: 200, body: { job: { id, task: 'record', state: 'pending', body: { n: 1 }, attempts: 0 } } });
    expect(await call('POST', '/drain', { body: { batchSize: 5, budgetSeconds: 20 } })).toMatchObject({ status: 200 });
    expect(await call('GET', `/jobs/${id}`)).toMatchObject({ status: 200, body: { job: { id, state: 'success', attempts: 1 } } });
    expectError(await call('GET', '/jobs/424242'), 404, 'not_found', null);
    expectError(await call('GET', '/jobs/x1'), 400, 'invalid_argument', 'id');
    expectError(await call('GET', `/jobs/${id}`, { token: null }), 401, 'unauthorized', null);
  });
});

describe('pgdrain serve', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pgdrain-serve-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'tasks.mjs'), `
export const slow = async (body, ctx) => { await new Promise((r) => setTimeout(r, 300)); return 'slow done'; };
export const quick = async () => 'quick done';
`);

  /** Starts the CLI's server on a free port; resolves with its URL once it listens. */
  const start = (args: string[], env: Record<string, string> = { PGDRAIN_TOKEN: TOKEN }) => startServe(db.url, args, env, dir);

  it('a bad credential or host exits 2 naming its variable or flag, before any database is opened', async () => {
    const cases: [string[], Record<string, string>, string][] = [
      [[], { PGDRAIN_TOKEN: 'short', DATABASE_URL: '' }, 'pgdrain: PGDRAIN_TOKEN: must be a string of at least 16 characters\n'],
      // As a secret file's trailing newline leaves it: no bearer header could carry it.
      [[], { PGDRAIN_TOKEN: `${TOKEN}\n`, DATABASE_URL: '' },
       'pgdrain: PGDRAIN_TOKEN: must not contain whitespace (a trailing newline from a secret file?)\n'],
      [['--host', 'not a host'], { PGDRAIN_TOKEN: TOKEN }, 'pgdrain: --host: cannot listen on "not a host" (ENOTFOUND)\n'],
      // Blank (only whitespace): said as such, as the Worker and the Lambda say it; 20 spaces were an HMAC secret before.
      [[], { PGDRAIN_TOKEN: '   ', DATABASE_URL: '' },
       'pgdrain: PGDRAIN_TOKEN: is set but blank (only whitespace): give a secret of at least 16 characters, or unset it\n'],
      [[], { PGDRAIN_TOKEN: TOKEN, PGDRAIN_HMAC_SECRET: ' '.repeat(20), DATABASE_URL: '' },
       'pgdrain: PGDRAIN_HMAC_SECRET: is set but blank (only whitespace): give a secret of at least 16 characters, or unset it\n'],
    ];
    for (const [args, env, stderr] of cases) {
      const server = start(['--tasks', 'tasks.mjs', ...args], env);
      server.url.catch(() => {});
      expect(await server.exited, stderr).toBe(2);
      expect(server.stderr()).toBe(stderr);
    }
    // An empty DATABASE_URL would have opened an embedded database in the working directory.
    expect(existsSync(join(dir, '.pgdrain'))).toBe(false);
  });

  it('serves the API; on SIGTERM a running drain stops claiming, answers, and the process exits 0', async () => {
    const server = start(['--tasks', 'tasks.mjs', '--grace', '5']);
    const url = await server.url;
    expect((await call('GET', '/healthz', { url, token: null })).status).toBe(200);
    expect((await call('POST', '/jobs', { url, body: { jobs: Array.from({ length: 20 }, () => ({ task: 'slow', timeoutSeconds: 5 })) } })).status).toBe(201);
    const drain = call('POST', '/drain', { url, body: { batchSize: 2, budgetSeconds: 25 } });
    while ((await sql<{ n: number }>('select count(*)::int as n from jobs.running'))[0]!.n === 0) await sleep(20);
    server.child.kill('SIGTERM');
    const report = (await drain).body;
    expect(report).toMatchObject({ stoppedBy: 'signal' });
    expect(report.claimed).toBeGreaterThan(0);
    expect(report.claimed).toBeLessThan(20);
    expect(report.succeeded + report.released).toBe(report.claimed);
    expect(await server.exited).toBe(0);
    expect(server.stderr()).toMatch(/shutting down/);
    expect(await sql(`select count(*)::int as n from jobs.job_queue where lease_until is not null`)).toEqual([{ n: 0 }]);
    expect(await queued()).toBe(20 - report.succeeded);
  });

  it('on SIGTERM with its database gone silent, a running drain answers 503 5 s after the grace; it exits 0', async () => {
    // The server reaches PostgreSQL through a TCP proxy that stops forwarding: no error ever comes.
    const target = new URL(db.url);
    const proxy = await tcpProxy(target.hostname, Number(target.port));
    try {
      const via = new URL(db.url);
      via.port = String(proxy.port);
      const server = start(['--tasks', 'tasks.mjs', '--grace', '1'], { PGDRAIN_TOKEN: TOKEN, DATABASE_URL: via.href });
      const url = await server.url;
      const jobs = Array.from({ length: 20 }, () => ({ task: 'slow', timeoutSeconds: 5 }));
      expect((await call('POST', '/jobs', { url, body: { jobs } })).status).toBe(201);
      // A budget far past the test's timeout: only the grace ends this drain in time.
      const drain = call('POST', '/drain', { url, body: { batchSize: 2, budgetSeconds: 300 } });
      while ((await sql<{ n: number }>('select count(*)::int as n from jobs.running'))[0]!.n === 0) await sleep(20);
      proxy.freeze();
      server.child.kill('SIGTERM');
      const answer = await drain;
      expect(answer.status).toBe(503);
      // It names the outcomes it could not record (PgDrainError.unrecorded): those of the jobs running then.
      type Unrecorded = { total: number; succeeded: number; failed: number; released: number };
      const { unrecorded, ...error } = (answer.body as { error: { unrecorded: Unrecorded } }).error;
      expect(error).toEqual({ code: 'database_unavailable', message: expect.any(String), field: null });
      expect(unrecorded.total).toBeGreaterThan(0);
      expect(unrecorded.total).toBe(unrecorded.succeeded + unrecorded.failed + unrecorded.released);
      expect(await server.exited).toBe(0);
    } finally {
      await proxy.close();
    }
    // Nothing lost: once the leases it held end, every job runs.
    await sql('update jobs.job_queue set lease_until = now() where lease_until > now()');
    const rest = await createQueue({ driver: shared, tasks: { slow: async () => 'slow done' } }).drain(50, Date.now() + 60_000);
    expect(rest).toMatchObject({ stoppedBy: 'empty', failed: 0 });
    expect(await queued()).toBe(0);
  });

  it('a second SIGTERM stops running jobs at once (retried now, their attempt spent), without waiting out the grace; it exits 0', async () => {
    // The handler ignores its signal: only a give-back ends its drain before the 60 s grace.
    writeFileSync(join(dir, 'stuck.mjs'), "export const stuck = () => { console.error('stuck began'); return new Promise(() => {}); };\n");
    const server = start(['--tasks', 'stuck.mjs', '--grace', '60']);
    const url = await server.url;
    expect((await call('POST', '/jobs', { url, body: { jobs: [{ task: 'stuck' }, { task: 'stuck' }] } })).status).toBe(201);
    const drain = call('POST', '/drain', { url, body: { batchSize: 2, budgetSeconds: 200 } });
    // Both handlers began (not only their claim, in the database: a stop before the drain reads its answer gives them back unspent).
    await until(async () => server.stderr().split('stuck began').length === 3, 'both jobs to run');
    server.child.kill('SIGTERM');
    await until(async () => /shutting down/.test(server.stderr()), 'the first SIGTERM to be taken');
    server.child.kill('SIGTERM');
    expect((await drain).body).toMatchObject({ stoppedBy: 'signal', claimed: 2, retried: 2, released: 0 });
    expect(await server.exited).toBe(0);
    expect(await sql(`select count(*)::int as n from jobs.job_queue where lease_until is null and attempt = 1
                      and last_error = 'did not stop before the server''s shutdown (a second SIGTERM)' and scheduled_at <= now()`)).toEqual([{ n: 2 }]);
    await sql('truncate jobs.job_queue');
  });

  it('on SIGTERM it exits even while a client holds a request half-sent (its connection is cut after the grace)', async () => {
    const server = start(['--grace', '0'], { PGDRAIN_HMAC_SECRET: 'x'.repeat(32) });
    const { port } = new URL(await server.url);
    const socket = connect(Number(port), '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    // A request whose body never ends. Its "100 Continue" says the server has
    // taken the request in: from then on, close() waits for it.
    socket.on('error', () => {});
    socket.write(`POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n` +
                 `Expect: 100-continue\r\nx-pgdrain-timestamp: ${Math.floor(Date.now() / 1000)}\r\n` +
                 `x-pgdrain-signature: sha256=${'0'.repeat(64)}\r\n\r\n`);
    const continued = await new Promise<string>((resolve) => socket.once('data', (chunk) => resolve(String(chunk))));
    expect(continued).toMatch(/^HTTP\/1\.1 100 Continue/);
    socket.write('{');
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    socket.destroy();
  });

  it('without --tasks it publishes but POST /drain is 404 drain_disabled; without credentials it refuses to start', async () => {
    const server = start([]);
    const url = await server.url;
    expect((await call('POST', '/jobs', { url, body: { task: 'quick' } })).status).toBe(201);
    expectError(await call('POST', '/drain', { url }), 404, 'drain_disabled', null);
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);

    const bare = start([], { PGDRAIN_TOKEN: '', PGDRAIN_HMAC_SECRET: '' });
    await expect(bare.url).rejects.toThrow(/serve exited 2: pgdrain: PGDRAIN_TOKEN: is not set, nor PGDRAIN_HMAC_SECRET/);
  });

  it('takes its tasks module from PGDRAIN_TASKS as drain does (the image sets it)', async () => {
    const server = start([], { PGDRAIN_TOKEN: TOKEN, PGDRAIN_TASKS: join(dir, 'tasks.mjs') });
    const url = await server.url;
    expect((await call('POST', '/jobs', { url, body: { task: 'quick', timeoutSeconds: 5 } })).status).toBe(201);
    expect(await call('POST', '/drain', { url, body: { budgetSeconds: 20 } })).toMatchObject({ status: 200, body: { succeeded: 1 } });
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  });
});
