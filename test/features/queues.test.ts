// Issue 7, features 7, 8 and 9: attributes with a containment filter,
// backpressure (max_size) and named queues with pause/resume.
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, PgDrainError, type TaskMap } from '../../src/index.js';
import { testDb } from '../support/db.js';

const db = await testDb();
const sql = db.sql;
const one = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await sql<R>(text, params))[0]!;
const queueWith = (tasks: TaskMap = {}) => createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });
const deadline = () => Date.now() + 120_000;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
  await sql(`delete from jobs.queue where name <> 'default'`);
});

describe('named queues', () => {
  it('each drain consumes its own queue; the default queue is untouched by a mail drain', async () => {
    await sql(`select jobs.create_queue('mail')`);
    const ran: string[] = [];
    const q = queueWith({ t: (b: { q: string }) => void ran.push(b.q) });
    await q.publish('t', { q: 'mail' }, { queue: 'mail' });
    await q.publishBulk([{ task: 't', body: { q: 'mail' } }], 'mail');
    await q.publish('t', { q: 'default' });
    const report = await q.drain(10, deadline(), { queue: 'mail' });
    expect(report.succeeded).toBe(2);
    expect(ran).toEqual(['mail', 'mail']);
    expect(await sql(`select queue, state from jobs.all order by job_id`)).toEqual([
      { queue: 'mail', state: 'success' }, { queue: 'mail', state: 'success' }, { queue: 'default', state: 'pending' }]);
    expect(await sql(`select job_id from jobs.consume(5, queue => 'mail')`)).toEqual([]);
  });

  it('publishing to or draining an unknown queue names the field', async () => {
    await expect(sql(`select jobs.publish('t', queue => 'nope')`)).rejects.toMatchObject({ code: 'PD009', column: 'queue' });
    await expect(queueWith().publish('t', null, { queue: 'nope' })).rejects.toMatchObject({ code: 'invalid_argument', field: 'options.queue' });
    await expect(queueWith().drain(10, deadline(), { queue: 'bad name' })).rejects.toMatchObject({ field: 'options.queue' });
    await expect(sql(`select jobs.create_queue('two words')`)).rejects.toMatchObject({ code: 'PD009' });
  });

  it('pause and resume from SQL: a paused queue takes jobs and hands out none', async () => {
    await sql(`select jobs.create_queue('reports')`);
    await sql(`select jobs.publish('r', queue => 'reports'), jobs.publish('d')`);
    expect(await one(`select jobs.pause_queue('reports') as p`)).toEqual({ p: true });
    expect(await sql(`select job_id from jobs.consume(5, queue => 'reports')`)).toEqual([]);
    expect(await sql(`select task from jobs.consume(5)`)).toEqual([{ task: 'd' }]); // others unaffected
    expect(await one(`select jobs.resume_queue('reports') as p`)).toEqual({ p: true });
    expect(await sql(`select task from jobs.consume(5, queue => 'reports')`)).toEqual([{ task: 'r' }]);
    expect(await one(`select jobs.pause_queue('ghost') as p`)).toEqual({ p: false });
    const q = queueWith({ r: () => 1 });
    expect(await q.queues.pause('reports')).toBe(true);
    await sql(`select jobs.publish('r', queue => 'reports')`);
    expect((await q.drain(10, deadline(), { queue: 'reports' })).claimed).toBe(0);
    // Paused, its jobs are not "skipped for their timeout" (60 s here, past a 10-s budget): the queue hands out nothing.
    // The report says why nothing ran.
    expect(await q.drain(10, Date.now() + 10_000, { queue: 'reports' }))
      .toMatchObject({ claimed: 0, skipped: 0, stoppedBy: 'empty', queuePaused: true });
    await q.queues.resume('reports');
    expect(await q.drain(10, deadline(), { queue: 'reports' })).toMatchObject({ succeeded: 1, queuePaused: false });
  });
});

