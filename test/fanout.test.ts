// Fan-out (sql/0033_fanout.sql; pg-boss's subscribe / publish): queues
// subscribe to an event, and one publish of it writes one job into each, in
// one statement, all or nothing. SQL, TypeScript, the CLI (dist/cli.mjs:
// `npm run build` first) and HTTP, on a real PostgreSQL, with real roles.
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue, migrate, type JobContext } from '../src/index.js';
import { sqlErrorOf, testDb, withClient } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const ran: { task: string; queue: string; body: unknown }[] = [];
const record = async (body: unknown, ctx: JobContext) => {
  ran.push({ task: ctx.job.task, queue: ctx.job.queue, body });
};
const queue = createQueue({ driver: { ...db.driver, close: async () => {} },
                            tasks: { email: { welcome: record }, crm: { sync: record }, 'user.created': record } });
const cli = (...args: string[]) => runCli(db.url, ...args);

type Row = { job_id: string; task: string; queue: string; body: unknown; priority: number; timeout: string; attributes: unknown };
const jobs = () => sql<Row>(`select job_id::text, task, queue, body, priority, timeout::text, attributes
                             from jobs.job_queue order by queue`);
const publishSql = async (text: string, params?: unknown[]) =>
  (await sql<{ ids: string[] }>(`select ${text}::text[] as ids`, params))[0]!.ids;

beforeEach(async () => {
  ran.length = 0;
  await sql('truncate jobs.job_queue, jobs.job, jobs.subscription');
  await sql(`delete from jobs.queue where name <> 'default'`);
  await sql(`select jobs.create_queue('mail', default_timeout => 300); select jobs.create_queue('crm')`);
});

