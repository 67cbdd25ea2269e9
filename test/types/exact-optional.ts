// Compiled by test/exact-optional.test.ts under `exactOptionalPropertyTypes`
// against the declarations users get (never run). The docs' snippets pass
// values that may be undefined (process.env.X) to optional options, which the
// runtime takes as absent; so the public option types must say `?: T | undefined`.
import pg from 'pg';
import { createLambdaHandler } from '../../functions/lambda.js';
import { createWorker } from '../../functions/cloudflare.js';
import { neonHttpDriver } from '../../src/db/neon-http.js';
import { neonDriver } from '../../src/db/neon.js';
import { createApp } from '../../src/http/index.js';
import { createQueue, defineTask, pgDriver, schedule, type Driver, type JobContext, type QueueOptions } from '../../src/index.js';

declare const client: pg.Client;
declare const orderId: number;
declare function maybe<T>(): T | undefined;
const tasks = { math: { sum: async (b: { a: number; b: number }) => ({ sum: b.a + b.b }) } };

export async function readmeTypeScriptApi(): Promise<void> {
  // ---- docs/typescript-api.md, as written there
  const queue = createQueue({ connectionString: process.env.DATABASE_URL, tasks });
  await queue.migrate();

  await queue.publish('email.send', { to: 'ada@example.com' }, { priority: 10, timeoutSeconds: 30 });
  await queue.publishBulk([{ task: 'math.sum', body: { a: 1, b: 2 } }, { task: 'math.sum', body: { a: 3, b: 4 }, delaySeconds: 60 }]);

  await client.query('begin');
  await queue.using(client).publish('order.confirm', { orderId });
  await client.query('commit');

  await queue.drain(100, Date.now() + 55_000, { topic: 'email.%', concurrency: 20 });
  await queue.close();

  // ---- docs/http-and-lambda.md, as written there
  const app = createApp({ queue, token: process.env.PGDRAIN_TOKEN, hmacSecret: process.env.PGDRAIN_HMAC_SECRET,
                          limits: { maxBatchSize: 1000, maxBudgetSeconds: 300 } });
  void app;
}

// ---- docs/hooks-and-progress.md, lease extension, as written there
declare function reindexShard(shard: string, signal: AbortSignal): Promise<void>;
export async function reindex(body: { shards: string[] }, ctx: JobContext) {  // published with timeoutSeconds: 60
  for (const shard of body.shards) {
    await ctx.extendLease(60);                // a minute from now; not extended, ctx.signal fires at the old end
    await reindexShard(shard, ctx.signal);    // each shard well under a minute
  }
}