describe('backpressure', () => {
  it('a queue at max_size refuses more with PD010 naming the queue, writing nothing', async () => {
    await sql(`select jobs.create_queue('small', max_size => 2)`);
    await sql(`select jobs.publish('t', queue => 'small'), jobs.publish('t', queue => 'small')`);
    const e = await sql(`select jobs.publish('t', queue => 'small')`).catch((x: unknown) => x as { code: string; column: string; message: string });
    expect(e).toMatchObject({ code: 'PD010', column: 'queue' });
    expect((e as unknown as Error).message).toMatch(/queue 'small' is full: 2 waiting jobs \+ 1 published > max_size 2/);
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 2 });
    // Running jobs are not backlog: claiming one makes room.
    await sql(`select * from jobs.consume(1, queue => 'small')`);
    await sql(`select jobs.publish('t', queue => 'small')`);
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 3 });
  });

  it('TypeScript: a full queue is a PgDrainError with code queue_full; bulk is all or nothing', async () => {
    const q = queueWith();
    await q.queues.create('tiny', { maxSize: 3 });
    await q.publishBulk([{ task: 't' }, { task: 't' }], 'tiny');
    const e = await q.publishBulk([{ task: 't' }, { task: 't' }], 'tiny').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PgDrainError);
    expect(e).toMatchObject({ code: 'queue_full', field: 'queue' });
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 2 });
    await q.queues.create('tiny', { maxSize: null }); // unbounded again
    await q.publishBulk([{ task: 't' }, { task: 't' }], 'tiny');
    await expect(q.queues.create('tiny', { maxSize: 0 })).rejects.toMatchObject({ field: 'options.maxSize' });
    await expect(sql(`select jobs.create_queue('tiny', max_size => 0)`)).rejects.toMatchObject({ code: 'PD015' });
  });

  it('concurrent publishers cannot overshoot max_size', async () => {
    await sql(`select jobs.create_queue('race', max_size => 10)`);
    const results = await Promise.allSettled(Array.from({ length: 30 }, () =>
      db.driver.query(`select jobs.publish('t', queue => 'race')`)));
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(10);
    expect(await one(`select count(*)::int as n from jobs.job_queue where queue = 'race'`)).toEqual({ n: 10 });
  });
});

describe('attributes', () => {
  it('a drain with a filter runs only jobs whose attributes contain it', async () => {
    const ran: string[] = [];
    const q = queueWith({ t: (b: string) => void ran.push(b) });
    await q.publish('t', 'eu-gold', { attributes: { region: 'eu', tier: 'gold' } });
    await q.publish('t', 'us-gold', { attributes: { region: 'us', tier: 'gold' } });
    await q.publish('t', 'plain');
    const report = await q.drain(10, deadline(), { filter: { region: 'eu' } });
    expect(report.succeeded).toBe(1);
    expect(ran).toEqual(['eu-gold']);
    expect(await sql(`select body from jobs.claim(10, filter => '{"tier":"gold"}')`)).toEqual([{ body: 'us-gold' }]);
    await expect(q.publish('t', null, { attributes: ['x'] as never })).rejects.toMatchObject({ field: 'options.attributes' });
    await expect(sql(`select jobs.publish('t', attributes => '[1]')`)).rejects.toMatchObject({ code: 'PD014', column: 'attributes' });
  });

  it('the filtered claim uses the GIN index, not a walk over every pending job', async () => {
    await sql(`select jobs.publish_bulk(array(select row('bulk', null, null, null, null, null)::jobs.bulk_job
                                              from generate_series(1, 20000)))`);
    await sql(`select jobs.publish('t', attributes => jsonb_build_object('customer', i)) from generate_series(1, 2000) i`);
    await sql(`analyze jobs.job_queue`);
    const plan = (await sql<{ 'QUERY PLAN': string }>(`explain select q.job_id from jobs.job_queue q
        where q.attributes @> '{"customer": 42}' and q.queue = 'default' and q.lease_until is null
          and q.waiting_deps = 0 and not q.serial_wait and q.scheduled_at <= now()
        order by q.priority desc, q.scheduled_at, q.job_id limit 10 for update skip locked`))
      .map((r) => r['QUERY PLAN']).join('\n');
    expect(plan).toMatch(/job_queue_attributes_idx/);
    expect(await sql(`select body, attributes from jobs.claim(10, filter => '{"customer": 42}')`))
      .toEqual([{ body: null, attributes: { customer: 42 } }]);
  });
});
