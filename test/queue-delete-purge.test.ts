// Purging and deleting a queue (sql/0034_queue_admin.sql): jobs.purge_queue,
// jobs.delete_queue, their TypeScript and CLI edges, roles, and a delete
// racing a publish (forced interleavings with sessions of their own; no timing).
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createQueue, deleteQueue, migrate, purgeQueue, ValidationError } from '../src/index.js';
import { testDb } from './support/db.js';
import { blocked, doneOrBlocked, lockSessions, outcome, type LockSession } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const newSession = lockSessions(db.url);
// Each test's sessions end their transactions after it, passed or failed: one
// left open would hold its locks, and every later test's truncate would wait.
const opened: LockSession[] = [];
const session = async () => {
  const s = await newSession();
  opened.push(s);
  return s;
};
afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.query('rollback').catch(() => {})));
});
const one = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await sql<R>(text, params))[0]!;
const id = async (text: string) => (await one<{ id: string }>(`select (${text})::text as id`)).id;
const queue = () => createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency, jobs.subscription');
  await sql(`update jobs.queue set dead_letter = null; delete from jobs.queue where name <> 'default'`);
});

describe('jobs.purge_queue', () => {
  it('ends pending, scheduled and blocked jobs as cancelled with the reason; running jobs and other queues stay', async () => {
    await sql(`select jobs.create_queue('pq'); select jobs.create_queue('other')`);
    const running = await id(`jobs.publish('t.run', queue => 'pq', priority => 9)`);
    expect(await one(`select job_id::text as id from jobs.consume(1, queue => 'pq')`)).toEqual({ id: running });
    const pending = await id(`jobs.publish('t.p', queue => 'pq')`);
    const scheduled = await id(`jobs.publish('t.s', queue => 'pq', scheduled_at => now() + interval '1 day')`);
    const blocked = await id(`jobs.publish('t.b', queue => 'pq', depends_on => array[${running}]::bigint[])`);
    const others = await id(`jobs.publish('t.o', queue => 'other')`);
    const inDefault = await id(`jobs.publish('t.d')`);
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    try {
      const heard: string[] = [];
      listener.on('notification', (n) => heard.push(`${n.channel} ${n.payload}`));
      await listener.query('listen pgdrain_completed');
      expect(await one(`select jobs.purge_queue('pq', 'tenant gone') as n`)).toEqual({ n: 3 });
      await listener.query('select 1'); // notifications arrive before this reply
      expect(heard.map((h) => h.split(/[ ,]/).sort().join(' ')))
        .toEqual([['pgdrain_completed', pending, scheduled, blocked].sort().join(' ')]);
    } finally {
      await listener.end();
    }
    expect(await sql(`select job_id::text as id, status, error, queue from jobs.job order by job_id`)).toEqual(
      [pending, scheduled, blocked].map((j) => ({ id: j, status: 'cancelled', error: 'cancelled: tenant gone', queue: 'pq' })));
    // The running job runs on, not asked to stop; the other queues keep theirs.
    expect(await sql(`select job_id::text as id, lease_until is not null as running, cancel_requested_at from jobs.job_queue
                      order by job_id`)).toEqual([
      { id: running, running: true, cancel_requested_at: null },
      { id: others, running: false, cancel_requested_at: null },
      { id: inDefault, running: false, cancel_requested_at: null }]);
    // Nothing waits now; without a reason the error says purged.
    expect(await one(`select jobs.purge_queue('pq') as n`)).toEqual({ n: 0 });
    const later = await id(`jobs.publish('t.p', queue => 'pq')`);
    expect(await one(`select jobs.purge_queue('pq') as n`)).toEqual({ n: 1 });
    expect(await one(`select error from jobs.job where job_id = $1`, [later])).toEqual({ error: 'cancelled: purged' });
  });

  it('cancels dependants in other queues in turn, and hands a serial key to its next job in another queue', async () => {
    await sql(`select jobs.create_queue('pq'); select jobs.create_queue('other')`);
    const head = await id(`jobs.publish('t.h', queue => 'pq', serial_key => 'acct:1')`);
    const next = await id(`jobs.publish('t.n', queue => 'other', serial_key => 'acct:1')`);
    const after = await id(`jobs.publish('t.a', queue => 'pq', serial_key => 'acct:1')`);
    const dependency = await id(`jobs.publish('t.dep', queue => 'pq')`);
    const dependant = await id(`jobs.publish('t.x', queue => 'other', depends_on => array[${dependency}]::bigint[])`);
    // A key whose head runs: purging its waiting job there leaves the head alone.
    const runningHead = await id(`jobs.publish('t.rh', queue => 'pq', serial_key => 'acct:2', priority => 9)`);
    expect(await one(`select job_id::text as id from jobs.consume(1, queue => 'pq')`)).toEqual({ id: runningHead });
    const waitingTwo = await id(`jobs.publish('t.w', queue => 'pq', serial_key => 'acct:2')`);
    const otherTwo = await id(`jobs.publish('t.o2', queue => 'other', serial_key => 'acct:2')`);

    expect(await one(`select jobs.purge_queue('pq') as n`)).toEqual({ n: 4 });
    expect(await sql(`select job_id::text as id, status, error from jobs.job order by job_id`)).toEqual([
      { id: head, status: 'cancelled', error: 'cancelled: purged' },
      { id: after, status: 'cancelled', error: 'cancelled: purged' },
      { id: dependency, status: 'cancelled', error: 'cancelled: purged' },
      { id: dependant, status: 'cancelled', error: `cancelled: dependency ${dependency} did not succeed` },
      { id: waitingTwo, status: 'cancelled', error: 'cancelled: purged' }]);
    expect(await sql(`select job_id::text as id, queue, serial_wait, lease_until is not null as running from jobs.job_queue
                      order by job_id`)).toEqual([
      { id: next, queue: 'other', serial_wait: false, running: false },
      { id: runningHead, queue: 'pq', serial_wait: false, running: true },
      { id: otherTwo, queue: 'other', serial_wait: true, running: false }]);
    // The key's turn passed for real: the other queue hands its job out.
    expect(await sql(`select job_id::text as id from jobs.consume(5, queue => 'other')`)).toEqual([{ id: next }]);
  });

  it('a job claimed while the purge waits for its row is left to run', async () => {
    await sql(`select jobs.create_queue('pq')`);
    const claimed = await id(`jobs.publish('t.c', queue => 'pq')`);
    const waiting = await id(`jobs.publish('t.w', queue => 'pq')`);
    const [drain, admin] = [await session(), await session()];
    // As a claim holds the row it takes (and marks running) until it commits.
    await drain.query('begin');
    await drain.query(`update jobs.job_queue set lease_until = now() + interval '1 minute', attempt = 1 where job_id = $1`, [claimed]);
    const purged = outcome(admin.query(`select jobs.purge_queue('pq') as n`));
    await blocked(sql, admin);
    await drain.query('commit');
    expect(await purged).toEqual([{ n: 1 }]);
    expect(await sql(`select job_id::text as id from jobs.job`)).toEqual([{ id: waiting }]);
    expect(await sql(`select job_id::text as id, cancel_requested_at from jobs.job_queue`))
      .toEqual([{ id: claimed, cancel_requested_at: null }]);
  });

  it('purges a plain queue of 100,000 waiting jobs in one call, each a history row', async () => {
    await sql(`select jobs.create_queue('big')`);
    await sql(`select jobs.publish_arrays(array_fill('t.big'::text, array[100000]), queue => 'big')`);
    expect(await one(`select jobs.purge_queue('big', 'bulk') as n`)).toEqual({ n: 100000 });
    expect(await one(`select count(*)::int as n, count(*) filter (where status = 'cancelled' and error = 'cancelled: bulk')::int as c
                      from jobs.job where queue = 'big'`)).toEqual({ n: 100000, c: 100000 });
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 0 });
  });

  it('an unknown queue purges nothing; a bad name is PD009 naming name', async () => {
    expect(await one(`select jobs.purge_queue('ghost') as n`)).toEqual({ n: 0 });
    await expect(sql(`select jobs.purge_queue('two words')`)).rejects.toMatchObject({ code: 'PD009', column: 'name' });
    await expect(sql(`select jobs.purge_queue(null)`)).rejects.toMatchObject({ code: 'PD009', column: 'name' });
  });
});

