// publish_event's per-job retry policy and expiry (as jobs.publish's
// retry_delay / retry_backoff / retry_delay_max / expires_at): set on every
// subscriber's job, each queue's own expire_in when the event gives no
// expiry, refused as publish refuses them (same code, field and rule) at the
// SQL, TypeScript, CLI (dist/cli.mjs: `npm run build` first) and HTTP edges
// with nothing written; a fan-out job past its expiry is never claimed and
// ends as a failure. Times come from the functions' `now`: nothing sleeps.
// On a real PostgreSQL, real roles.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue, migrate } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });
const cli = (...args: string[]) => runCli(db.url, ...args);

const T0 = Date.parse('2030-01-01T00:00:00Z');
const at = (s: number) => new Date(T0 + s * 1000).toISOString();

type Row = { queue: string; d: number | null; b: boolean | null; m: number | null; expires_in: number | null };
/** Each job's queue, own retry policy and expiry (seconds after its scheduled time). */
const jobs = () => sql<Row>(`select queue, retry_delay::float8 as d, retry_backoff as b, retry_delay_max::float8 as m,
                               extract(epoch from expires_at - scheduled_at)::float8 as expires_in
                             from jobs.job_queue order by queue, job_id`);
const publishSql = async (text: string, params?: unknown[]) =>
  (await sql<{ ids: string[] }>(`select ${text}::text[] as ids`, params))[0]!.ids;
const errorOf = (p: Promise<unknown>) => p.then(() => { throw new Error('expected a rejection'); }, (e: unknown) => e);
const none = { d: null, b: null, m: null };

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.subscription');
  await sql(`update jobs.queue set dead_letter = null`);
  await sql(`delete from jobs.queue where name <> 'default'`);
  // mail: its jobs expire 600 s after their run time; crm: never.
  await sql(`select jobs.create_queue('mail', expire_in => 600); select jobs.create_queue('crm')`);
  await sql(`select jobs.subscribe('user.created', 'mail'); select jobs.subscribe('user.created', 'crm')`);
});

describe('SQL', () => {
  it('retry_delay, retry_backoff, retry_delay_max and expires_at go on every subscriber\'s job', async () => {
    expect(await publishSql(`jobs.publish_event('user.created', scheduled_at => $1::timestamptz, now => $1::timestamptz,
      retry_delay => 2.5, retry_backoff => 'fixed', retry_delay_max => 30, expires_at => $2::timestamptz)`, [at(0), at(90)]))
      .toHaveLength(2);
    expect(await jobs()).toEqual([{ queue: 'crm', d: 2.5, b: false, m: 30, expires_in: 90 },
                                  { queue: 'mail', d: 2.5, b: false, m: 30, expires_in: 90 }]);
  });

  it("left out: no policy of the job's own, and each queue's expire_in after the run time (delay included)", async () => {
    await publishSql(`jobs.publish_event('user.created', delay => 30)`);
    await publishSql(`jobs.publish_event('user.created', retry_backoff => 'exponential')`);
    await publishSql(`jobs.publish_event('user.created', retry_delay_max => 50, scheduled_at => $1::timestamptz)`, [at(0)]);
    expect(await jobs()).toEqual([
      { queue: 'crm', ...none, expires_in: null }, { queue: 'crm', d: null, b: true, m: null, expires_in: null },
      { queue: 'crm', d: null, b: null, m: 50, expires_in: null },
      // Without scheduled_at, from the call (jobs.call_time): its statement's few milliseconds after
      // the transaction's start, the scheduled time. With one, from it exactly.
      { queue: 'mail', ...none, expires_in: expect.closeTo(600, 1) },
      { queue: 'mail', d: null, b: true, m: null, expires_in: expect.closeTo(600, 1) },
      { queue: 'mail', d: null, b: null, m: 50, expires_in: 600 },
    ]);
  });

  it('bad values raise what jobs.publish raises for them (code, column, message), and write nothing', async () => {
    const cases: string[] = [
      'retry_delay => -1', 'retry_delay => 86401', "retry_delay => 'NaN'", "retry_backoff => 'linear'",
      'retry_delay_max => 0', 'retry_delay_max => 604801', 'retry_delay => 20, retry_delay_max => 10',
      'retry_delay_max => 4', "expires_at => 'infinity'",
      "scheduled_at => '2031-01-01T00:00:00Z', expires_at => '2031-01-01T00:00:00Z'",
      "scheduled_at => '2031-01-01T00:00:00Z', expires_at => '2030-12-31T00:00:00Z'",
    ];
    for (const arg of cases) {
      const event = await sqlErrorOf(sql, `select jobs.publish_event('user.created', ${arg})`);
      const job = await sqlErrorOf(sql, `select jobs.publish('t', ${arg})`);
      expect({ arg, code: event.code, column: event.column, message: event.message })
        .toEqual({ arg, code: job.code, column: job.column, message: job.message });
      expect(event.code, arg).toBe('PD007');
    }
    // A delay puts the run time later: an expiry before it is refused too.
    await expect(sql(`select jobs.publish_event('user.created', delay => 60, expires_at => now() + interval '30 seconds')`))
      .rejects.toMatchObject({ code: 'PD007', column: 'expires_at', message: expect.stringMatching(/would expire before it could run/) });
    expect(await jobs()).toEqual([]);
  });

  it("a fan-out job past its expiry (its own, or its queue's expire_in) is never claimed: the claim ends it as a failure", async () => {
    const own = await publishSql(`jobs.publish_event('user.created', scheduled_at => $1::timestamptz, now => $1::timestamptz,
      expires_at => $2::timestamptz)`, [at(0), at(60)]);
    // mail's expires 600 s after its run time; crm's never.
    const [crm, mail] = await publishSql(`jobs.publish_event('user.created', scheduled_at => $1::timestamptz,
      now => $1::timestamptz)`, [at(0)]);
    // At 60 s: the two with their own expiry end (whichever queue is claimed); crm's plain one runs.
    expect(await sql(`select job_id::text as id from jobs.consume(100, $1::timestamptz, 'crm')`, [at(60)])).toEqual([{ id: crm }]);
    expect(await sql(`select job_id::text as id, status, error, attempts from jobs.job order by job_id`)).toEqual(own.map((id) => ({
      id, status: 'failure', error: 'expired: not started before 2030-01-01T00:01:00.000Z', attempts: 0 })));
    // At 600 s, mail's plain one: its queue's expire_in.
    expect(await sql(`select job_id from jobs.consume(100, $1::timestamptz, 'mail')`, [at(600)])).toEqual([]);
    expect(await sql(`select status, error from jobs.job where job_id = $1`, [mail])).toEqual([
      { status: 'failure', error: 'expired: not started before 2030-01-01T00:10:00.000Z' }]);
  });

  it('a publisher may publish an event with them (the grant takes the new signature)', async () => {
    const prefix = `fj${Date.now().toString(36)}`; // roles are cluster-wide
    await migrate(db.driver, { roles: prefix });
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      await client.query(`set role ${prefix}_publisher`);
      const { rows } = await client.query(`select cardinality(jobs.publish_event('user.created', retry_delay => 1,
        retry_backoff => 'fixed', retry_delay_max => 9, expires_at => now() + interval '1 hour')) as n`);
      expect(rows).toEqual([{ n: 2 }]);
    } finally {
      await client.end();
    }
    expect((await jobs()).map((j) => [j.queue, j.d, j.b, j.m])).toEqual([['crm', 1, false, 9], ['mail', 1, false, 9]]);
  });
});

