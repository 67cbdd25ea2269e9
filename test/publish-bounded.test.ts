// Publishing bounded by a signal, on a real PostgreSQL behind a TCP proxy
// whose network a test freezes (no error ever comes): a handler's
// ctx.publish is given up at its job's timeout, POST /jobs after 10 s, and
// each ends the connection it gave up on, so the statement never runs later
// and the pool slot is free again.
import { serve, type ServerType } from '@hono/node-server';
import { afterAll, expect, inject, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { createApp } from '../src/http/index.js';
import { createQueue, type JobContext } from '../src/index.js';
import { testDb } from './support/db.js';
import { until, withAppName } from './support/drain-process.js';
import { tcpProxy, type TcpProxy } from './support/tcp-proxy.js';

const db = await testDb();
const sql = db.sql;
const TOKEN = 'test-token-0123456789abcdef';

const servers: ServerType[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

async function proxied(): Promise<TcpProxy> {
  const target = new URL(db.url);
  return tcpProxy(target.hostname, Number(target.port));
}

/** The test database through the proxy, its sessions named `app` in pg_stat_activity; over TLS when asked. */
function through(proxy: TcpProxy, app: string, tls = false): string {
  const url = new URL(withAppName(db.url, app));
  url.port = String(proxy.port);
  if (tls) url.searchParams.set('sslmode', 'no-verify'); // the test cluster's certificate is self-signed
  return url.href;
}

/** Server sessions of `app`: one the client ended is gone, so nothing it sent can run later. */
const sessions = async (app: string) =>
  (await sql<{ n: number }>('select count(*)::int as n from pg_stat_activity where application_name = $1', [app]))[0]!.n;

// Over TLS too, as cloud databases are reached: there the TCP socket under the TLS stream is what is reset.
it.each(['tcp', 'tls'])("a handler's publish through a frozen connection (%s) is given up at its job's timeout and its connection ended; the retry's is the only follow-up", async (transport) => {
  const tls = transport === 'tls';
  if (tls) expect(inject('serverTls'), 'the test cluster takes TLS (it needs openssl to make its certificate)').toBe(true);
  await sql(`truncate jobs.job_queue, jobs.job`);
  const proxy = await proxied();
  const given: string[] = [];
  // One connection: a publish that kept it past its job's timeout would leave the drain none to settle with.
  const queue = createQueue({
    driver: pgDriver(through(proxy, `bounded-handler-${transport}`, tls), { max: 1 }),
    tasks: {
      parent: async (_body: unknown, ctx: JobContext) => {
        // The first attempt's network freezes under its publish: no reply, no error, ever.
        if (ctx.job.attempt === 1) proxy.freezeOpen();
        try {
          await ctx.publish('child', { parent: ctx.job.id });
        } catch (error) {
          given.push(`${ctx.job.id}: ${(error as Error).message}`);
          throw error;
        }
        return { published: true };
      },
    },
  });
  // A 3 s timeout: a retry's publish on a new connection (a TLS handshake through the proxy) must fit in it on a
  // loaded machine too; at 1 s one that did not was retried a third time. The retries wait an hour, till the test
  // makes them due: none comes due during the three frozen attempts, however long they take.
  const drainParents = () => queue.drain(1, Date.now() + 30_000, { topic: 'parent' });
  try {
    const ids = await queue.publishBulk(Array.from({ length: 3 }, () => ({ task: 'parent', timeoutSeconds: 3, maxRetries: 2,
                                                                             retryDelaySeconds: 3600, retryBackoff: false })));
    expect(await drainParents()).toMatchObject({ claimed: 3, retried: 3, succeeded: 0, stoppedBy: 'empty' });
    expect(given.sort()).toEqual(ids.map((id) => `${id}: timed out after 3 s`).sort());
    // Ended on the server too (the pool's one live connection aside): what they carried can never run.
    await until(async () => (await sessions(`bounded-handler-${transport}`)) <= 1, 'the given-up sessions to end', 60_000);
    if (tls) expect(await sql(`select bool_and(ssl) as tls from pg_stat_ssl join pg_stat_activity using (pid)
                               where application_name = $1`, [`bounded-handler-${transport}`])).toEqual([{ tls: true }]);

    // New connections get through; each retry, made due, runs.
    await sql(`update jobs.job_queue set scheduled_at = now() where task = 'parent'`);
    expect(await drainParents()).toMatchObject({ claimed: 3, succeeded: 3, retried: 0, stoppedBy: 'empty' });
    expect(await sql(`select status, attempts from jobs.job where task = 'parent'`))
      .toEqual(ids.map(() => ({ status: 'success', attempts: 2 })));
    const children = await sql<{ parent: string; n: number }>(
      `select body->>'parent' as parent, count(*)::int as n from jobs.job_queue where task = 'child' group by 1`);
    expect(children.sort((a, b) => a.parent.localeCompare(b.parent)))
      .toEqual([...ids].sort().map((parent) => ({ parent, n: 1 })));
  } finally {
    await queue.close();
    await proxy.close();
  }
}, 180_000);

it('a publish a handler left running when it returned is not given up when its job is settled', async () => {
  const published: Promise<string>[] = [];
  const queue = createQueue({
    driver: { ...db.driver, close: async () => {} },
    tasks: {
      careless: (_body: unknown, ctx: JobContext) => {
        published.push(ctx.publish('careless.child', { parent: ctx.job.id })); // not awaited
        return null;
      },
    },
  });
  const [id] = await queue.publishBulk([{ task: 'careless', timeoutSeconds: 5 }]);
  expect(await queue.drain(1, Date.now() + 15_000, { topic: 'careless' })).toMatchObject({ claimed: 1, succeeded: 1 });
  await Promise.all(published);
  expect(await sql(`select body->>'parent' as parent from jobs.job_queue where task = 'careless.child'`)).toEqual([{ parent: id }]);
});

it('publish and publishBulk take a signal: checked at the edge, and one already aborted rejects with its reason, writing nothing', async () => {
  const queue = createQueue({ driver: { ...db.driver, close: async () => {} } });
  await expect(queue.publish('signal.bad', {}, { signal: 'soon' as never })).rejects
    .toMatchObject({ code: 'invalid_argument', field: 'options.signal', message: 'options.signal: must be an AbortSignal' });
  await expect(queue.publishBulk([{ task: 'signal.bad' }], undefined, { signal: {} as never })).rejects
    .toMatchObject({ code: 'invalid_argument', field: 'options.signal', message: 'options.signal: must be an AbortSignal' });
  await expect(queue.publishBulk([{ task: 'signal.bad' }], undefined, { timeoutMs: 5 } as never)).rejects
    .toMatchObject({ code: 'invalid_argument', field: 'options', message: 'options: unknown option "timeoutMs"' });
  const reason = new Error('caller gave up');
  const aborted = AbortSignal.abort(reason);
  await expect(queue.publish('signal.late', {}, { signal: aborted })).rejects.toBe(reason);
  await expect(queue.publishBulk([{ task: 'signal.late' }], undefined, { signal: aborted })).rejects.toBe(reason);
  expect(await sql(`select task from jobs.job_queue where task like 'signal.%'`)).toEqual([]);
  // A live signal changes nothing else.
  const live = new AbortController().signal;
  await queue.publish('signal.ok', { n: 1 }, { signal: live, priority: 3 });
  await queue.publishBulk([{ task: 'signal.ok' }], 'default', { signal: live });
  expect(await sql(`select priority from jobs.job_queue where task = 'signal.ok' order by job_id`)).toEqual([{ priority: 3 }, { priority: 0 }]);
});

it('POST /jobs against a frozen database answers 503 database_unavailable, ends the connection, and frees its pool slot', async () => {
  const proxy = await proxied();
  const queue = createQueue({ driver: pgDriver(through(proxy, 'bounded-http'), { max: 1 }) });
  const url = await new Promise<string>((done) => {
    const server = serve({ fetch: createApp({ queue, token: TOKEN, drain: false }).fetch, port: 0, hostname: '127.0.0.1' },
      (info) => done(`http://127.0.0.1:${info.port}`));
    servers.push(server);
  });
  const post = async (body: unknown) => {
    // The test's own bound: without the route's, the answer would come when TCP gives up (~15 min).
    const res = await fetch(`${url}/jobs`, {
      method: 'POST', body: JSON.stringify(body), signal: AbortSignal.timeout(30_000),
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    });
    return { status: res.status, body: await res.json() as unknown };
  };
  const unavailable = (what: string) => ({ status: 503, body: { error: {
    code: 'database_unavailable', field: null, message: `database unavailable: no reply within 10 s; ${what}` } } });
  try {
    expect((await post({ task: 'http.first' })).status).toBe(201);

    proxy.freezeOpen(); // the pool's one connection goes silent; new ones get through
    expect(await post({ task: 'http.lost', dedupeKey: 'lost-1' })).toEqual(unavailable(
      'the job may have been published (with a dedupeKey, sending it again with the same key gets that job, not a second one)'));
    await until(async () => (await sessions('bounded-http')) === 0, 'the given-up session to end', 60_000);
    const again = await post({ task: 'http.lost', dedupeKey: 'lost-1' }); // on a new connection: the slot was freed
    expect(again.status).toBe(201);
    expect(await post({ task: 'http.lost', dedupeKey: 'lost-1' })).toEqual(again);

    proxy.freezeOpen();
    expect(await post({ jobs: [{ task: 'http.bulk' }] })).toEqual(unavailable(
      'the jobs may have been published (sending them again gets the same job for each job with a dedupeKey; '
      + 'check the others before sending them again)'));
    await until(async () => (await sessions('bounded-http')) === 0, 'the given-up session to end', 60_000);
    expect((await post({ jobs: [{ task: 'http.bulk' }] })).status).toBe(201);

    // What was given up never ran: one job each.
    expect(await sql(`select task from jobs.job_queue where task like 'http.%' order by job_id`))
      .toEqual([{ task: 'http.first' }, { task: 'http.lost' }, { task: 'http.bulk' }]);
  } finally {
    await queue.close();
    await proxy.close();
  }
}, 240_000);
