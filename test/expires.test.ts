// Expiry of jobs that wait too long (pg-boss's retentionSeconds, Celery's
// expires): jobs.publish(expires_at), publish_arrays' expires_at array, a
// queue's expire_in, TS expiresAt / expiresInSeconds, POST /jobs and
// `pgdrain publish --expires-in / --expires-at`. A waiting job past its
// expiry is never handed out; the next claim (any queue's) or jobs.maintain
// ends it as a failure through jobs.expire, as a lease that ran out of
// retries ends. Times come from the functions' `now`: nothing sleeps.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { yearLike } from './support/future-year.js';
import { expectRefusedBeforeAnyStatement } from './support/publish-refusals.js';
import { postJobsTo } from './support/http-jobs.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });
const cli = (...args: string[]) => runCli(db.url, ...args);

// Ahead of the real clock: publishes at now() (a dedupe key's, a plain job's) come before T0's expiries.
const Y = yearLike(2030);
const T0 = Date.parse(`${Y}-01-01T00:00:00Z`);
const iso = (ms: number) => new Date(ms).toISOString();
const at = (s: number) => iso(T0 + s * 1000);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
  await sql(`update jobs.queue set dead_letter = null`);
  await sql(`delete from jobs.queue where name <> 'default'`);
});

const one = async (text: string, params?: unknown[]) => (await sql<{ id: string }>(text, params))[0]!.id;

/** A job due at T0 that expires `expiresIn` seconds later, published at T0. */
const publishAt = (extra = '', expiresIn: number | null = 60) =>
  one(`select jobs.publish('t', null, $1::timestamptz, now => $1::timestamptz, expires_at => $2::timestamptz ${extra})::text as id`,
      [at(0), expiresIn === null ? null : at(expiresIn)]);

/** jobs.consume at T0 + s: the ids it handed out. */
const consume = async (s: number, q = 'default') =>
  (await sql<{ id: string }>(`select job_id::text as id from jobs.consume(100, $1::timestamptz, $2)`, [at(s), q])).map((r) => r.id);

/** How a job ended (or undefined while it is queued). */
const ended = async (id: string) => (await sql<{ status: string; error: string; attempts: number; ended: string }>(
  `select status, error, attempts, to_json(ended_at at time zone 'UTC')#>>'{}' as ended from jobs.job where job_id = $1`, [id]))[0];

const expiredError = new RegExp(`^expired: not started before ${Y}-01-01T00:01:00.000Z$`);

