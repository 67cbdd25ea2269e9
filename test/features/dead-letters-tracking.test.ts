// Issue 7, features 5 and 6: dead letters with redrive, and results/tracking.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, type TaskMap } from '../../src/index.js';
import { testDb } from '../support/db.js';

const db = await testDb();
const sql = db.sql;
const one = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await sql<R>(text, params))[0]!;
const queueWith = (tasks: TaskMap = {}) => createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });
const deadline = () => Date.now() + 120_000;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

/** Publishes jobs that fail at once and end as failures (max_retries 0). */
async function deadLetters(tasks: string[]): Promise<string[]> {
  const ids: string[] = [];
  for (const t of tasks) ids.push((await one<{ id: string }>(`select jobs.publish($1, max_retries => 0)::text as id`, [t])).id);
  await sql(`select jobs.nack(job_id, 'smtp said no: ' || task) from jobs.consume(100)`);
  return ids;
}

describe('dead letters', () => {
  it('jobs that spent their retries are listed in jobs.dead_letters with their error', async () => {
    const [a] = await deadLetters(['mail.send']);
    await sql(`select jobs.publish('ok.job')`);
    await sql(`select jobs.ack(job_id) from jobs.consume(1)`); // a success is no dead letter
    expect(await sql(`select job_id::text as id, task, error, attempts from jobs.dead_letters`))
      .toEqual([{ id: a, task: 'mail.send', error: 'smtp said no: mail.send', attempts: 1 }]);
  });

  it('redrive with a filter moves only the matching ones back, same id, fresh retries, error kept', async () => {
    const [m1, m2, b1] = await deadLetters(['mail.send', 'mail.digest', 'billing.charge']);
    expect(await one(`select jobs.redrive(task => 'mail.%') as n`)).toEqual({ n: 2 });
    expect(await sql(`select job_id::text as id, attempt, last_error, lease_until from jobs.job_queue order by job_id`)).toEqual([
      { id: m1, attempt: 0, last_error: 'smtp said no: mail.send', lease_until: null },
      { id: m2, attempt: 0, last_error: 'smtp said no: mail.digest', lease_until: null },
    ]);
    expect(await sql(`select job_id::text as id from jobs.dead_letters`)).toEqual([{ id: b1 }]);
    // They run again like new jobs and can succeed.
    const report = await queueWith({ mail: { send: () => 'sent', digest: () => 'sent' } }).drain(10, deadline());
    expect(report.succeeded).toBe(2);
    expect(await one(`select count(*)::int as n from jobs.job where status = 'success' and job_id in ($1, $2)`, [m1, m2])).toEqual({ n: 2 });
  });

  it('redrive into a bounded queue takes back only what fits: past max_size it is refused (PD010) and redrives nothing', async () => {
    await sql(`select jobs.create_queue('mail', max_size => 2)`);
    try {
      await sql(`select jobs.publish('mail.send', queue => 'mail', max_retries => 0) from generate_series(1, 2)`);
      await sql(`select jobs.nack(job_id, 'no') from jobs.consume(2, queue => 'mail')`);
      await sql(`select jobs.publish('mail.send', queue => 'mail') from generate_series(1, 2)`); // full again
      const e = await sql(`select jobs.redrive(queue => 'mail')`).then(() => null, (error: { code?: string; column?: string }) => error);
      expect(e).toMatchObject({ code: 'PD010', column: 'queue' });
      expect(await one(`select count(*)::int as waiting from jobs.job_queue where queue = 'mail'`)).toEqual({ waiting: 2 });
      expect(await one(`select count(*)::int as n from jobs.dead_letters`)).toEqual({ n: 2 });
      await sql(`select jobs.create_queue('mail', max_size => 4)`);
      expect(await one(`select jobs.redrive(queue => 'mail') as n`)).toEqual({ n: 2 });
    } finally {
      await sql(`truncate jobs.job_queue, jobs.job; delete from jobs.queue where name = 'mail'`);
    }
  });

  it('redrive with no filter takes all, by ids takes those; a dedupe key active again stays a dead letter', async () => {
    await deadLetters(['a', 'b', 'c']);
    const { id } = await one<{ id: string }>(`select job_id::text as id from jobs.dead_letters where task = 'b'`);
    expect(await one(`select jobs.redrive(job_ids => array[$1::bigint]) as n`, [id])).toEqual({ n: 1 });
    expect(await one(`select jobs.redrive() as n`)).toEqual({ n: 2 });
    expect(await one(`select count(*)::int as n from jobs.dead_letters`)).toEqual({ n: 0 });

    await sql('truncate jobs.job_queue, jobs.job');
    await sql(`select jobs.publish('d', max_retries => 0, dedupe_key => 'k')`);
    await sql(`select jobs.nack(job_id, 'x') from jobs.consume(1)`);
    await sql(`select jobs.publish('d', dedupe_key => 'k')`);
    // psql shows the notice: why a matching dead letter was not run again.
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const notices: string[] = [];
    client.on('notice', (notice) => notices.push(notice.message ?? ''));
    try {
      expect((await client.query('select jobs.redrive() as n')).rows).toEqual([{ n: 0 }]);
    } finally {
      await client.end();
    }
    expect(notices).toEqual(['pgdrain: 1 of 1 matching dead letters left in place: an active job, or an older dead letter going back, holds their dedupe key']);
    expect(await one(`select count(*)::int as n from jobs.dead_letters`)).toEqual({ n: 1 });
  });

  it('redrive keeps a serial key one at a time: the first job back is its head, even when a dedupe conflict leaves an earlier one out', async () => {
    const key = () => sql(`select task, serial_wait from jobs.job_queue where serial_key = 'k' order by job_id`);
    // s.one (dedupe d) runs first, s.two and s.three wait behind it; each runs in turn and fails.
    const threeDeadLetters = async () => {
      await sql('truncate jobs.job_queue, jobs.job');
      await sql(`select jobs.publish('s.one', max_retries => 0, serial_key => 'k', dedupe_key => 'd')`);
      await sql(`select jobs.publish('s.two', max_retries => 0, serial_key => 'k')`);
      await sql(`select jobs.publish('s.three', max_retries => 0, serial_key => 'k')`);
      for (let i = 0; i < 3; i++) await sql(`select jobs.nack(job_id, 'no') from jobs.consume(10)`);
      expect(await one(`select count(*)::int as n from jobs.dead_letters`)).toEqual({ n: 3 });
    };

    await threeDeadLetters();
    expect(await one(`select jobs.redrive(task => 's.t%') as n`)).toEqual({ n: 2 });
    expect(await key()).toEqual([{ task: 's.two', serial_wait: false }, { task: 's.three', serial_wait: true }]);

    await threeDeadLetters();
    await sql(`select jobs.publish('other', dedupe_key => 'd')`); // d is active again: s.one stays a dead letter
    expect(await one(`select jobs.redrive() as n`)).toEqual({ n: 2 });
    expect(await key()).toEqual([{ task: 's.two', serial_wait: false }, { task: 's.three', serial_wait: true }]);
    expect((await sql(`select task from jobs.consume(10) order by task`)).map((r) => r.task)).toEqual(['other', 's.two']);
  });

  it('TypeScript: queue.redrive(filter) in one call; a bad filter names the field', async () => {
    const q = queueWith();
    await deadLetters(['x.one', 'x.two', 'y.one']);
    expect(await q.redrive({ task: 'x.%', errorLike: '%x.one' })).toEqual({ redriven: 1, heldByKey: 0, serialLater: 0 });
    expect(await q.redrive({})).toEqual({ redriven: 2, heldByKey: 0, serialLater: 0 });
    await expect(q.redrive({ ids: ['nope'] })).rejects.toMatchObject({ field: 'filter.ids.0' });
    await expect(q.redrive({ colour: 'red' } as never)).rejects.toMatchObject({ field: 'filter' });
  });
});