describe('SQL', () => {
  it('one publish writes one job into each subscribed queue, of its subscription\'s task', async () => {
    expect(await sql(`select jobs.subscribe('user.created', 'mail', 'email.welcome') as r`)).toEqual([{ r: true }]);
    expect(await sql(`select jobs.subscribe('user.created', 'crm', 'crm.sync') as r`)).toEqual([{ r: true }]);
    await sql(`select jobs.subscribe('order.paid', 'crm')`); // another event: not published below
    const ids = await publishSql(`jobs.publish_event('user.created', '{"user":42}', priority => 5, attributes => '{"tenant":7}')`);
    expect(ids).toHaveLength(2);
    const rows = await jobs();
    // Ids in queue-name order; each queue's defaults fill what the event leaves out (mail's timeout 300).
    expect(rows.map((r) => r.job_id)).toEqual(ids);
    expect(rows).toEqual([
      { job_id: ids[0], task: 'crm.sync', queue: 'crm', body: { user: 42 }, priority: 5, timeout: '60', attributes: { tenant: 7 } },
      { job_id: ids[1], task: 'email.welcome', queue: 'mail', body: { user: 42 }, priority: 5, timeout: '300', attributes: { tenant: 7 } },
    ]);
    expect(await sql(`select event, queue, task from jobs.subscriptions order by event, queue`)).toEqual([
      { event: 'order.paid', queue: 'crm', task: 'order.paid' }, // no task: the event's name
      { event: 'user.created', queue: 'crm', task: 'crm.sync' },
      { event: 'user.created', queue: 'mail', task: 'email.welcome' },
    ]);
  });

  it('no subscriber: an empty answer, nothing written; the run time is each job\'s', async () => {
    expect(await publishSql(`jobs.publish_event('nobody.listens', '{}')`)).toEqual([]);
    expect(await jobs()).toEqual([]);
    await sql(`select jobs.subscribe('later', 'mail')`);
    const [id] = await publishSql(`jobs.publish_event('later', delay => 3600)`);
    const [at] = await publishSql(`jobs.publish_event('later', scheduled_at => '2030-01-01T00:00:00Z')`);
    expect(await sql(`select job_id::text, extract(epoch from scheduled_at - created_at)::int as after, body from jobs.job_queue
                      where job_id = $1`, [id])).toEqual([{ job_id: id, after: 3600, body: null }]);
    expect(await sql(`select scheduled_at = '2030-01-01T00:00:00Z' as ok from jobs.job_queue where job_id = $1`, [at])).toEqual([{ ok: true }]);
  });

  it('subscribing again changes the task (given) or keeps it (not given); unsubscribe answers whether it removed one', async () => {
    await sql(`select jobs.subscribe('user.created', 'mail', 'email.welcome'); select jobs.subscribe('user.created', 'crm')`);
    expect(await sql(`select jobs.subscribe('user.created', 'mail', 'email.hello') as r`)).toEqual([{ r: false }]);
    expect(await sql(`select jobs.subscribe('user.created', 'mail') as r`)).toEqual([{ r: false }]);
    expect(await sql(`select task from jobs.subscriptions where queue = 'mail'`)).toEqual([{ task: 'email.hello' }]);
    expect(await sql(`select jobs.unsubscribe('user.created', 'crm') as a, jobs.unsubscribe('user.created', 'crm') as b`))
      .toEqual([{ a: true, b: false }]);
    await publishSql(`jobs.publish_event('user.created')`);
    expect((await jobs()).map((r) => [r.queue, r.task])).toEqual([['mail', 'email.hello']]);
  });

  // It rewrote the row (a new row version, for a logical-replication reader an UPDATE) with the same task, and
  // took the queue's key-share lock: a transaction id. Now it answers false having written and locked nothing.
  it('subscribing again with nothing to change (no task, or the same one) writes nothing: the same row version, no transaction id', async () => {
    await sql(`select jobs.subscribe('user.created', 'mail', 'email.welcome')`);
    const version = `select xmin::text, ctid::text, xmax::text from jobs.subscription where queue = 'mail'`;
    const before = await sql(version);
    for (const call of [`jobs.subscribe('user.created', 'mail', 'email.welcome')`, `jobs.subscribe('user.created', 'mail')`]) {
      const [r, xid] = await withClient(db.url, async (c) => {
        await c.query('begin');
        const answer = (await c.query(`select ${call} as r`)).rows[0].r as boolean;
        const assigned = (await c.query('select pg_current_xact_id_if_assigned()::text as x')).rows[0].x as string | null;
        await c.query('commit');
        return [answer, assigned];
      });
      expect([r, xid], call).toEqual([false, null]);
    }
    expect(await cli('event', 'subscribe', 'user.created', 'mail', '--task', 'email.welcome')).toMatchObject({ code: 0, stdout: 'unchanged\n' });
    expect(await sql(version)).toEqual(before);
    // Another task still changes it, in a new row version.
    expect(await sql(`select jobs.subscribe('user.created', 'mail', 'email.hello') as r`)).toEqual([{ r: false }]);
    expect(await sql(version)).not.toEqual(before);
    expect(await sql(`select task from jobs.subscriptions where queue = 'mail'`)).toEqual([{ task: 'email.hello' }]);
  });

  it('subscribing an sql: event again without a task keeps its task, whatever the event name would be', async () => {
    // The event's name is not an allowed SQL task: only a new subscription would take it as its task.
    await sql(`select jobs.subscribe('sql:public.ev', 'mail', 'email.welcome')`);
    expect(await sql(`select jobs.subscribe('sql:public.ev', 'mail') as r`)).toEqual([{ r: false }]);
    expect(await sql(`select task from jobs.subscriptions where event = 'sql:public.ev'`)).toEqual([{ task: 'email.welcome' }]);
    await expect(sql(`select jobs.subscribe('sql:public.ev', 'crm')`)).rejects.toMatchObject({ code: 'PD018', column: 'event' });
  });

  it('a full queue refuses the whole publish: nothing is written to any queue; a paused queue takes its job', async () => {
    // zfull comes last in name order: crm's and mail's jobs are written before it refuses.
    await sql(`select jobs.create_queue('zfull', max_size => 1); select jobs.pause_queue('mail')`);
    await sql(`select jobs.subscribe('user.created', q) from unnest(array['crm', 'mail', 'zfull']) q`);
    expect(await publishSql(`jobs.publish_event('user.created', '{"n":1}')`)).toHaveLength(3);
    expect((await jobs()).map((r) => r.queue)).toEqual(['crm', 'mail', 'zfull']); // mail is paused, yet takes its job
    const e = await sqlErrorOf(sql, `select jobs.publish_event('user.created', '{"n":2}')`);
    expect(e).toMatchObject({ code: 'PD010', column: 'queue',
                              message: expect.stringMatching(/^queue: queue 'zfull' is full: 1 waiting job \+ 1 published > max_size 1; publish later/) });
    expect((await jobs()).map((r) => [r.queue, r.body])).toEqual([['crm', { n: 1 }], ['mail', { n: 1 }], ['zfull', { n: 1 }]]);
    await sql(`select jobs.create_queue('zfull', max_size => null)`);
    expect(await publishSql(`jobs.publish_event('user.created', '{"n":3}')`)).toHaveLength(3);
  });

  it('bad input raises class PD naming the field, and writes nothing', async () => {
    await sql(`select jobs.subscribe('user.created', 'mail')`);
    const cases: [string, string, string][] = [
      [`jobs.subscribe('bad event', 'mail')`, 'PD001', 'event'],
      [`jobs.subscribe(null, 'mail')`, 'PD001', 'event'],
      [`jobs.subscribe('e', 'nope')`, 'PD009', 'queue'],
      [`jobs.subscribe('e', 'bad queue')`, 'PD009', 'queue'],
      [`jobs.subscribe('e', 'mail', 'bad task')`, 'PD001', 'task'],
      [`jobs.subscribe('e', 'mail', 'sql:public.nope')`, 'PD018', 'task'],
      [`jobs.subscribe('sql:public.nope', 'mail')`, 'PD018', 'event'], // no task given: the event is the task
      [`jobs.unsubscribe('e', null)`, 'PD009', 'queue'],
      [`jobs.publish_event('bad/event')`, 'PD001', 'event'],
      [`jobs.publish_event('user.created', priority => 2000000)`, 'PD004', 'priority'],
      [`jobs.publish_event('user.created', delay => -1)`, 'PD007', 'delay'],
      [`jobs.publish_event('user.created', delay => 'NaN')`, 'PD007', 'delay'],
      [`jobs.publish_event('user.created', delay => 1, scheduled_at => now())`, 'PD007', 'delay'],
      [`jobs.publish_event('user.created', scheduled_at => 'infinity')`, 'PD007', 'scheduled_at'],
      [`jobs.publish_event('user.created', attributes => '[1]')`, 'PD014', 'attributes'],
    ];
    for (const [call, code, column] of cases) {
      const e = await sqlErrorOf(sql, `select ${call}`);
      expect({ call, code: e.code, column: e.column, message: e.message.startsWith(`${column}: `) }).toEqual({ call, code, column, message: true });
    }
    expect(await sql(`select queue, event, task from jobs.subscriptions`)).toEqual([{ queue: 'mail', event: 'user.created', task: 'user.created' }]);
    expect(await jobs()).toEqual([]);
  });

  it('a subscription whose sql: task is no longer allowed refuses the publish, naming the subscription', async () => {
    await sql(`create schema if not exists fan; create or replace function fan.run(b jsonb) returns void language sql as ''`);
    await sql(`select jobs.allow_sql_task('fan.run'); select jobs.subscribe('user.created', 'mail', 'sql:fan.run');
               select jobs.subscribe('user.created', 'crm'); select jobs.disallow_sql_task('fan.run')`);
    const e = await sqlErrorOf(sql, `select jobs.publish_event('user.created')`);
    expect(e).toMatchObject({ code: 'PD018', column: 'task',
      message: expect.stringMatching(/^task: queue 'mail' subscribes to 'user\.created' with task sql:fan\.run, which is not an allowed SQL task/) });
    expect(await jobs()).toEqual([]);
  });

  it('a row written by hand holds the task-name rule too', async () => {
    for (const [event, task] of [['e', 'bad task'], ['bad event', 't'], ['e', ''], ['e', 'x'.repeat(201)]]) {
      const e = await sqlErrorOf(sql, `insert into jobs.subscription (event, queue, task) values ($1, 'mail', $2)`, [event, task]);
      expect({ event, task, code: e.code, constraint: e.constraint })
        .toEqual({ event, task, code: '23514', constraint: event === 'e' ? 'subscription_task_name' : 'subscription_event_name' });
    }
    await sql(`insert into jobs.subscription (event, queue, task) values ('e', 'mail', 'sql:fan.run')`);
  });

  it('a queue deleted takes its subscriptions with it', async () => {
    await sql(`select jobs.subscribe('user.created', 'mail'); select jobs.subscribe('user.created', 'crm')`);
    await sql(`delete from jobs.queue where name = 'crm'`);
    expect(await sql(`select queue from jobs.subscriptions`)).toEqual([{ queue: 'mail' }]);
    expect(await publishSql(`jobs.publish_event('user.created')`)).toHaveLength(1);
  });
});

