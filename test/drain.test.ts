// drain(batchSize, deadline) over a real PostgreSQL: outcomes, failures, deadlines, signals.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, PgDrainError, schedule, ValidationError, type JobContext, type TaskMap } from '../src/index.js';
import { translateError } from '../src/errors.js';
import { emptyDb, testDb } from './support/db.js';
import { yearLike } from './support/future-year.js';

const db = await testDb();
const unmigrated = await emptyDb();
const sql = db.sql;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function queueWith(tasks: TaskMap) {
  return createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });
}

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
});

describe('drain', () => {
  it('runs nested and flat task names, stores results, stops when empty', async () => {
    const q = queueWith({ math: { sum: async (b: { a: number; b: number }) => ({ sum: b.a + b.b }) },
                          'text.upper': (b: { s: string }) => b.s.toUpperCase() });
    await q.publishBulk(Array.from({ length: 250 }, (_, i) => ({ task: 'math.sum', body: { a: i, b: 1 } })));
    await q.publish('text.upper', { s: 'hi' });
    const report = await q.drain(100, Date.now() + 120_000);
    expect(report).toMatchObject({ claimed: 251, succeeded: 251, failed: 0, retried: 0, released: 0,
                                   skipped: 0, stale: 0, stoppedBy: 'empty', failures: [] });
    expect(await sql(`select count(*)::int as n from jobs.job_queue`)).toEqual([{ n: 0 }]);
    expect(await sql(`select result from jobs.job where task = 'text.upper'`)).toEqual([{ result: 'HI' }]);
    expect(await sql(`select count(*)::int as n from jobs.job where task = 'math.sum' and (result->>'sum')::int = (body->>'a')::int + 1`))
      .toEqual([{ n: 250 }]);
  });

  it('settles in batches: far fewer statements than jobs', async () => {
    const q = queueWith({ noop: async () => null });
    await q.publishBulk(Array.from({ length: 2000 }, () => ({ task: 'noop' })));
    const report = await q.drain(500, Date.now() + 120_000);
    expect(report.succeeded).toBe(2000);
    expect(report.batches).toBeLessThanOrEqual(6); // 4 full claims + the empty one (+1 if a refill split)
  });

  it('a throw, a rejection and an unknown task are nacked with their error, a non-JSON result failed at once; the drain goes on', async () => {
    const q = queueWith({
      bad: {
        throws: () => { throw new Error('sync boom'); },
        rejects: async () => Promise.reject(new TypeError('async boom')),
        bigint: async () => 10n,
        fn: async () => () => 1,
        thrownString: async () => { throw 'plain string'; },
        // PostgreSQL stores neither NUL in text nor \u0000 in jsonb: neither may break the batch's settle
        nulError: async () => { throw new Error('nul\0here'); },
        nulResult: async () => 'nul\u0000here',
        // nor an unpaired surrogate in jsonb (JSON.stringify writes it as \udXXX)
        halfPair: async () => ({ s: 'half \ud83d pair' }),
      },
      ok: async () => 'fine',
    });
    const tasks = ['bad.throws', 'bad.rejects', 'bad.bigint', 'bad.fn', 'bad.thrownString', 'bad.nulError', 'bad.nulResult',
                   'bad.halfPair', 'no.such.task', 'ok'];
    for (const t of tasks) await q.publish(t, {}, { maxRetries: 1 });
    const report = await q.drain(10, Date.now() + 120_000);
    // A result that cannot be stored would be the same on a retry: failed at once (result-unstorable.test.ts).
    expect(report).toMatchObject({ claimed: 10, succeeded: 1, retried: 5, failed: 4, stoppedBy: 'empty' });
    const errors = await sql<{ task: string; last_error: string }>(
      `select task, last_error from jobs.job_queue union all select task, error from jobs.job where status = 'failure' order by task`);
    const byTask = Object.fromEntries(errors.map((e) => [e.task, e.last_error]));
    expect(byTask['bad.throws']).toMatch(/^Error: sync boom\n\s+at /); // message and stack
    expect(byTask['bad.rejects']).toMatch(/^TypeError: async boom/);
    expect(byTask['bad.bigint']).toMatch(/BigInt/);
    expect(byTask['bad.fn']).toMatch(/result is a function, which JSON has no value for/);
    expect(byTask['bad.thrownString']).toBe('non-Error thrown: "plain string"');
    expect(byTask['bad.nulError']).toMatch(/^Error: nul\\0here\n/);
    expect(byTask['bad.nulResult']).toMatch(/^FailJob: result not stored: result has \\u0000, which PostgreSQL cannot store/);
    expect(byTask['bad.halfPair']).toMatch(/result.s has an unpaired surrogate \(\\ud83d\), which PostgreSQL cannot store/);
    expect(byTask['no.such.task']).toMatch(/unknown task "no.such.task"/);
    expect(report.failures.map((f) => f.task).sort()).toEqual(errors.map((e) => e.task).sort());
    expect(report.failures.filter((f) => f.willRetry).map((f) => f.task).sort())
      .toEqual(['bad.nulError', 'bad.rejects', 'bad.thrownString', 'bad.throws', 'no.such.task']);

    // the retry is spent: the second failure ends them
    await sql(`update jobs.job_queue set scheduled_at = now()`);
    const second = await q.drain(10, Date.now() + 120_000);
    expect(second).toMatchObject({ claimed: 5, failed: 5, retried: 0 });
    expect(second.failures.every((f) => !f.willRetry)).toBe(true);
    expect(await sql(`select count(*)::int as n from jobs.job where status = 'failure' and attempts = 2`)).toEqual([{ n: 5 }]);
  });

  it('a handler hanging past its timeout is nacked as timed out, its signal aborted', async () => {
    let aborted: unknown;
    const q = queueWith({ hang: (_b: unknown, ctx: JobContext) => new Promise((_r, reject) => {
      ctx.signal.addEventListener('abort', () => { aborted = ctx.signal.reason; reject(new Error('aborted')); });
    }) });
    // 2 s, not 0.3 s: a claim answered after the job's timer ended (0.27 s on, a loaded machine's round trip)
    // nacks it unstarted (handler-end.ts), its handler never run.
    await q.publish('hang', null, { timeoutSeconds: 2, maxRetries: 0 });
    const report = await q.drain(5, Date.now() + 120_000);
    expect(report).toMatchObject({ claimed: 1, failed: 1, stoppedBy: 'empty' });
    expect(String(aborted)).toMatch(/timed out after 2 s/);
    expect(await sql(`select status, error from jobs.job`)).toEqual([{ status: 'failure', error: 'timed out after 2 s' }]);
  });

  it('with slow handlers returns by its deadline and leaves nothing running', async () => {
    const started: number[] = [];
    const q = queueWith({ slow: async (_b: unknown, ctx: JobContext) => {
      started.push(Date.now());
      await sleep(400);
      if (ctx.signal.aborted) throw new Error('aborted');
    } });
    // A 5 s deadline (not 2 s): its first claim has 3.7 s to spare before a 1 s job no longer fits (a loaded machine's
    // slow first claim claimed none); 100 jobs: at 4 per 0.4 s, no more than 4.7 s can take is about 47.
    await q.publishBulk(Array.from({ length: 100 }, () => ({ task: 'slow', timeoutSeconds: 1 })));
    const deadline = Date.now() + 5000;
    const report = await q.drain(4, deadline, { settleMarginMs: 300 });
    // The deadline contract, as the drain keeps it (not when it returned: a loaded machine's last settle takes its time):
    // it stopped for its deadline, began no handler once its time less the settle margin was up, left nothing leased (below).
    expect(report.stoppedBy).toBe('deadline');
    expect(started.length).toBeGreaterThan(0);
    expect(started.filter((t) => t >= deadline - 300), 'handlers begun at or after the deadline less the margin').toEqual([]);
    expect(report.claimed).toBeGreaterThan(0);
    expect(report.claimed).toBeLessThan(100);
    expect(report.succeeded + report.retried + report.released).toBe(report.claimed);
    expect(await sql(`select count(*)::int as n from jobs.job_queue where lease_until is not null`)).toEqual([{ n: 0 }]);
    expect(await sql(`select count(*)::int as n from jobs.job`)).toEqual([{ n: report.succeeded }]);
  });

  it('a deadline beyond setTimeout\'s 24.8-day range is a far deadline, not a passed one', async () => {
    // setTimeout fires a delay over 2^31 - 1 ms at once.
    const q = queueWith({ noop: async () => null });
    await q.publishBulk(Array.from({ length: 30 }, () => ({ task: 'noop' })));
    const report = await q.drain(10, Date.now() + 30 * 86_400_000);
    expect(report).toMatchObject({ claimed: 30, succeeded: 30, stoppedBy: 'empty' });
  });

  it('never claims a job whose timeout cannot fit, and reports it as skipped', async () => {
    const q = queueWith({ quick: async () => 1, long: async () => 2 });
    await q.publish('long', null, { timeoutSeconds: 120 });
    await q.publish('quick', null, { timeoutSeconds: 1 });
    const report = await q.drain(10, Date.now() + 5000);
    expect(report).toMatchObject({ claimed: 1, succeeded: 1, skipped: 1, stoppedBy: 'deadline' });
    expect(await sql(`select task, attempt, lease_until from jobs.job_queue`))
      .toEqual([{ task: 'long', attempt: 0, lease_until: null }]);
  });

  it('honours topic and concurrency', async () => {
    let running = 0;
    let peak = 0;
    const track = async () => {
      running++;
      peak = Math.max(peak, running);
      await sleep(20);
      running--;
    };
    const q = queueWith({ email: { send: track }, sms: { send: track } });
    await q.publishBulk([...Array(12)].map(() => ({ task: 'email.send' })).concat([{ task: 'sms.send' }]));
    const report = await q.drain(10, Date.now() + 120_000, { topic: 'email.%', concurrency: 3 });
    expect(report.succeeded).toBe(12);
    expect(peak).toBeLessThanOrEqual(3);
    expect(await sql(`select task from jobs.job_queue`)).toEqual([{ task: 'sms.send' }]);
  });

  it('stops on its abort signal: running handlers finish within the grace, the rest are retried at once, unclaimed ones left', async () => {
    const stop = new AbortController();
    const q = queueWith({
      quick: async () => { stop.abort(); return 'done'; },
      stuck: (_b: unknown, ctx: JobContext) => new Promise((resolve) => ctx.signal.addEventListener('abort', resolve)),
    });
    await q.publish('stuck', null, { priority: 1 });
    await q.publish('quick');
    await q.publishBulk(Array.from({ length: 5 }, () => ({ task: 'quick' })));
    const report = await q.drain(2, Date.now() + 120_000, { signal: stop.signal, graceMs: 200 });
    expect(report.stoppedBy).toBe('signal');
    expect(report).toMatchObject({ claimed: 2, succeeded: 1, retried: 1, released: 0 });
    const left = await sql(`select task, attempt, lease_until, last_error, scheduled_at <= now() as due from jobs.job_queue order by job_id`);
    expect(left).toHaveLength(6);
    expect(left.every((r) => r.lease_until === null && r.due)).toBe(true);
    // The one still running at the grace's end spent its attempt; the unclaimed ones none.
    expect(left.map((r) => [r.task, r.attempt])).toEqual([['stuck', 1], ...Array.from({ length: 5 }, () => ['quick', 0])]);
    expect(left[0]!.last_error).toBe("did not stop within graceMs=200 after the drain's signal");
  });

  it('ctx.publish adds follow-up jobs; publishing in a rolled-back transaction leaves nothing', async () => {
    const q = queueWith({ first: async (_b: unknown, ctx: JobContext) => ctx.publish('second', { from: ctx.job.id }), second: async () => 'ok' });
    const id = await q.publish('first');
    const report = await q.drain(10, Date.now() + 120_000);
    expect(report.succeeded).toBe(2);
    expect(await sql(`select body from jobs.job where task = 'second'`)).toEqual([{ body: { from: id } }]);

    await expect(db.driver.transaction(async (tx) => {
      await q.using(tx).publish('rolled.back');
      throw new Error('abort the transaction');
    })).rejects.toThrow('abort the transaction');
    expect(await sql(`select count(*)::int as n from jobs.job_queue`)).toEqual([{ n: 0 }]);
  });
});