describe('jobs.delete_queue', () => {
  it('is refused while jobs wait or run; once none is active it deletes the queue and its subscriptions, and keeps its history', async () => {
    await sql(`select jobs.create_queue('dq'); select jobs.subscribe('ev.one', 'dq'); select jobs.subscribe('ev.one', 'default')`);
    const run = await id(`jobs.publish('t.r', queue => 'dq', priority => 9)`);
    await sql(`select jobs.consume(1, queue => 'dq')`);
    await id(`jobs.publish('t.w', queue => 'dq')`);
    await expect(sql(`select jobs.delete_queue('dq')`)).rejects.toMatchObject({ code: 'PD009', column: 'name',
      message: "name: queue 'dq' still has 1 waiting and 1 running jobs: purge it first (jobs.purge_queue('dq')) and wait for its running jobs to end" });
    expect(await one(`select jobs.purge_queue('dq') as n`)).toEqual({ n: 1 });
    // Only a running job left: a purge would not help, so the hint is its end or a cancel (it said "purge it first").
    await expect(sql(`select jobs.delete_queue('dq')`)).rejects.toMatchObject({ code: 'PD009', column: 'name',
      message: `name: queue 'dq' still has 0 waiting and 1 running jobs (job ${run} first): let its running jobs end, `
        + 'or cancel them (jobs.cancel_bulk), first' });
    await sql(`select jobs.ack($1::bigint)`, [run]);
    expect(await one(`select jobs.delete_queue('dq') as d`)).toEqual({ d: true });
    expect(await sql(`select name from jobs.queue order by name`)).toEqual([{ name: 'default' }]);
    expect(await sql(`select event, queue from jobs.subscriptions`)).toEqual([{ event: 'ev.one', queue: 'default' }]);
    expect(await sql(`select status, queue from jobs.job order by job_id`))
      .toEqual([{ status: 'success', queue: 'dq' }, { status: 'cancelled', queue: 'dq' }]);
    // Gone: nothing to do, and publishing there is PD009 again.
    expect(await one(`select jobs.delete_queue('dq') as d`)).toEqual({ d: false });
    await expect(sql(`select jobs.publish('t', queue => 'dq')`)).rejects.toMatchObject({ code: 'PD009', column: 'queue' });
  });

  it('refuses the default queue and a dead-letter target (naming the queue that names it), and a bad name', async () => {
    await expect(sql(`select jobs.delete_queue('default')`)).rejects.toMatchObject({ code: 'PD009', column: 'name',
      message: expect.stringMatching(/^name: the default queue cannot be deleted/) });
    await sql(`select jobs.create_queue('dead'); select jobs.create_queue('mail', dead_letter => 'dead')`);
    await expect(sql(`select jobs.delete_queue('dead')`)).rejects.toMatchObject({ code: 'PD009', column: 'name',
      message: "name: queue 'dead' is the dead-letter queue of 'mail': give that one another (jobs.create_queue('mail', dead_letter => null)) first" });
    // The one naming it goes (its own route goes with it), then the target.
    expect(await one(`select jobs.delete_queue('mail') as d`)).toEqual({ d: true });
    expect(await one(`select jobs.delete_queue('dead') as d`)).toEqual({ d: true });
    await expect(sql(`select jobs.delete_queue('')`)).rejects.toMatchObject({ code: 'PD009', column: 'name' });
  });

  it('refuses to run in a REPEATABLE READ transaction, whose snapshot would miss jobs committed while it waited', async () => {
    await sql(`select jobs.create_queue('rr')`);
    const c = await session();
    await c.query('begin isolation level repeatable read');
    try {
      await expect(c.query(`select jobs.delete_queue('rr')`)).rejects.toMatchObject({ code: '0A000',
        message: 'jobs.delete_queue must run in a READ COMMITTED transaction, not REPEATABLE READ' });
    } finally {
      await c.query('rollback');
    }
  });
});