describe('roles', () => {
  // Roles are cluster-wide: a prefix of this run's own.
  const prefix = `f${Date.now().toString(36)}`;
  const client = new pg.Client({ connectionString: db.url });
  beforeAll(async () => {
    await client.connect();
    await migrate(db.driver, { roles: prefix });
  });
  afterAll(async () => {
    await client.end();
  });
  /** Runs text as role, rolled back. */
  async function as(role: string, text: string): Promise<unknown[]> {
    await client.query('begin');
    try {
      await client.query(`set local role ${role}`);
      return (await client.query(text)).rows;
    } finally {
      await client.query('rollback');
    }
  }

  it('a publisher (and a worker) may publish an event but not subscribe; an admin may subscribe', async () => {
    await sql(`select jobs.subscribe('user.created', 'mail')`);
    expect(await as(`${prefix}_publisher`, `select cardinality(jobs.publish_event('user.created', '{}')) as n`)).toEqual([{ n: 1 }]);
    expect(await as(`${prefix}_worker`, `select cardinality(jobs.publish_event('user.created', '{}')) as n`)).toEqual([{ n: 1 }]);
    for (const role of ['publisher', 'worker']) {
      await expect(as(`${prefix}_${role}`, `select jobs.subscribe('user.created', 'crm')`)).rejects.toMatchObject({ code: '42501' });
      await expect(as(`${prefix}_${role}`, `select jobs.unsubscribe('user.created', 'mail')`)).rejects.toMatchObject({ code: '42501' });
      await expect(as(`${prefix}_${role}`, `select * from jobs.subscriptions`)).rejects.toMatchObject({ code: '42501' });
    }
    expect(await as(`${prefix}_admin`, `select jobs.subscribe('user.created', 'crm') as r`)).toEqual([{ r: true }]);
    expect(await as(`${prefix}_admin`, `select count(*)::int as n from jobs.subscriptions`)).toEqual([{ n: 1 }]);
  });
});