describe('SQL', () => {
  it('a waiting job past its expiry is never claimed: the next claim ends it as a failure, its error recorded', async () => {
    const id = await publishAt();
    expect(await sql(`select to_json(expires_at at time zone 'UTC')#>>'{}' as e from jobs.job_queue where job_id = $1`, [id]))
      .toEqual([{ e: `${Y}-01-01T00:01:00` }]);
    expect(await consume(60)).toEqual([]);
    expect(await ended(id)).toMatchObject({ status: 'failure', error: expect.stringMatching(expiredError), attempts: 0,
                                            ended: `${Y}-01-01T00:01:00` });
    expect(await sql(`select 1 from jobs.job_queue`)).toEqual([]);
  });

  it("drain()'s claim (claim_json) neither hands it out nor leaves it, even when another queue is claimed", async () => {
    await sql(`select jobs.create_queue('other')`);
    const id = await publishAt();
    const r = (await sql<{ r: { count: number } }>(`select jobs.claim_json(10, now => $1::timestamptz, queue => 'other') as r`,
                                                   [at(61)]))[0]!.r;
    expect(r.count).toBe(0);
    expect(await ended(id)).toMatchObject({ status: 'failure', error: expect.stringMatching(/^expired: /) });
  });

  it('a job not yet expired is claimed as before, and one without an expiry whenever', async () => {
    const id = await publishAt();
    const plain = await one(`select jobs.publish('t', null, $1::timestamptz, now => $1::timestamptz)::text as id`, [at(0)]);
    expect((await consume(59.999)).sort()).toEqual([id, plain].sort());
  });

  it('a job past its expiry that another transaction holds is skipped, not handed out', async () => {
    const id = await publishAt();
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query('begin');
      await holder.query('select 1 from jobs.job_queue where job_id = $1 for update', [id]);
      expect(await consume(61)).toEqual([]);
    } finally {
      await holder.end();
    }
    expect(await consume(61)).toEqual([]);
    expect(await ended(id)).toMatchObject({ status: 'failure' });
  });

  it('its dependant fails as after a failed lease: cancelled, naming it', async () => {
    const id = await publishAt();
    const dep = await one(`select jobs.publish('t', null, $1::timestamptz, now => $1::timestamptz, depends_on => array[$2::bigint])::text as id`,
                          [at(0), id]);
    expect(await consume(61)).toEqual([]);
    expect(await ended(dep)).toMatchObject({ status: 'cancelled', error: `cancelled: dependency ${id} did not succeed` });
  });

  it('the next job of its serial key runs at that claim', async () => {
    const id = await publishAt(`, serial_key => 'k'`);
    const next = await one(`select jobs.publish('t', null, $1::timestamptz, now => $1::timestamptz, serial_key => 'k')::text as id`, [at(0)]);
    expect(await consume(61)).toEqual([next]);
    expect(await ended(id)).toMatchObject({ status: 'failure' });
  });

  it('a job waiting behind its serial key expires too, leaving the head as it is', async () => {
    const head = await one(`select jobs.publish('t', null, $1::timestamptz, now => $1::timestamptz, serial_key => 'k')::text as id`, [at(0)]);
    const behind = await publishAt(`, serial_key => 'k'`);
    expect(await consume(61)).toEqual([head]);
    expect(await ended(behind)).toMatchObject({ status: 'failure' });
  });

  it('its dedupe key is free: a publish of the key writes a new job', async () => {
    const id = await publishAt(`, dedupe_key => 'd'`);
    expect(await one(`select jobs.publish('t', null, dedupe_key => 'd')::text as id`)).toBe(id);
    expect(await consume(61)).toEqual([]);
    const again = await one(`select jobs.publish('t', null, dedupe_key => 'd')::text as id`);
    expect(again).not.toBe(id);
    expect(await ended(id)).toMatchObject({ status: 'failure' });
  });

  it('it goes to its queue\'s dead-letter queue, and pgdrain_completed is notified', async () => {
    await sql(`select jobs.create_queue('dead')`);
    await sql(`select jobs.create_queue('mail', dead_letter => 'dead')`);
    const id = await publishAt(`, queue => 'mail'`);
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    try {
      const heard: string[] = [];
      listener.on('notification', (n) => { if (n.channel === 'pgdrain_completed') heard.push(n.payload ?? ''); });
      await listener.query('listen pgdrain_completed');
      expect(await consume(61, 'mail')).toEqual([]);
      await listener.query('select 1'); // the notification arrives before this answer
      expect(heard).toEqual([id]);
    } finally {
      await listener.end();
    }
    expect(await sql(`select queue, attributes->'dead_letter'->>'job_id' as failed from jobs.job_queue`))
      .toEqual([{ queue: 'dead', failed: id }]);
  });

  it('a blocked job past its expiry waits for its dependencies, then expires at the next claim without running', async () => {
    const first = await one(`select jobs.publish('t', null, $1::timestamptz, now => $1::timestamptz)::text as id`, [at(0)]);
    const blocked = await publishAt(`, depends_on => array[${first}::bigint]`);
    expect(await consume(61)).toEqual([first]);
    expect(await ended(blocked)).toBeUndefined();
    await sql(`select jobs.ack($1::bigint, now => $2::timestamptz)`, [first, at(62)]);
    expect(await consume(62)).toEqual([]);
    expect(await ended(blocked)).toMatchObject({ status: 'failure', error: expect.stringMatching(/^expired: /) });
    expect(await sql(`select 1 from jobs.dependency`)).toEqual([]);
  });

  it('a running job past its expiry is not affected: it still acks', async () => {
    const id = await publishAt(`, timeout_seconds => 600`);
    expect(await consume(30)).toEqual([id]);
    expect(await consume(90)).toEqual([]);
    expect(await sql(`select jobs.ack($1::bigint, now => $2::timestamptz) as ok`, [id, at(90)])).toEqual([{ ok: true }]);
    expect(await ended(id)).toMatchObject({ status: 'success' });
  });

  it('a retry (nack) of a job whose expiry passed while it ran goes back to waiting, then expires at the next claim', async () => {
    const id = await publishAt(`, timeout_seconds => 600`);
    expect(await consume(30)).toEqual([id]);
    await sql(`select jobs.nack($1::bigint, 'boom', $2::timestamptz, $2::timestamptz)`, [id, at(90)]);
    expect(await consume(90)).toEqual([]);
    expect(await ended(id)).toMatchObject({ status: 'failure', attempts: 1, error: expect.stringMatching(/^expired: /) });
  });

  it('jobs.maintain ends them too (counted with the expired leases), so an undrained queue does not keep them', async () => {
    const id = await publishAt();
    const r = (await sql<{ r: { expired: number } }>(`select jobs.maintain(now => $1::timestamptz) as r`, [at(61)]))[0]!.r;
    expect(r.expired).toBe(1);
    expect(await ended(id)).toMatchObject({ status: 'failure' });
  });

  it('one call ends at most 500 serial-key jobs; the next call the rest', async () => {
    for (const from of [1, 301]) { // a bulk takes at most 500 serial keys
      await sql(`select jobs.publish_arrays(array_fill('t'::text, array[300]), scheduled_at => array_fill($1::timestamptz, array[300]),
                                            serial_keys => array(select 'k' || i from generate_series($3::int, $3::int + 299) i),
                                            expires_at => array_fill($2::timestamptz, array[300]), now => $1::timestamptz)`,
                [at(0), at(60), from]);
    }
    expect(await sql(`select jobs.expire(1000, $1::timestamptz) as n`, [at(61)])).toEqual([{ n: 500 }]);
    expect(await sql(`select jobs.expire(1000, $1::timestamptz) as n`, [at(61)])).toEqual([{ n: 100 }]);
  });

  it('publish refuses an expiry at or before the job\'s scheduled time (PD007 naming expires_at), writing nothing', async () => {
    const bad: [string, unknown[], string, RegExp][] = [
      [`select jobs.publish('t', null, $1::timestamptz, expires_at => $1::timestamptz)`, [at(0)], 'expires_at',
       /^expires_at: must be after the job's scheduled time/],
      [`select jobs.publish('t', null, $1::timestamptz, expires_at => $2::timestamptz)`, [at(10), at(5)], 'expires_at',
       /^expires_at: must be after/],
      [`select jobs.publish('t', null, expires_at => $1::timestamptz)`, ['infinity'], 'expires_at', /must be a finite time/],
      [`select jobs.publish_arrays(array['t', 't'], expires_at => array[null, now() - interval '1 second'])`, [], 'jobs[2].expires_at',
       /^jobs\[2\]\.expires_at: must be after/],
      [`select jobs.publish_arrays(array['t', 't'], delays => array[0, 100], expires_at => array[null, now() + interval '50 seconds'])`, [],
       'jobs[2].expires_at', /must be after/],
      [`select jobs.publish_arrays(array['t'], expires_at => array[now(), now()])`, [], 'jobs', /one element per task/],
    ];
    for (const [text, params, column, message] of bad) {
      await expect(sql(text, params), text).rejects.toMatchObject({ column, message: expect.stringMatching(message) });
    }
    expect(await sql('select 1 from jobs.job_queue')).toEqual([]);
  });

  it('publish_arrays stores one expiry per job; a bulk without expiries stores none', async () => {
    const ids = (await sql<{ ids: string[] }>(
      `select jobs.publish_arrays(array['t', 't'], scheduled_at => array[$1, $1]::timestamptz[],
                                  expires_at => array[$2, null]::timestamptz[], now => $1::timestamptz)::text[] as ids`,
      [at(0), at(60)]))[0]!.ids;
    const plain = (await sql<{ ids: string[] }>(`select jobs.publish_arrays(array['t'])::text[] as ids`))[0]!.ids;
    const rows = await sql<{ id: string; e: boolean }>(`select job_id::text as id, expires_at is not null as e from jobs.job_queue order by job_id`);
    expect(rows).toEqual([{ id: ids[0], e: true }, { id: ids[1], e: false }, { id: plain[0], e: false }]);
    expect((await consume(61)).sort()).toEqual([ids[1]!, plain[0]!].sort());
    expect(await ended(ids[0]!)).toMatchObject({ status: 'failure' });
  });

  it("a queue's expire_in gives its jobs an expiry after their scheduled time; their own wins; bad ones PD007", async () => {
    await sql(`select jobs.create_queue('mail', expire_in => 60)`);
    const a = await one(`select jobs.publish('t', null, $1::timestamptz, queue => 'mail')::text as id`, [at(0)]);
    const own = await one(`select jobs.publish('t', null, $1::timestamptz, queue => 'mail', expires_at => $2::timestamptz)::text as id`,
                          [at(0), at(600)]);
    const bulk = (await sql<{ ids: string[] }>(`select jobs.publish_arrays(array['t'], scheduled_at => array[$1::timestamptz], queue => 'mail')::text[] as ids`,
                                               [at(10)]))[0]!.ids[0]!;
    const e = async (id: string) => (await sql<{ s: number }>(
      `select extract(epoch from expires_at - $2::timestamptz)::float8 as s from jobs.job_queue where job_id = $1`, [id, at(0)]))[0]!.s;
    expect([await e(a), await e(own), await e(bulk)]).toEqual([60, 600, 70]);
    await sql(`select jobs.create_queue('mail', max_size => 10)`); // kept
    expect(await sql(`select expire_in::float8 as e from jobs.queue where name = 'mail'`)).toEqual([{ e: 60 }]);
    for (const v of ['0', '-1', '315360001']) {
      await expect(sql(`select jobs.create_queue('mail', expire_in => ${v})`)).rejects.toMatchObject({ code: 'PD007', column: 'expire_in' });
    }
    await sql(`select jobs.create_queue('mail', expire_in => null)`);
    expect(await sql(`select expire_in from jobs.queue where name = 'mail'`)).toEqual([{ expire_in: null }]);
  });

  it('a dedupe replace takes the new publish\'s expiry', async () => {
    const id = await publishAt(`, dedupe_key => 'd'`);
    const same = await one(`select jobs.publish('t', null, $1::timestamptz, dedupe_key => 'd', dedupe_mode => 'replace',
                                                 expires_at => $2::timestamptz)::text as id`, [at(0), at(30)]);
    expect(same).toBe(id);
    expect(await consume(31)).toEqual([]);
    expect(await ended(id)).toMatchObject({ status: 'failure', error: expect.stringMatching(new RegExp(`before ${Y}-01-01T00:00:30.000Z$`)) });
  });
});