describe('a delete racing a publish into the queue', () => {
  it.each([['unbounded', null], ['bounded', 100]])('%s: a publish not yet committed makes the delete wait, then refuse', async (_, max) => {
    await sql(`select jobs.create_queue('rq', max_size => $1::integer)`, [max]);
    const [publisher, deleter] = [await session(), await session()];
    await publisher.query('begin');
    const job = (await publisher.query<{ id: string }>(`select jobs.publish('t.r', queue => 'rq')::text as id`)).rows[0]!.id;
    const deleted = outcome(deleter.query(`select jobs.delete_queue('rq') as d`));
    await doneOrBlocked(sql, deleter, deleted);
    await publisher.query('commit');
    // Before: [{ d: true }], and the job left in a queue that no longer exists.
    expect(await deleted).toEqual(expect.stringMatching(/^error PD009 name: name: queue 'rq' still has 1 waiting and 0 running jobs/));
    expect(await sql(`select job_id::text as id, queue from jobs.job_queue`)).toEqual([{ id: job, queue: 'rq' }]);
  });

  it.each([['unbounded', null], ['bounded', 100]])('%s: a delete not yet committed makes the publish wait, then fail with PD009', async (_, max) => {
    await sql(`select jobs.create_queue('rq', max_size => $1::integer)`, [max]);
    const [deleter, publisher, bulk] = [await session(), await session(), await session()];
    await deleter.query('begin');
    expect((await deleter.query(`select jobs.delete_queue('rq') as d`)).rows).toEqual([{ d: true }]);
    const published = outcome(publisher.query(`select jobs.publish('t.r', queue => 'rq')::text as id`));
    await doneOrBlocked(sql, publisher, published);
    const bulked = outcome(bulk.query(`select jobs.publish_arrays(array['t.a', 't.b'], queue => 'rq') as ids`));
    await doneOrBlocked(sql, bulk, bulked);
    await deleter.query('commit');
    // Before: both answered ids, of jobs in a queue gone once the delete committed.
    const gone = "error PD009 queue: queue: no queue named 'rq'; create it with jobs.create_queue('rq')";
    expect(await published).toBe(gone);
    expect(await bulked).toBe(gone);
    expect(await sql(`select job_id from jobs.job_queue`)).toEqual([]);
  });

  it('a REPEATABLE READ publisher whose snapshot predates the delete fails with 40001, writing nothing', async () => {
    await sql(`select jobs.create_queue('rq')`);
    const publisher = await session();
    await publisher.query('begin isolation level repeatable read');
    try {
      await publisher.query('select 1'); // its snapshot: the queue is there
      expect(await one(`select jobs.delete_queue('rq') as d`)).toEqual({ d: true });
      // Before: it published into the deleted queue.
      await expect(publisher.query(`select jobs.publish('t.r', queue => 'rq')`)).rejects.toMatchObject({ code: '40001' });
    } finally {
      await publisher.query('rollback');
    }
    expect(await sql(`select job_id from jobs.job_queue`)).toEqual([]);
  });

  it('a failure routed to a dead-letter queue, not yet committed, makes the delete of that queue wait, then refuse', async () => {
    await sql(`select jobs.create_queue('dlq'); select jobs.create_queue('src', dead_letter => 'dlq')`);
    const failing = await id(`jobs.publish('t.f', queue => 'src', max_retries => 0)`);
    const [settler, admin] = [await session(), await session()];
    await settler.query('begin');
    await settler.query(`select jobs.consume(1, queue => 'src')`);
    await settler.query(`select jobs.nack($1::bigint, 'boom')`, [failing]);
    // The route is removed meanwhile (create_queue's own lock, not the settle's), then the delete comes.
    await sql(`select jobs.create_queue('src', dead_letter => null)`);
    const deleted = outcome(admin.query(`select jobs.delete_queue('dlq') as d`));
    await doneOrBlocked(sql, admin, deleted);
    await settler.query('commit');
    // Before: [{ d: true }], and the dead letter left in a queue that no longer exists.
    expect(await deleted).toEqual(expect.stringMatching(/^error PD009 name: name: queue 'dlq' still has 1 waiting/));
    expect(await sql(`select queue, task from jobs.job_queue`)).toEqual([{ queue: 'dlq', task: 't.f' }]);
  });
});