describe('TypeScript', () => {
  it('queues.subscribe, publishEvent, and drained jobs run their subscription\'s task', async () => {
    expect(await queue.queues.subscribe('user.created', 'mail', { task: 'email.welcome' })).toBe(true);
    expect(await queue.queues.subscribe('user.created', 'crm', { task: 'crm.sync' })).toBe(true);
    expect(await queue.queues.subscribe('user.created', 'default')).toBe(true);
    expect((await queue.queues.subscriptions('user.created')).map((s) => [s.queue, s.task]))
      .toEqual([['crm', 'crm.sync'], ['default', 'user.created'], ['mail', 'email.welcome']]);
    const ids = await queue.publishEvent('user.created', { user: 42 }, { priority: 3, attributes: { tenant: 7 } });
    expect(ids).toHaveLength(3);
    for (const name of ['crm', 'default', 'mail']) {
      expect(await queue.drain(10, Date.now() + 600_000, { queue: name })).toMatchObject({ claimed: 1, succeeded: 1 });
    }
    expect(ran.sort((a, b) => a.queue.localeCompare(b.queue))).toEqual([
      { task: 'crm.sync', queue: 'crm', body: { user: 42 } },
      { task: 'user.created', queue: 'default', body: { user: 42 } },
      { task: 'email.welcome', queue: 'mail', body: { user: 42 } },
    ]);
    expect(await queue.queues.unsubscribe('user.created', 'default')).toBe(true);
    expect(await queue.queues.unsubscribe('user.created', 'default')).toBe(false);
    expect(await queue.publishEvent('nobody.listens')).toEqual([]);
  });

  it('through queue.using(client) the jobs exist only if the transaction commits', async () => {
    await queue.queues.subscribe('user.created', 'mail');
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      await client.query('begin');
      expect(await queue.using(client).publishEvent('user.created', { n: 1 })).toHaveLength(1);
      await client.query('rollback');
      expect(await jobs()).toEqual([]);
      await client.query('begin');
      const [id] = await queue.using(client).publishEvent('user.created', { n: 2 });
      await client.query('commit');
      expect((await jobs()).map((r) => [r.job_id, r.body])).toEqual([[id, { n: 2 }]]);
    } finally {
      await client.end();
    }
  });

  it('bad input is a ValidationError naming the field; a full queue is queue_full and writes nothing', async () => {
    await queue.queues.subscribe('user.created', 'mail');
    const fields: [() => Promise<unknown>, string][] = [
      [() => queue.queues.subscribe('bad event', 'mail'), 'event'],
      [() => queue.queues.subscribe('e', 'bad queue'), 'queue'],
      [() => queue.queues.subscribe('e', 'nope'), 'queue'], // the database's: no such queue
      [() => queue.queues.subscribe('e', 'mail', { task: 'bad task' }), 'options.task'],
      [() => queue.queues.subscribe('e', 'mail', { task: 'sql:public.nope' }), 'options.task'], // the database's
      [() => queue.queues.subscribe('sql:public.nope', 'mail'), 'event'], // no options.task: the event is the task
      [() => queue.queues.subscribe('e', 'mail', { tsak: 'x' } as never), 'options'],
      [() => queue.queues.unsubscribe('e', 42 as never), 'queue'],
      [() => queue.queues.subscriptions('bad event'), 'event'],
      [() => queue.publishEvent('', {}), 'event'],
      [() => queue.publishEvent('user.created', 10n), 'body'],
      [() => queue.publishEvent('user.created', {}, { priority: 1.5 }), 'options.priority'],
      [() => queue.publishEvent('user.created', {}, { runAt: new Date(), delaySeconds: 1 }), 'options.delaySeconds'],
      [() => queue.publishEvent('user.created', {}, { attributes: [] as never }), 'options.attributes'],
      [() => queue.publishEvent('user.created', {}, { dedupeKey: 'k' } as never), 'options.dedupeKey'], // one key: one job, no fan-out
    ];
    for (const [call, field] of fields) {
      const e = await call().then(() => null, (error: unknown) => error);
      expect({ call: call.toString(), e }).toMatchObject({ call: call.toString(), e: { code: 'invalid_argument', field } });
    }
    await queue.queues.create('zfull', { maxSize: 1 });
    await queue.queues.subscribe('user.created', 'zfull');
    await queue.publishEvent('user.created');
    await expect(queue.publishEvent('user.created')).rejects.toMatchObject({ code: 'queue_full', field: 'queue' });
    expect((await jobs()).map((r) => r.queue)).toEqual(['mail', 'zfull']);
  });
});

