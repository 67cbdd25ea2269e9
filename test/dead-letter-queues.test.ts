// Dead-letter queues: jobs.create_queue(name, dead_letter => 'q'). A job of
// the queue that fails for good (retries spent, FailJob, expiry, jobs.fail)
// is published into q in the same transaction; a cancel is not a failure.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, FailJob, type JobContext, type TaskMap } from '../src/index.js';
import { testDb } from './support/db.js';
import { runCli, until } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const one = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await sql<R>(text, params))[0]!;
const queueWith = (tasks: TaskMap = {}) => createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });
const deadline = () => Date.now() + 120_000;
const sqlError = (text: string) => sql(text).then(() => null, (e: { code: string; column: string; message: string }) => e);
const cli = (...args: string[]) => runCli(db.url, ...args);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
  await sql(`update jobs.queue set dead_letter = null`);
  await sql(`delete from jobs.queue where name <> 'default'`);
  await sql(`select jobs.create_queue('mail_dead')`);
  await sql(`select jobs.create_queue('mail', dead_letter => 'mail_dead')`);
});

/** Publishes a job to mail and claims it; returns its id. */
async function running(options = 'max_retries => 0'): Promise<string> {
  const id = (await one<{ id: string }>(`select jobs.publish('mail.send', '{"to":"ada"}', queue => 'mail', priority => 7,
                                           attributes => '{"tenant":42}', ${options})::text as id`)).id;
  expect(await sql(`select job_id from jobs.consume(10, queue => 'mail')`)).toHaveLength(1);
  return id;
}

/** The jobs waiting in mail_dead. */
const deadLetters = () => sql(`select task, body, priority, attributes, last_error, attempt, timeout::text, max_retries,
                                      dedupe_key, serial_key, state
                               from jobs.job_queue q cross join jobs.state_of(q.lease_until, q.scheduled_at, q.waiting_deps,
                                                                              q.serial_wait) state
                               where queue = 'mail_dead' order by job_id`);

/** What a dead letter of job `id` (failed with `error` after `attempts`) looks like in mail_dead. */
const letterOf = (id: string, error: string, attempts = 1) => ({
  task: 'mail.send', body: { to: 'ada' }, priority: 7, last_error: error, attempt: 0, timeout: '60', max_retries: 0,
  dedupe_key: null, serial_key: null, state: 'pending',
  attributes: { tenant: 42, dead_letter: { job_id: Number(id), queue: 'mail', error, attempts } },
});