describe('roles', () => {
  const prefix = `dp${Date.now().toString(36)}`;

  it('an admin may purge and delete; a worker or publisher may not; PUBLIC may not before create_roles runs again', async () => {
    // A role granted the schema before an upgrade: the migration itself took PUBLIC's EXECUTE away (a
    // function it adds is otherwise anyone's until jobs.create_roles runs again, which revokes it).
    const stranger = `${prefix}_stranger`;
    await sql(`create role ${stranger} nologin; grant usage on schema jobs to ${stranger}`);
    try {
      expect(await one(`select has_function_privilege($1, 'jobs.purge_queue(text, text)', 'execute') as purge,
                               has_function_privilege($1, 'jobs.delete_queue(text)', 'execute') as del,
                               has_function_privilege($1, 'jobs.pause_queue(text)', 'execute') as pause`, [stranger]))
        .toEqual({ purge: false, del: false, pause: true });
    } finally {
      await sql(`revoke usage on schema jobs from ${stranger}; drop role ${stranger}`);
    }
    await migrate(db.driver, { roles: prefix }); // already migrated: only the roles
    await sql(`select jobs.create_queue('roleq')`);
    const c = await session();
    const as = async (role: string, text: string) => {
      await c.query('begin');
      try {
        await c.query(`set local role ${prefix}_${role}`);
        return (await c.query(text)).rows;
      } finally {
        await c.query('rollback');
      }
    };
    for (const role of ['worker', 'publisher']) {
      await expect(as(role, `select jobs.purge_queue('roleq')`)).rejects.toMatchObject({ code: '42501' });
      await expect(as(role, `select jobs.delete_queue('roleq')`)).rejects.toMatchObject({ code: '42501' });
    }
    expect(await as('admin', `select jobs.purge_queue('roleq') as n, jobs.delete_queue('roleq') as d`)).toEqual([{ n: 0, d: true }]);
  });
});