describe('CLI', () => {
  it('event subscribe | list | publish | unsubscribe', async () => {
    expect(await cli('event', 'subscribe', 'user.created', 'mail', '--task', 'email.welcome')).toMatchObject({ code: 0, stdout: 'subscribed\n' });
    expect(await cli('event', 'subscribe', 'user.created', 'crm')).toMatchObject({ code: 0, stdout: 'subscribed\n' });
    expect(await cli('event', 'subscribe', 'user.created', 'crm', '--task', 'crm.sync')).toMatchObject({ code: 0, stdout: 'updated\n' });
    // Again with nothing to change: no --task keeps the task, the same --task sets it to what it was (both said "updated").
    expect(await cli('event', 'subscribe', 'user.created', 'crm')).toMatchObject({ code: 0, stdout: 'unchanged\n' });
    expect(await cli('event', 'subscribe', 'user.created', 'crm', '--task', 'crm.sync')).toMatchObject({ code: 0, stdout: 'unchanged\n' });
    const list = await cli('event', 'list', '--json');
    expect(list.code).toBe(0);
    expect((JSON.parse(list.stdout) as { queue: string; task: string }[]).map((s) => [s.queue, s.task]))
      .toEqual([['crm', 'crm.sync'], ['mail', 'email.welcome']]);
    expect((await cli('event', 'list')).stdout).toMatch(/^event\s+queue\s+task\n[- ]+\nuser\.created\s+crm\s+crm\.sync\n/);
    const published = await cli('event', 'publish', 'user.created', '{"user":1}', '--priority', '4', '--attributes', '{"a":1}');
    expect(published).toMatchObject({ code: 0 });
    const ids = published.stdout.trim().split('\n');
    expect((await jobs()).map((r) => [r.job_id, r.task, r.body, r.priority, r.attributes])).toEqual([
      [ids[0], 'crm.sync', { user: 1 }, 4, { a: 1 }], [ids[1], 'email.welcome', { user: 1 }, 4, { a: 1 }]]);
    expect(await cli('event', 'publish', 'nobody.listens')).toMatchObject({ code: 0, stdout: '' });
    expect(await cli('event', 'unsubscribe', 'user.created', 'crm')).toMatchObject({ code: 0, stdout: 'unsubscribed\n' });
    expect(await cli('event', 'unsubscribe', 'user.created', 'crm'))
      .toMatchObject({ code: 2, stderr: expect.stringMatching(/queue: 'crm' is not subscribed to 'user\.created'/) });
  });

  it('bad input exits 2 naming the flag or argument, before writing anything', async () => {
    const cases: [string[], RegExp][] = [
      [['event', 'publish', 'user.created', '--priority', 'high'], /--priority/],
      [['event', 'publish', 'user.created', '--delay', '5', '--at', '2030-01-01T00:00:00Z'], /--delay or --at/],
      [['event', 'publish', 'user.created', '--attributes', '[1]'], /--attributes/],
      [['event', 'publish', 'user.created', '{bad json'], /json/],
      [['event', 'publish', 'bad event'], /event: /],
      [['event', 'subscribe', 'user.created', 'mail', '--task', 'bad task'], /--task/],
      [['event', 'subscribe', 'user.created', 'bad queue'], /queue: must be dot-separated/],
      [['event', 'subscribe', 'user.created', 'nope'], /queue: no queue named 'nope'/],
      [['event', 'subscribe', 'user.created', 'mail', '--task', 'sql:public.nope'], /--task: sql:public\.nope is not an allowed SQL task/],
      [['event', 'subscribe', 'sql:public.nope', 'mail'], /^pgdrain: event: sql:public\.nope is not an allowed SQL task/],
      [['event', 'publish', 'user.created', '--dedupe-key', 'k'], /^pgdrain: --dedupe-key: an event takes none: a dedupe key is global, not per queue/],
    ];
    for (const [args, stderr] of cases) {
      const r = await cli(...args);
      expect({ args, code: r.code, stderr: r.stderr }).toMatchObject({ args, code: 2, stderr: expect.stringMatching(stderr) });
    }
    expect(await sql(`select count(*)::int as n from jobs.subscription`)).toEqual([{ n: 0 }]);
  });

  it('a full queue exits 1 and writes nothing', async () => {
    await sql(`select jobs.create_queue('mail', max_size => 1); select jobs.subscribe('e', 'crm'); select jobs.subscribe('e', 'mail')`);
    expect(await cli('event', 'publish', 'e')).toMatchObject({ code: 0 });
    expect(await cli('event', 'publish', 'e')).toMatchObject({ code: 1, stderr: expect.stringMatching(/queue 'mail' is full/) });
    expect((await jobs()).map((r) => r.queue)).toEqual(['crm', 'mail']);
  });
});