describe('a job that fails for good is published into the dead-letter queue', () => {
  it('a nack with its retries spent; the failed job stays in jobs.job as a failure', async () => {
    const id = await running('max_retries => 1');
    await sql(`select jobs.nack($1::bigint, 'smtp said no')`, [id]);
    expect(await deadLetters()).toEqual([]); // a retry is no dead letter
    await sql(`update jobs.job_queue set scheduled_at = now() where job_id = $1`, [id]);
    expect(await sql(`select job_id from jobs.consume(10, queue => 'mail')`)).toHaveLength(1);
    await sql(`select jobs.nack($1::bigint, 'smtp said no again')`, [id]);
    expect(await deadLetters()).toEqual([{ ...letterOf(id, 'smtp said no again', 2), max_retries: 1 }]);
    expect(await sql(`select status, error, queue from jobs.job where job_id = $1`, [id]))
      .toEqual([{ status: 'failure', error: 'smtp said no again', queue: 'mail' }]);
  });

  it('FailJob from a drain (a plain and a transactional task), and the dead letter runs in its queue', async () => {
    await sql(`select jobs.publish('mail.send', '{"to":"ada"}', queue => 'mail', priority => 7, attributes => '{"tenant":42}')`);
    const q = queueWith({ mail: { send: () => { throw new FailJob('bounced'); } } });
    q.defineTask('tx.fail', async () => { throw new FailJob('tx bounced'); }, { transactional: true });
    await sql(`select jobs.publish('tx.fail', queue => 'mail')`);
    const report = await q.drain(10, deadline(), { queue: 'mail' });
    expect(report.failed).toBe(2);
    const letters = await sql<{ task: string; last_error: string; max_retries: number; attributes: { dead_letter: { error: string } } }>(
      `select task, last_error, max_retries, attributes from jobs.job_queue where queue = 'mail_dead' order by task`);
    expect(letters.map((l) => [l.task, l.last_error.split('\n')[0], l.max_retries])).toEqual([
      ['mail.send', 'FailJob: bounced', 3], ['tx.fail', 'FailJob: tx bounced', 3]]);
    expect(letters[0]!.attributes.dead_letter.error).toBe(letters[0]!.last_error);
    // Its handler sees where it came from.
    const seen: unknown[] = [];
    const dead = queueWith({ mail: { send: (_: unknown, ctx: JobContext) => { seen.push(ctx.job.attributes); } } });
    expect((await dead.drain(10, deadline(), { queue: 'mail_dead', filter: { tenant: 42 } })).succeeded).toBe(1);
    expect(seen).toEqual([expect.objectContaining({ tenant: 42, dead_letter: expect.objectContaining({ queue: 'mail' }) })]);
  });

  it('an expired lease with no retries left', async () => {
    const id = await running();
    expect(await one(`select jobs.expire(now => now() + interval '1 hour') as n`)).toEqual({ n: 1 });
    const error = `timed out: no ack within 60 seconds (attempt 1 of 1)`;
    // Published at expire's now, an hour ahead here.
    expect(await deadLetters()).toEqual([{ ...letterOf(id, error), state: 'scheduled' }]);
  });

  it('jobs.fail (queue.fail), with the dead-letter queue\'s defaults for timeout and max_retries', async () => {
    await sql(`select jobs.create_queue('mail_dead', default_timeout => 5, default_max_retries => 9)`);
    const id = (await one<{ id: string }>(`select jobs.publish('mail.send', '{"to":"ada"}', queue => 'mail', priority => 7,
                                             attributes => '{"tenant":42,"dead_letter":"mine"}', max_retries => 0)::text as id`)).id;
    expect(await queueWith().fail([id], 'tenant deleted')).toBe(1);
    expect(await deadLetters()).toEqual([{ ...letterOf(id, 'failed: tenant deleted', 0), timeout: '5', max_retries: 9 }]);
  });

  it('a dead letter keeps the failed job\'s group and tier; the dead-letter queue\'s group_concurrency caps it', async () => {
    await sql(`select jobs.create_queue('mail_dead', group_concurrency => 1)`);
    const ids = (await sql<{ id: string }>(`select jobs.publish('mail.send', queue => 'mail', max_retries => 0, group_id => g,
                                                                group_tier => t)::text as id
                                          from (values ('acme', 'pro'), ('acme', null), (null, null)) v(g, t)`)).map((r) => r.id);
    expect(await queueWith().fail(ids, 'gone')).toBe(3);
    expect(await sql(`select group_id, group_tier from jobs.job_queue where queue = 'mail_dead' order by job_id`))
      .toEqual([{ group_id: 'acme', group_tier: 'pro' }, { group_id: 'acme', group_tier: null }, { group_id: null, group_tier: null }]);
    // One of acme's at a time there, and the ungrouped one.
    expect(await sql(`select group_id from jobs.claim(10, queue => 'mail_dead') join jobs.job_queue using (job_id) order by job_id`))
      .toEqual([{ group_id: 'acme' }, { group_id: null }]);
  });

  it('a chain: a dead letter that fails goes on to its own queue\'s dead-letter queue', async () => {
    await sql(`select jobs.create_queue('ops')`);
    await sql(`select jobs.create_queue('mail_dead', dead_letter => 'ops')`);
    const id = await running();
    await sql(`select jobs.nack($1::bigint, 'first')`, [id]);
    const [letter] = await sql<{ job_id: string }>(`select job_id::text from jobs.job_queue where queue = 'mail_dead'`);
    await sql(`select jobs.fail(array[$1::bigint], 'second')`, [letter!.job_id]);
    expect(await sql(`select task, attributes->'dead_letter'->>'queue' as from_queue, attributes->>'tenant' as tenant
                      from jobs.job_queue where queue = 'ops'`))
      .toEqual([{ task: 'mail.send', from_queue: 'mail_dead', tenant: '42' }]);
  });
});