/** Every optional member of the public option types, given a value that may be undefined. */
export async function everyOption(): Promise<void> {
  const options: QueueOptions = { connectionString: maybe<string>(), driver: maybe<Driver>(), tasks: maybe<typeof tasks>(),
    drain: maybe<{ topic: string }>() };
  const queue = createQueue({ ...options, drain: { topic: maybe<string>(), concurrency: maybe<number>(), queue: maybe<string>() } });
  await queue.publish('a.b', {}, {
    runAt: maybe<Date>(), delaySeconds: maybe<number>(), timeoutSeconds: maybe<number>(), priority: maybe<number>(),
    maxRetries: maybe<number>(), queue: maybe<string>(), dedupeKey: maybe<string>(), dedupeMode: maybe<'keep' | 'replace'>(),
    serialKey: maybe<string>(), dependsOn: maybe<string[]>(), attributes: maybe<{ tenant: string }>(),
  });
  await queue.publishBulk([{ task: 'a.b', body: maybe<unknown>(), runAt: maybe<Date>(), timeoutSeconds: maybe<number>() }]);
  await queue.publish('a.b', {}, { retryDelaySeconds: maybe<number>(), retryBackoff: maybe<boolean>(),
    retryDelayMaxSeconds: maybe<number>() });
  await queue.publishBulk([{ task: 'a.b', retryDelaySeconds: maybe<number>(), retryBackoff: maybe<boolean>(),
    retryDelayMaxSeconds: maybe<number>() }]);
  await queue.drain(10, Date.now() + 1000, { topic: maybe<string>(), signal: maybe<AbortSignal>(), graceMs: maybe<number>() });
  await queue.redrive({ ids: maybe<string[]>(), task: maybe<string>(), queue: maybe<string>(), endedAfter: maybe<Date>(),
    errorLike: maybe<string>() });
  await queue.queues.create('mail', { maxSize: maybe<number>(), timeoutSeconds: maybe<number>(), priority: maybe<number>(),
    maxRetries: maybe<number>(), deadLetter: maybe<string>(), retryDelaySeconds: maybe<number>(),
    retryBackoff: maybe<boolean>(), retryDelayMaxSeconds: maybe<number>(), maxRunning: maybe<number>() });
  await queue.queues.purge('mail', { reason: maybe<string>() });
  await queue.queues.subscribe('user.created', 'mail', { task: maybe<string>() });
  await queue.publishEvent('user.created', {}, { runAt: maybe<Date>(), delaySeconds: maybe<number>(),
    timeoutSeconds: maybe<number>(), priority: maybe<number>(), maxRetries: maybe<number>(),
    attributes: maybe<{ tenant: string }>(), signal: maybe<AbortSignal>(), group: maybe<{ id: string; tier: string | undefined }>() });
  await queue.drain(10, Date.now() + 1000, { queue: maybe<string>(), filter: maybe<{ region: string }>(),
    exclude: maybe<{ partner: string }[]>(), workerId: maybe<string>(), lingerMs: maybe<number>(), pollMs: maybe<number>(),
    concurrency: maybe<number>(), hardSignal: maybe<AbortSignal>(), overrunMs: maybe<number>(),
    cancelCheckMs: maybe<number>(), settleMarginMs: maybe<number>(), flushIntervalMs: maybe<number>(),
    onJobStart: maybe<() => void>(), onJobEnd: maybe<() => void>() });
  await queue.reschedule(['1'], { runAt: maybe<Date>(), delaySeconds: maybe<number>(), priority: maybe<number>() });
  await queue.redrive({ includeCancelled: maybe<boolean>() });
  await queue.redrive({}, { signal: maybe<AbortSignal>() });
  await queue.reschedule(['1'], { priority: 1, signal: maybe<AbortSignal>() });
  await queue.queues.purge('q', { reason: maybe<string>(), signal: maybe<AbortSignal>() });
  await queue.listJobs({ queue: maybe<string>() }, { signal: maybe<AbortSignal>() });
  await queue.queueSize(maybe<string>(), { state: maybe<'pending' | 'running'>(), signal: maybe<AbortSignal>() });
  await queue.queues.subscriptions(maybe<string>(), { signal: maybe<AbortSignal>() });
  await queue.publish('a.b', {}, { throttleSeconds: maybe<number>(), dedupeKey: 'k' });
  queue.defineTask('a.e', async () => [], { batch: { maxSize: maybe<number>() } });
  await queue.waitFor('1', { signal: maybe<AbortSignal>(), timeoutMs: maybe<number>() });
  queue.defineTask('a.c', async () => null, { transactional: maybe<boolean>() });
  defineTask('a.d', async () => null, { transactional: maybe<boolean>() });
  defineTask('a.h', async () => null, { heartbeatSeconds: maybe<number>() });
  queue.defineTask('a.i', async () => null, { heartbeatSeconds: maybe<number>(), transactional: maybe<boolean>() });
  await schedule(queue.driver, { name: 'n', cron: '* * * * *', task: 'a.b', body: maybe<unknown>(), timeoutSeconds: maybe<number>(),
    priority: maybe<number>(), maxRetries: maybe<number>(), queue: maybe<string>(), runner: maybe<'drains'>(),
    dedupeKey: maybe<string>(), dedupeMode: maybe<'replace'>(), group: maybe<{ id: string; tier: string | undefined }>() });
  createApp({ queue, token: maybe<string>(), hmacSecret: maybe<string>(), limits: maybe<{ maxBatchSize: number }>(),
    drain: maybe<boolean>(), deadlineCap: maybe<() => number>(), signal: maybe<AbortSignal>(), graceMs: maybe<number>(),
    hardSignal: maybe<AbortSignal>(), onError: maybe<(e: unknown) => void>() });
  pgDriver('postgres://h/db', { max: maybe<number>() });
  pgDriver(new pg.Pool());
  neonDriver('postgres://h/db', { max: maybe<number>(), wsProxy: maybe<string>(), webSocketConstructor: maybe<unknown>() });
  neonHttpDriver('postgres://u@h/db', { fetchEndpoint: maybe<string>() });
  await queue.driver.query('select 1', [], { signal: maybe<AbortSignal>() });
  const driver: Driver = { ...queue.driver, maxConnections: maybe<number>(), holdsTransactions: maybe<boolean>(),
                           autocommit: maybe<boolean>() };
  void driver;
  void createWorker(tasks);
  void createLambdaHandler(tasks);
}

// ---- README "Typed tasks": a body type of optional fields is its own JSON form under the flag too
export async function typedTasks(): Promise<void> {
  const queue = createQueue({ connectionString: process.env.DATABASE_URL });
  const sendEmail = queue.defineTask('email.send', async (mail: { to: string; cc?: string[]; note?: string | undefined }, ctx) => {
    await ctx.publish('email.audit', { to: mail.to });
    return { sent: true };
  });
  await sendEmail.publish({ to: 'ada@example.com' });
  await sendEmail.publish({ to: 'ada@example.com', cc: ['bob@example.com'], note: maybe<string>() });
}