describe('TypeScript', () => {
  it('publish takes expiresAt or expiresInSeconds (after the scheduled time); publishBulk per job', async () => {
    const runAt = new Date(T0);
    const a = await queue.publish('t', null, { runAt, expiresAt: new Date(T0 + 60_000) });
    const b = await queue.publish('t', null, { runAt, expiresInSeconds: 30 });
    const c = await queue.publish('t', null, { expiresInSeconds: 30 });
    const ids = await queue.publishBulk([
      { task: 't', runAt, expiresAt: new Date(T0 + 90_000) },
      { task: 't', runAt },
      { task: 't', runAt, expiresInSeconds: 45 },
      { task: 't', delaySeconds: 100, expiresInSeconds: 45 },
    ]);
    const rows = await sql<{ id: string; s: number | null }>(
      `select job_id::text as id, extract(epoch from expires_at - scheduled_at)::float8 as s from jobs.job_queue`);
    const s = Object.fromEntries(rows.map((r) => [r.id, r.s]));
    // Without runAt, expiresInSeconds counts from the call (the statement's few milliseconds
    // after the transaction's start, the scheduled time): jobs.call_time.
    expect([s[a], s[b], s[c], ...ids.map((i) => s[i])])
      .toEqual([60, 30, expect.closeTo(30, 1), 90, null, 45, expect.closeTo(45, 1)]);
  });

  it('bad expiries are refused naming the option: both given, not after runAt, out of range; the database\'s check too', async () => {
    await expectRefusedBeforeAnyStatement([
      [{ expiresAt: new Date(T0), expiresInSeconds: 5 }, 'options.expiresInSeconds', /give expiresAt or expiresInSeconds, not both/],
      [{ runAt: new Date(T0), expiresAt: new Date(T0) }, 'options.expiresAt', /must be after runAt/],
      [{ expiresInSeconds: 0 }, 'options.expiresInSeconds', /at least 0.001/],
      [{ expiresInSeconds: 1e-9 }, 'options.expiresInSeconds', /at least 0.001/],
      [{ expiresAt: new Date(Number.NaN) }, 'options.expiresAt', /./],
    ]);
    // Only the database knows its now: an expiry already past is its PD007, named as the option.
    await expect(queue.publish('t', null, { expiresAt: new Date(Date.now() - 60_000) }))
      .rejects.toMatchObject({ field: 'options.expiresAt' });
    await expect(queue.publishBulk([{ task: 't' }, { task: 't', expiresAt: new Date(Date.now() - 60_000) }]))
      .rejects.toMatchObject({ field: 'jobs[1].expiresAt' });
  });
});