describe('what is no dead letter', () => {
  it('cancels: a pending job, a running one that then fails, dependants of a failure', async () => {
    const pending = (await one<{ id: string }>(`select jobs.publish('a', queue => 'mail', max_retries => 0)::text as id`)).id;
    expect(await one(`select jobs.cancel($1) as s`, [pending])).toEqual({ s: 'cancelled' });
    const id = await running();
    expect(await one(`select jobs.cancel($1) as s`, [id])).toEqual({ s: 'cancelling' });
    await sql(`select jobs.nack($1::bigint, 'stopped')`, [id]);
    expect(await deadLetters()).toEqual([]);
    // The failed dependency is a dead letter; its dependant, cancelled, is not.
    const dep = await running();
    await sql(`select jobs.publish('b', queue => 'mail', depends_on => array[$1::bigint])`, [dep]);
    await sql(`select jobs.nack($1::bigint, 'broken')`, [dep]);
    expect((await deadLetters()).map((l) => l.last_error)).toEqual(['broken']);
    expect(await one(`select count(*)::int as n from jobs.job where status = 'cancelled'`)).toEqual({ n: 3 });
  });

  it('a batch of acks in a queue with a dead-letter queue, and failures in a queue without one', async () => {
    await sql(`select jobs.publish('ok', queue => 'mail') from generate_series(1, 5)`);
    expect((await queueWith({ ok: () => 'done' }).drain(10, deadline(), { queue: 'mail' })).succeeded).toBe(5);
    await sql(`select jobs.publish('bad', max_retries => 0)`);
    expect((await queueWith({ bad: () => { throw new Error('no'); } }).drain(10, deadline())).failed).toBe(1);
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 0 });
  });
});

describe('the dead-letter queue never refuses a dead letter', () => {
  it('paused and full: the failure settles, the dead letter goes above max_size, publishes there get PD010', async () => {
    await sql(`select jobs.create_queue('mail_dead', max_size => 1)`);
    await sql(`select jobs.pause_queue('mail_dead')`);
    await sql(`select jobs.publish('x', queue => 'mail_dead')`);
    const a = await running();
    const b = (await one<{ id: string }>(`select jobs.publish('mail.send', queue => 'mail', max_retries => 0)::text as id`)).id;
    expect(await one(`select jobs.nack($1::bigint, 'no') as ok`, [a])).toEqual({ ok: true });
    expect(await queueWith().fail([b])).toBe(1);
    expect(await one(`select count(*)::int as n from jobs.job_queue where queue = 'mail_dead'`)).toEqual({ n: 3 });
    expect(await sqlError(`select jobs.publish('x', queue => 'mail_dead')`)).toMatchObject({ code: 'PD010' });
  });

  it('a queue named as a dead-letter queue cannot be deleted while it is one', async () => {
    expect(await sqlError(`delete from jobs.queue where name = 'mail_dead'`)).toMatchObject({ code: '23503' });
  });
});