describe('HTTP', () => {
  const TOKEN = 'fanout-token-0123456789';
  const app = createApp({ queue, token: TOKEN });
  const post = async (path: string, body?: unknown, token = TOKEN) => {
    const res = await app.request(path, { method: 'POST', body: body === undefined ? undefined : JSON.stringify(body),
                                          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } });
    return { status: res.status, body: (await res.json()) as any };
  };

  it('POST /events/:event publishes one job per subscribed queue and answers their ids', async () => {
    await queue.queues.subscribe('user.created', 'mail', { task: 'email.welcome' });
    await queue.queues.subscribe('user.created', 'crm', { task: 'crm.sync' });
    const answer = await post('/events/user.created', { body: { user: 9 }, priority: 2, delaySeconds: 60, attributes: { a: 1 } });
    expect(answer.status).toBe(201);
    expect(answer.body.ids).toHaveLength(2);
    expect((await jobs()).map((r) => [r.job_id, r.task, r.body, r.priority, r.attributes]))
      .toEqual([[answer.body.ids[0], 'crm.sync', { user: 9 }, 2, { a: 1 }], [answer.body.ids[1], 'email.welcome', { user: 9 }, 2, { a: 1 }]]);
    expect(await post('/events/nobody.listens')).toEqual({ status: 201, body: { ids: [] } });
  });

  it('answers 400 naming the field, 429 for a full queue, 401 without the token; nothing is written', async () => {
    await queue.queues.subscribe('user.created', 'mail');
    const cases: [string, unknown, string][] = [
      ['/events/bad%20event', {}, 'event'],
      ['/events/user.created', { priority: 'high' }, 'priority'],
      ['/events/user.created', { runAt: '2030-01-01T00:00:00Z', delaySeconds: 1 }, 'delaySeconds'],
      ['/events/user.created', { runAt: 'tomorrow' }, 'runAt'],
      ['/events/user.created', { attributes: 'x' }, 'attributes'],
      ['/events/user.created', { task: 'other' }, 'task'],
      ['/events/user.created', [1], 'body'],
    ];
    for (const [path, body, field] of cases) {
      const answer = await post(path, body);
      expect({ path, body, answer }).toMatchObject({ path, body, answer: { status: 400, body: { error: { code: 'invalid_argument', field } } } });
    }
    expect((await post('/events/user.created', {}, 'wrong-token-0123456789')).status).toBe(401);
    expect(await jobs()).toEqual([]);
    await queue.queues.create('mail', { maxSize: 1 });
    await queue.queues.subscribe('user.created', 'crm'); // before mail in name order: written, then undone
    expect((await post('/events/user.created')).status).toBe(201);
    expect(await post('/events/user.created')).toMatchObject({ status: 429, body: { error: { code: 'queue_full', field: 'queue' } } });
    expect((await jobs()).map((r) => r.queue)).toEqual(['crm', 'mail']);
  });
});