describe('TypeScript', () => {
  it("publishEvent takes publish's retry policy and expiresInSeconds / expiresAt", async () => {
    expect(await queue.publishEvent('user.created', {}, { retryDelaySeconds: 3, retryBackoff: false, retryDelayMaxSeconds: 40,
                                                          delaySeconds: 10, expiresInSeconds: 120 })).toHaveLength(2);
    const runAt = new Date('2031-01-01T00:00:00Z');
    await queue.publishEvent('user.created', {}, { runAt, expiresAt: new Date('2031-01-01T00:00:45Z'), retryBackoff: true });
    await queue.publishEvent('user.created', {}, { runAt });
    // expiresInSeconds without runAt counts from the call (a few milliseconds after the scheduled time).
    expect(await jobs()).toEqual([
      { queue: 'crm', d: 3, b: false, m: 40, expires_in: expect.closeTo(120, 1) },
      { queue: 'crm', d: null, b: true, m: null, expires_in: 45 },
      { queue: 'crm', ...none, expires_in: null },
      { queue: 'mail', d: 3, b: false, m: 40, expires_in: expect.closeTo(120, 1) },
      { queue: 'mail', d: null, b: true, m: null, expires_in: 45 },
      { queue: 'mail', ...none, expires_in: 600 },
    ]);
  });

  it("bad values are publish's ValidationError, naming the option; nothing written", async () => {
    const runAt = new Date('2031-01-01T00:00:00Z');
    const cases: object[] = [
      { retryDelaySeconds: -1 }, { retryDelaySeconds: Number.NaN }, { retryBackoff: 'fixed' }, { retryDelayMaxSeconds: 0 },
      { retryDelaySeconds: 20, retryDelayMaxSeconds: 10 }, { retryDelayMaxSeconds: 4 }, { expiresInSeconds: 0 },
      { expiresAt: new Date(Number.NaN) }, { expiresAt: runAt, expiresInSeconds: 5 }, { runAt, expiresAt: runAt },
    ];
    for (const options of cases) {
      const event = await errorOf(queue.publishEvent('user.created', {}, options as never));
      const job = await errorOf(queue.publish('t', {}, options as never));
      expect(event).toMatchObject({ name: 'ValidationError', field: expect.stringMatching(/^options\./) });
      expect({ options, field: (event as Error & { field: string }).field, message: (event as Error).message })
        .toEqual({ options, field: (job as Error & { field: string }).field, message: (job as Error).message });
    }
    // Only the database knows the run time a delay gives: its check, named as the option.
    const late = await errorOf(queue.publishEvent('user.created', {}, { delaySeconds: 3600, expiresAt: new Date(Date.now() + 60_000) }));
    expect(late).toMatchObject({ code: 'invalid_argument', field: 'options.expiresAt' });
    expect((late as Error).cause).toMatchObject({ code: 'PD007', column: 'expires_at' });
    expect(await jobs()).toEqual([]);
  });
});