describe('naming a dead-letter queue', () => {
  it('SQL: an unknown queue, the queue itself, a loop (PD009, column dead_letter); null removes it', async () => {
    expect(await sqlError(`select jobs.create_queue('mail', dead_letter => 'nope')`))
      .toMatchObject({ code: 'PD009', column: 'dead_letter', message: expect.stringContaining(`no queue named 'nope'`) });
    expect(await sqlError(`select jobs.create_queue('fresh', dead_letter => 'fresh')`))
      .toMatchObject({ code: 'PD009', column: 'dead_letter', message: expect.stringContaining('must name another queue') });
    expect(await sqlError(`select jobs.create_queue('mail', dead_letter => 'bad name')`))
      .toMatchObject({ code: 'PD009', column: 'dead_letter' });
    await sql(`select jobs.create_queue('ops')`);
    await sql(`select jobs.create_queue('mail_dead', dead_letter => 'ops')`);
    expect(await sqlError(`select jobs.create_queue('ops', dead_letter => 'mail')`)).toMatchObject({
      code: 'PD009', column: 'dead_letter', message: expect.stringContaining(`ops -> mail -> mail_dead -> ops would be a loop`) });
    expect(await sqlError(`select jobs.create_queue('mail_dead', dead_letter => 'mail')`)).toMatchObject({ code: 'PD009' });
    expect(await sql(`select name, dead_letter from jobs.queue order by name`)).toEqual([
      { name: 'default', dead_letter: null }, { name: 'mail', dead_letter: 'mail_dead' },
      { name: 'mail_dead', dead_letter: 'ops' }, { name: 'ops', dead_letter: null }]);
    // Removing one link frees the way back.
    await sql(`select jobs.create_queue('mail', dead_letter => null)`);
    await sql(`select jobs.create_queue('ops', dead_letter => 'mail')`);
    expect(await one(`select dead_letter from jobs.queue where name = 'mail'`)).toEqual({ dead_letter: null });
  });

  // Forced interleaving: b's create_queue waits for a's lock while a closes
  // half the loop; b's snapshot is older than a's commit. Before, b read a's
  // row as it was, found no loop and made one.
  it.each(['repeatable read', 'serializable'])('%s: a loop closed by two calls at once is refused (40001, no loop made)', async (level) => {
    await sql(`select jobs.create_queue('qa'), jobs.create_queue('qb')`);
    const [a, b] = [new pg.Client({ connectionString: db.url }), new pg.Client({ connectionString: db.url })];
    await Promise.all([a.connect(), b.connect()]);
    try {
      await a.query('begin');
      await a.query(`select jobs.create_queue('qa', dead_letter => 'qb')`);
      await b.query(`begin isolation level ${level}`);
      await b.query('select 1'); // its snapshot, taken before a commits
      const pid = (await b.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
      const second = b.query(`select jobs.create_queue('qb', dead_letter => 'qa')`).then(() => 'ok', (e: { code: string }) => e.code);
      await until(async () => (await sql(`select 1 from pg_stat_activity where pid = $1 and wait_event_type = 'Lock'`, [pid])).length > 0,
        'the second create_queue to wait for the first');
      await a.query('commit');
      expect(await second).toBe('40001'); // 'ok' before: qa -> qb -> qa
      await b.query('rollback');
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
    expect(await sql(`select name, dead_letter from jobs.queue where name in ('qa', 'qb') order by name`))
      .toEqual([{ name: 'qa', dead_letter: 'qb' }, { name: 'qb', dead_letter: null }]);
  });

  it('TypeScript: queues.create({ deadLetter }) and queues.list(); bad ones are ValidationErrors naming options.deadLetter', async () => {
    const q = queueWith();
    await q.queues.create('reports');
    await q.queues.create('reports', { deadLetter: 'mail_dead', maxSize: 10 });
    expect((await q.queues.list()).find((x) => x.name === 'reports')).toMatchObject({
      name: 'reports', deadLetter: 'mail_dead', maxSize: 10, paused: false, timeoutSeconds: null, priority: null, maxRetries: null });
    await expect(q.queues.create('reports', { deadLetter: 'nope' }))
      .rejects.toMatchObject({ name: 'ValidationError', field: 'options.deadLetter', message: expect.stringContaining(`no queue named 'nope'`) });
    await expect(q.queues.create('mail_dead', { deadLetter: 'mail' }))
      .rejects.toMatchObject({ name: 'ValidationError', field: 'options.deadLetter', message: expect.stringContaining('loop') });
    await expect(q.queues.create('reports', { deadLetter: 'two words' }))
      .rejects.toMatchObject({ name: 'ValidationError', field: 'options.deadLetter' });
    await q.queues.create('reports', { deadLetter: null });
    expect((await q.queues.list()).find((x) => x.name === 'reports')).toMatchObject({ deadLetter: null, maxSize: 10 });
  });

  it('CLI: queue create --dead-letter, queue list shows it; a bad one exits 2 naming --dead-letter', async () => {
    expect(await cli('queue', 'create', 'reports', '--dead-letter', 'mail_dead')).toMatchObject({ code: 0 });
    const list = await cli('queue', 'list');
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/dead_letter/);
    expect(list.stdout).toMatch(/^reports\s.*\smail_dead$/m);
    const json = await cli('queue', 'list', '--json');
    expect(JSON.parse(json.stdout)).toContainEqual(expect.objectContaining({ name: 'mail', deadLetter: 'mail_dead' }));
    const unknown = await cli('queue', 'create', 'reports', '--dead-letter', 'nope');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/--dead-letter: no queue named 'nope'/);
    const loop = await cli('queue', 'create', 'mail_dead', '--dead-letter', 'mail');
    expect(loop.code).toBe(2);
    expect(loop.stderr).toMatch(/--dead-letter: must not lead back/);
    const bad = await cli('queue', 'create', 'reports', '--dead-letter', 'two words');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--dead-letter/);
    expect(await cli('queue', 'create', 'reports', '--no-dead-letter')).toMatchObject({ code: 0 });
    expect(await one(`select dead_letter from jobs.queue where name = 'reports'`)).toEqual({ dead_letter: null });
  });
});