describe('results and tracking', () => {
  it('keeps the result as jsonb, duration, attempts, worker id and the last error', async () => {
    let calls = 0;
    const q = queueWith({
      report: { build: async (b: { n: number }) => {
        if (++calls === 1) throw new Error('first try fails');
        return { rows: b.n, ok: true };
      } },
    });
    const id = await q.publish('report.build', { n: 7 });
    await sql(`update jobs.job_queue set max_retries = 2 where job_id = $1`, [id]);
    await q.drain(10, deadline(), { workerId: 'pod-a/1' });
    await sql(`update jobs.job_queue set scheduled_at = now() where job_id = $1`, [id]); // skip the backoff
    await q.drain(10, deadline(), { workerId: 'pod-b/2' });
    const row = await one<Record<string, unknown>>(
      `select status, result, attempts, worker_id, duration_ms >= 0 as timed, error from jobs.job where job_id = $1`, [id]);
    expect(row).toMatchObject({ status: 'success', result: { rows: 7, ok: true }, attempts: 2, worker_id: 'pod-b/2', timed: true });
    expect(row.error).toMatch(/first try fails/);
  });

  it('queue.getJob answers a job as it is now: waiting, running, ended, archived; null when there is none', async () => {
    const q = queueWith({ ok: (b: { n: number }) => ({ twice: b.n * 2 }) });
    const id = await q.publish('ok', { n: 21 }, { priority: 3, attributes: { tenant: 'a' } });
    expect(await q.getJob(id)).toMatchObject({ id, task: 'ok', state: 'pending', body: { n: 21 }, result: null, attempts: 0,
      priority: 3, queue: 'default', attributes: { tenant: 'a' }, runAt: expect.any(Date), startedAt: null, endedAt: null });
    await sql(`select * from jobs.consume(1)`);
    expect(await q.getJob(id)).toMatchObject({ state: 'running', attempts: 1, startedAt: expect.any(Date) });
    await sql(`update jobs.job_queue set lease_until = null, attempt = 0`); // given back, as a release would
    await q.drain(10, deadline(), { workerId: 'pod-c' });
    const ended = await q.getJob(id);
    expect(ended).toMatchObject({ state: 'success', result: { twice: 42 }, attempts: 1, workerId: 'pod-c', endedAt: expect.any(Date) });
    await sql(`select jobs.maintain(retention => '0 seconds', archive => true)`);
    expect(await one(`select count(*)::int as n from jobs.job`)).toEqual({ n: 0 });
    expect(await q.getJob(id)).toEqual(ended); // read from jobs.job_archive
    expect(await q.getJob('424242')).toBeNull();
    await expect(q.getJob('nope')).rejects.toMatchObject({ field: 'jobId' });
  });

  it('a drain without workerId records a generated one; the README queries run', async () => {
    const q = queueWith({ t: () => 1, bad: () => { throw new Error('nope'); } });
    await q.publish('t');
    await q.publish('bad', null, { maxRetries: 0 });
    await q.drain(10, deadline());
    const { w } = await one<{ w: string }>(`select worker_id as w from jobs.job where task = 't'`);
    expect(w).toMatch(/^drain-[0-9a-f]{12}$/);
    // The queries documented in README.md, Features → Results and tracking.
    const averages = await sql(`select task, count(*)::int as runs, round(avg(duration_ms)::numeric, 1) as avg_ms,
                                       round(avg(attempts)::numeric, 2) as avg_attempts
                                from jobs.job where status = 'success' and ended_at > now() - interval '1 day'
                                group by task order by avg_ms desc`);
    expect(averages).toMatchObject([{ task: 't', runs: 1, avg_attempts: '1.00' }]);
    const failures = await sql(`select job_id, task, ended_at, attempts, worker_id, left(error, 200) as error
                                from jobs.job where status = 'failure' order by ended_at desc limit 20`);
    expect(failures).toMatchObject([{ task: 'bad', attempts: 1 }]);
    expect((failures[0] as { error: string }).error).toMatch(/nope/);
  });
});