describe('CLI', () => {
  it('event publish --retry-delay --retry-backoff --retry-delay-max --expires-in / --expires-at, checked as publish\'s flags', async () => {
    const published = await cli('event', 'publish', 'user.created', '{"n":1}', '--retry-delay', '3', '--retry-backoff', 'fixed',
                                '--retry-delay-max', '40', '--delay', '10', '--expires-in', '120');
    expect(published).toMatchObject({ code: 0 });
    expect(published.stdout.trim().split('\n')).toHaveLength(2);
    expect(await cli('event', 'publish', 'user.created', '--at', '2031-01-01T00:00:00Z', '--expires-at', '2031-01-01T00:00:30Z'))
      .toMatchObject({ code: 0 });
    // --expires-in without --at counts from the call (a few milliseconds after the scheduled time).
    expect(await jobs()).toEqual([
      { queue: 'crm', d: 3, b: false, m: 40, expires_in: expect.closeTo(120, 1) }, { queue: 'crm', ...none, expires_in: 30 },
      { queue: 'mail', d: 3, b: false, m: 40, expires_in: expect.closeTo(120, 1) }, { queue: 'mail', ...none, expires_in: 30 },
    ]);
    await sql('truncate jobs.job_queue');
    const bad = [['--retry-delay', '-1'], ['--retry-backoff', 'linear'], ['--retry-delay-max', '0'],
                 ['--retry-delay', '20', '--retry-delay-max', '10'], ['--expires-in', '0'], ['--expires-at', 'soon'],
                 ['--expires-in', '5', '--expires-at', '2031-01-01T00:00:00Z'],
                 ['--at', '2031-01-01T00:00:00Z', '--expires-at', '2031-01-01T00:00:00Z']];
    for (const flags of bad) {
      const event = await cli('event', 'publish', 'user.created', ...flags);
      const job = await cli('publish', 't', ...flags);
      expect({ flags, code: event.code, stderr: event.stderr }).toEqual({ flags, code: 2, stderr: job.stderr });
      expect(event.stderr).toMatch(/--retry|--expires/);
    }
    expect(await jobs()).toEqual([]);
  });
});

describe('HTTP', () => {
  const TOKEN = 'fanout-job-options-token-0123456789';
  const app = createApp({ queue, token: TOKEN });
  const post = async (path: string, body: unknown) => {
    const res = await app.request(path, { method: 'POST', body: JSON.stringify(body),
                                          headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' } });
    return { status: res.status, body: (await res.json()) as any };
  };

  it('POST /events/:event takes the retry policy and expiresAt / expiresInSeconds as POST /jobs does', async () => {
    expect(await post('/events/user.created', { retryDelaySeconds: 1, retryBackoff: true, retryDelayMaxSeconds: 8,
                                                 expiresInSeconds: 15 })).toMatchObject({ status: 201 });
    expect(await post('/events/user.created', { runAt: '2031-01-01T00:00:00Z', expiresAt: '2031-01-01T00:01:00Z' }))
      .toMatchObject({ status: 201 });
    // expiresInSeconds without runAt counts from the call (a few milliseconds after the scheduled time).
    expect(await jobs()).toEqual([
      { queue: 'crm', d: 1, b: true, m: 8, expires_in: expect.closeTo(15, 1) }, { queue: 'crm', ...none, expires_in: 60 },
      { queue: 'mail', d: 1, b: true, m: 8, expires_in: expect.closeTo(15, 1) }, { queue: 'mail', ...none, expires_in: 60 },
    ]);
    await sql('truncate jobs.job_queue');
    const bad: object[] = [{ retryDelaySeconds: -1 }, { retryBackoff: 'fixed' }, { retryDelayMaxSeconds: 604801 },
      { retryDelaySeconds: 20, retryDelayMaxSeconds: 10 }, { expiresInSeconds: 0 }, { expiresAt: 'tomorrow' },
      { expiresAt: '2031-01-01T00:00:00Z', expiresInSeconds: 5 },
      { runAt: '2031-01-01T00:00:00Z', expiresAt: '2031-01-01T00:00:00Z' }];
    for (const options of bad) {
      const event = await post('/events/user.created', options);
      const job = await post('/jobs', { task: 't', ...options });
      expect(event).toMatchObject({ status: 400, body: { error: { code: 'invalid_argument' } } });
      expect({ options, event }).toEqual({ options, event: job });
    }
    expect(await jobs()).toEqual([]);
  });
});