describe('the queue\'s drain defaults', () => {
  it('an option given as undefined keeps the queue\'s default (exactOptionalPropertyTypes: undefined is absent)', async () => {
    const q = createQueue({ driver: { ...db.driver, close: async () => {} }, drain: { topic: 'mail.%' },
                            tasks: { mail: { send: async () => 'sent' }, sms: { send: async () => 'sent' } } });
    await q.publishBulk([{ task: 'mail.send' }, { task: 'sms.send' }]);
    expect(await q.drain(10, Date.now() + 120_000, { topic: undefined })).toMatchObject({ claimed: 1, succeeded: 1 });
    expect(await sql('select task from jobs.job_queue')).toEqual([{ task: 'sms.send' }]);
  });
});

describe('bad input at the TypeScript edge', () => {
  const q = queueWith({});
  it.each([
    ['batchSize', () => q.drain(0, Date.now() + 1000)],
    ['batchSize', () => q.drain(1.5, Date.now() + 1000)],
    ['deadline', () => q.drain(1, Number.NaN)],
    ['options.concurrency', () => q.drain(1, Date.now() + 1000, { concurrency: 0 })],
    ['task', () => q.publish('')],
    ['task', () => q.publish('bad name')],
    ['options.timeoutSeconds', () => q.publish('a', null, { timeoutSeconds: 0 })],
    ['options.timeoutSeconds', () => q.publish('a', null, { timeoutSeconds: 1e-300 })],
    ['options.maxRetries', () => q.publish('a', null, { maxRetries: -1 })],
    ['options.delaySeconds', () => q.publish('a', null, { delaySeconds: 5, runAt: new Date() })],
    ['options.delaySeconds', () => q.publish('a', null, { delaySeconds: 1e13 })],
    ['jobs[1].delaySeconds', () => q.publishBulk([{ task: 'ok' }, { task: 'ok', delaySeconds: 1e300 }])],
    ['options.runAt', () => q.publish('a', null, { runAt: new Date('+275760-09-13T00:00:00Z') })],
    ['options.dependsOn.0', () => q.publish('a', null, { dependsOn: ['9223372036854775808'] })],
    ['body', () => q.publish('a', { n: 1n })],
    ['body', () => q.publish('a', { s: 'nul\u0000' })],
    ['jobs[0].body', () => q.publishBulk([{ task: 'ok', body: ['nul\u0000'] }])],
    ['body', () => q.publish('a', { s: 'half \udc00 pair' })],
    ['jobs[1].body', () => q.publishBulk([{ task: 'ok' }, { task: 'ok', body: { ['key \ud800']: 1 } }])],
    ['options.attributes', () => q.publish('a', null, { attributes: { s: '\ud800' } })],
    ['jobs[1].task', () => q.publishBulk([{ task: 'ok' }, { task: 'no way' }])],
    // Text PostgreSQL would not store as given: a lone surrogate goes as U+FFFD, so 'k\ud800' and 'k\udc00' were one key.
    ['options.dedupeKey', () => q.publish('a', null, { dedupeKey: 'k\ud800' })],
    ['options.serialKey', () => q.publish('a', null, { serialKey: 'k\udc00' })],
    ['options.dedupeKey', () => q.publish('a', null, { dedupeKey: 'k\u0000' })],
    ['options.workerId', () => q.drain(1, Date.now() + 1000, { workerId: 'w\u0000' })],
    ['options.topic', () => q.drain(1, Date.now() + 1000, { topic: 'a.\ud800%' })],
    ['options.filter', () => q.drain(1, Date.now() + 1000, { filter: { a: '\u0000' } })],
    ['reason', () => q.cancel('1', 'why \ud800')],
    ['filter.errorLike', () => q.redrive({ errorLike: '%\u0000%' })],
  ])('%s', async (field, call) => {
    const error = await call().then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).field).toBe(field);
    expect(await sql(`select count(*)::int as n from jobs.job_queue`)).toEqual([{ n: 0 }]);
  });

  it.each([
    ['NaN', Number.NaN], ['an invalid Date', new Date('soon')], ['a string', '2030-01-01'],
    // Seconds, as the CLI's --deadline takes them: read as milliseconds, a date in 1970, so nothing would run.
    ['epoch seconds', Date.now() / 1000 + 60],
  ])('a deadline that is %s is refused, naming the rule', async (_what, deadline) => {
    await expect(queueWith({}).drain(1, deadline as number)).rejects.toMatchObject({
      field: 'deadline', message: 'deadline: must be a valid Date or epoch milliseconds (Date.now() + 55_000), not seconds' });
  });

  // zod's own wording ("Too big: expected number to be <=1000") named no rule of ours (reviewer V).
  it.each([
    ['options.maxRetries: must be at most 1000', () => queueWith({}).publish('a', null, { maxRetries: 1001 })],
    ['options.priority: must be at most 1000000', () => queueWith({}).publish('a', null, { priority: 1_000_001 })],
    ['options.priority: must be at least -1000000', () => queueWith({}).publish('a', null, { priority: -1_000_001 })],
    ['options.concurrency: must be at most 10000', () => queueWith({}).drain(1, Date.now() + 1000, { concurrency: 10_001 })],
    ['options.overrunMs: must be at most 3600000', () => queueWith({}).drain(1, Date.now() + 1000, { overrunMs: 3_600_001 })],
  ])('a number past its bound names the bound: %s', async (message, call) => {
    await expect(call()).rejects.toThrow(message);
  });

  it('a driver that is not one (an un-awaited pgliteDriver, a queue, an empty object) is named at once', async () => {
    const rule = 'must be a driver or client with a query() method (pgDriver(url), await pgliteDriver(dir), a pg client)';
    expect(() => createQueue({ driver: Promise.resolve(db.driver) as never }))
      .toThrow(`driver: ${rule}: a Promise: await it first`);
    expect(() => queueWith({}).using({} as never)).toThrow(`db: ${rule}: got object`);
    // A pg pool runs statements, but is no driver: it would fail inside the first drain, or at close().
    const pool = new pg.Pool({ connectionString: db.url });
    expect(() => createQueue({ driver: pool as never })).toThrow('driver: must be a pgdrain driver (with transaction() and close()): '
      + 'wrap a pg pool or client as pgDriver(pool), or pass connectionString');
    await pool.end();
    await expect(schedule(queueWith({}) as never, { name: 'n', cron: '* * * * *', task: 't' }))
      .rejects.toThrow(`db: ${rule}: a queue: pass queue.driver`);
  });

  it('a body nested too deeply to serialise is named as such, and a BigInt by its own reason', async () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    await expect(queueWith({}).publish('a', deep)).rejects.toMatchObject({
      field: 'body', message: 'body: must be JSON-serialisable (nested too deeply)' });
    // Where, as a result's BigInt is: unfixed, JSON.stringify's own words (Do not know how to serialize a BigInt), no path.
    await expect(queueWith({}).publish('a', { n: [1, 1n] })).rejects.toThrow(
      /^body: must be JSON-serialisable \(body\.n\[1\] is a BigInt, which JSON has none of: give it as a string\)$/);
  });

  it('an invalid Date as runAt is named as one', async () => {
    await expect(queueWith({}).publish('a', null, { runAt: new Date('2030-13-45') })).rejects.toMatchObject({
      field: 'options.runAt', message: 'options.runAt: must be a valid Date from 1970 to 9999' });
  });

  it('a value the database refuses as data (SQLSTATE class 22) is invalid_argument, not an outage', async () => {
    // Every edge checks what it knows; this is the net under them.
    const error = await sql('select $1::text as t', ['a\u0000b']).then(() => null, translateError);
    expect(error).toBeInstanceOf(PgDrainError);
    expect(error).toMatchObject({ code: 'invalid_argument' });
    expect((error as PgDrainError).message).toMatch(/^invalid value: invalid byte sequence for encoding "UTF8": 0x00/);
  });

  it('a task export that throws when read nacks its job; the drain goes on', async () => {
    const tasks = { ok: async () => 'fine', group: { get broken(): never { throw new Error('bad export'); } } } as unknown as TaskMap;
    const q = queueWith(tasks);
    await q.publish('group.broken', null, { maxRetries: 0, timeoutSeconds: 5 });
    await q.publish('ok', null, { timeoutSeconds: 5 });
    const report = await q.drain(10, Date.now() + 60_000);
    expect(report).toMatchObject({ claimed: 2, succeeded: 1, failed: 1 });
    expect(report.failures).toMatchObject([{ task: 'group.broken', error: expect.stringMatching(/^Error: bad export/) }]);
  });

  it('a report lists the first 100 failures and counts the rest', async () => {
    const failing = queueWith({ boom: async () => { throw new Error('boom'); } });
    await failing.publishBulk(Array.from({ length: 130 }, () => ({ task: 'boom', maxRetries: 0, timeoutSeconds: 5 })));
    const report = await failing.drain(50, Date.now() + 60_000);
    expect(report).toMatchObject({ failed: 130, failuresOmitted: 30 });
    expect(report.failures).toHaveLength(100);
    expect(await sql(`select count(*)::int as n from jobs.job where status = 'failure' and error like 'Error: boom%'`)).toEqual([{ n: 130 }]);
  });

  it('publishBulk keeps each job its own options when only some jobs set them', async () => {
    const at = new Date(`${yearLike(2031)}-05-06T07:08:09Z`); // ahead of now() by more than the 59 minutes 'later' asks
    // 'null' as a task name: task names travel as a hand-built array literal,
    // where an unquoted NULL would be SQL NULL.
    const ids = await q.publishBulk([
      { task: 'mix.a', body: { n: 1 } },
      { task: 'mix.b', priority: 4, maxRetries: 0 },
      { task: 'null', body: 'text', runAt: at, timeoutSeconds: 2.5 },
      { task: 'mix.d', delaySeconds: 3600 },
    ]);
    expect(await sql(`select job_id::text as id, task, body, priority, max_retries, timeout::float8 as timeout,
                             scheduled_at = $1 as at, scheduled_at > now() + interval '59 minutes' as later
                      from jobs.job_queue order by job_id`, [at])).toEqual([
      { id: ids[0], task: 'mix.a', body: { n: 1 }, priority: 0, max_retries: 3, timeout: 60, at: false, later: false },
      { id: ids[1], task: 'mix.b', body: null, priority: 4, max_retries: 0, timeout: 60, at: false, later: false },
      { id: ids[2], task: 'null', body: 'text', priority: 0, max_retries: 3, timeout: 2.5, at: true, later: true },
      { id: ids[3], task: 'mix.d', body: null, priority: 0, max_retries: 3, timeout: 60, at: false, later: true },
    ]);
    await sql('truncate jobs.job_queue');
  });

  it('a literal backslash before u0000 is not a NUL, nor a paired surrogate a half one: such a body is published', async () => {
    const id = await q.publish('a', { s: '\\u0000', t: '\\ud800', e: '\u{1F600}' });
    expect(await sql(`select body->>'s' as s, body->>'t' as t, body->>'e' as e from jobs.job_queue where job_id = $1`, [id]))
      .toEqual([{ s: '\\u0000', t: '\\ud800', e: '\u{1F600}' }]);
    await sql('truncate jobs.job_queue');
  });

  it('createQueue without a connection names the field', () => {
    expect(() => createQueue({})).toThrow(/connectionString/);
  });

  it('an unmigrated database says to run migrate', async () => {
    // A database of its own: `postgres` gets the jobs schema from the pg_cron tests.
    const bare = createQueue({ connectionString: unmigrated.url, tasks: {} });
    const error = await bare.drain(1, Date.now() + 1000).catch((e: unknown) => e);
    await bare.close();
    expect(error).toBeInstanceOf(PgDrainError);
    expect((error as PgDrainError).code).toBe('not_migrated');
  });
});