describe('HTTP and CLI', () => {
  const post = postJobsTo(queue);
  const expiresIn = async (id: string) => (await sql<{ s: number | null }>(
    `select extract(epoch from expires_at - scheduled_at)::float8 as s from jobs.job_queue where job_id = $1`, [id]))[0]!.s;

  it('POST /jobs takes expiresAt or expiresInSeconds (one, or per job of a bulk); bad ones answer 400 naming the field', async () => {
    const one = await post({ task: 't', runAt: iso(T0), expiresAt: iso(T0 + 60_000) });
    expect(one.status).toBe(201);
    expect(await expiresIn(one.body.id)).toBe(60);
    const many = await post({ jobs: [{ task: 't' }, { task: 't', expiresInSeconds: 12 }] });
    expect(many.status).toBe(201);
    // From the call (without runAt): a few milliseconds after the scheduled time.
    expect([await expiresIn(many.body.ids[0]), await expiresIn(many.body.ids[1])]).toEqual([null, expect.closeTo(12, 1)]);

    const bad: [unknown, string][] = [
      [{ task: 't', expiresInSeconds: -1 }, 'expiresInSeconds'],
      [{ task: 't', expiresAt: 'tomorrow' }, 'expiresAt'],
      [{ task: 't', runAt: iso(T0), expiresAt: iso(T0) }, 'expiresAt'],
      [{ task: 't', expiresAt: iso(T0 + 1000), expiresInSeconds: 5 }, 'expiresInSeconds'],
      [{ jobs: [{ task: 't' }, { task: 't', expiresAt: iso(Date.now() - 60_000) }] }, 'jobs[1].expiresAt'],
    ];
    for (const [body, field] of bad) {
      const r = await post(body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body, JSON.stringify(body)).toMatchObject({ error: { field } });
    }
  });

  it('pgdrain publish --expires-in / --expires-at; bad ones exit 2 naming the flag', async () => {
    const r = await cli('publish', 't', '--at', iso(T0), '--expires-in', '90');
    expect(r).toMatchObject({ code: 0 });
    expect(await expiresIn(r.stdout.trim())).toBe(90);
    const r2 = await cli('publish', 't', '--at', iso(T0), '--expires-at', iso(T0 + 30_000));
    expect(r2).toMatchObject({ code: 0 });
    expect(await expiresIn(r2.stdout.trim())).toBe(30);

    const bad: [string[], RegExp][] = [
      [['--expires-in', '0'], /--expires-in/],
      [['--expires-at', 'soon'], /--expires-at/],
      [['--expires-in', '5', '--expires-at', iso(Date.now() + 60_000)], /give --expires-in or --expires-at, not both/],
      [['--at', iso(T0), '--expires-at', iso(T0)], /--expires-at: must be after/],
    ];
    for (const [args, message] of bad) {
      const b = await cli('publish', 't', ...args);
      expect(b.code, args.join(' ')).toBe(2);
      expect(b.stderr, args.join(' ')).toMatch(message);
    }
  });
});