describe('TypeScript', () => {
  it('queue.queues.purge and .delete, and the standalone purgeQueue and deleteQueue', async () => {
    const q = queue();
    await q.queues.create('tsq');
    await q.publish('t.a', null, { queue: 'tsq' });
    await q.publish('t.b', null, { queue: 'tsq' });
    await expect(q.queues.delete('tsq')).rejects.toMatchObject({ name: 'ValidationError', field: 'name',
      message: "name: queue 'tsq' still has 2 waiting and 0 running jobs: purge it first (queues.purge('tsq'))" });
    expect(await q.queues.purge('tsq', { reason: 'drop' })).toBe(2);
    expect(await sql(`select distinct error from jobs.job`)).toEqual([{ error: 'cancelled: drop' }]);
    expect(await q.queues.delete('tsq')).toBe(true);
    expect(await q.queues.delete('tsq')).toBe(false);
    expect((await q.queues.list()).map((x) => x.name)).toEqual(['default']);
    await q.queues.create('tsq2');
    await q.publish('t.c', null, { queue: 'tsq2' });
    expect(await purgeQueue(db.driver, 'tsq2')).toBe(1);
    expect(await deleteQueue(db.driver, 'tsq2')).toBe(true);
    await expect(deleteQueue(db.driver, 'default')).rejects.toBeInstanceOf(ValidationError);
  });

  it.each([
    [() => queue().queues.purge('bad name'), 'name'],
    [() => queue().queues.purge(42 as unknown as string), 'name'],
    [() => queue().queues.delete(''), 'name'],
    [() => queue().queues.purge('q', { reason: 7 as unknown as string }), 'options.reason'],
    [() => queue().queues.purge('q', { reason: 'a\0b' }), 'options.reason'],
    [() => queue().queues.purge('q', { why: 'x' } as never), 'options'],
    [() => queue().queues.purge('q', 'x' as never), 'options'],
  ])('bad input is a ValidationError naming the field (%#)', async (call, field) => {
    await expect(call()).rejects.toMatchObject({ name: 'ValidationError', field });
  });
});

describe('CLI', () => {
  const CLI = resolve('dist/cli.mjs');
  const cli = (...args: string[]) => new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, DATABASE_URL: db.url }, timeout: 30_000 },
      (error, stdout, stderr) => done({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr }));
  });

  it('pgdrain queue purge prints the count, queue delete deleted; a refusal exits 2 naming name', async () => {
    await sql(`select jobs.create_queue('cq'); select jobs.publish('t.a', queue => 'cq'); select jobs.publish('t.b', queue => 'cq')`);
    const refused = await cli('queue', 'delete', 'cq');
    expect(refused).toMatchObject({ code: 2, stdout: '' });
    expect(refused.stderr).toBe("pgdrain: name: queue 'cq' still has 2 waiting and 0 running jobs: purge it first "
      + '(pgdrain queue purge cq)\n');
    expect(await cli('queue', 'purge', 'cq', '--reason', 'moved')).toMatchObject({ code: 0, stdout: '2\n' });
    expect(await sql(`select distinct error from jobs.job`)).toEqual([{ error: 'cancelled: moved' }]);
    expect(await cli('queue', 'delete', 'cq')).toMatchObject({ code: 0, stdout: 'deleted\n' });
    // Gone: a second delete, or a purge, is told so (cli-queue-unknown.test.ts).
    const gone = { code: 2, stdout: '', stderr: "pgdrain: queue: no queue named 'cq' (pgdrain queue list names them)\n" };
    expect(await cli('queue', 'delete', 'cq')).toMatchObject(gone);
    expect(await cli('queue', 'purge', 'cq')).toMatchObject(gone);
    const dflt = await cli('queue', 'delete', 'default');
    expect(dflt.code).toBe(2);
    expect(dflt.stderr).toMatch(/^pgdrain: name: the default queue cannot be deleted/);
  });

  it.each([
    [['queue', 'purge', 'bad name'], 'name'],
    [['queue', 'delete', 'bad name'], 'name'],
    [['queue', 'purge'], 'name'],
    [['queue', 'delete'], 'name'],
    [['queue', 'purge', 'q', '--reason'], '--reason'],
  ])('pgdrain %j exits 2 naming %s', async (args, name) => {
    const r = await cli(...args);
    expect(r).toMatchObject({ code: 2, stdout: '' });
    expect(r.stderr).toContain(name);
  });
});
