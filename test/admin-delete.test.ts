// Deleting jobs outright (jobs.delete_jobs) and a queue's ended jobs
// (jobs.delete_ended), sql/0036, and their TypeScript edge.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, deleteEndedJobs, deleteJobs, migrate } from '../src/index.js';
import { testDb } from './support/db.js';
import { blocked, lockSessions, outcome } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const one = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await sql<R>(text, params))[0]!;
const queue = () => createQueue({ driver: { ...db.driver, close: async () => {} } });
const publish = async (args = '') => (await one<{ id: string }>(`select jobs.publish('t'${args})::text as id`)).id;
const later = `, scheduled_at => now() + interval '1 hour'`;
const deleted = async (ids: string[]) =>
  one(`select waiting, ended, running::text[] as running from jobs.delete_jobs($1::bigint[])`, [ids]);
/** Where a job is: 'queued', its status in jobs.job, 'archived', or null (nowhere). */
const whereIs = async (id: string) => (await one<{ w: string | null }>(`select coalesce(
    (select 'queued' from jobs.job_queue where job_id = $1::bigint), (select status from jobs.job where job_id = $1::bigint),
    (select 'archived' from jobs.job_archive where job_id = $1::bigint)) as w`, [id])).w;
const session = lockSessions(db.url);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.job_archive, jobs.dependency, jobs.throttle');
});

describe('jobs.delete_jobs', () => {
  it('a waiting job leaves no history; its dependant is cancelled, its serial key moves on, its dedupe key is free, '
    + 'pgdrain_completed sent', async () => {
    const parent = await publish(`${later}, serial_key => 's', dedupe_key => 'd'`);
    const next = await publish(`, serial_key => 's'`);
    const child = await publish(`, depends_on => array[${parent}::bigint]`);
    expect(await sql(`select job_id::text as id, state from jobs.all where job_id in ($1, $2) order by job_id`, [next, child]))
      .toEqual([{ id: next, state: 'blocked' }, { id: child, state: 'blocked' }]);
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    try {
      const heard: string[] = [];
      listener.on('notification', (n) => heard.push(`${n.channel} ${n.payload}`));
      await listener.query('listen pgdrain_completed');
      expect(await deleted([parent])).toEqual({ waiting: 1, ended: 0, running: [] });
      await listener.query('select 1'); // notifications arrive before this reply
      expect(heard).toEqual([`pgdrain_completed ${parent}`, `pgdrain_completed ${child}`]);
    } finally {
      await listener.end();
    }
    expect(await whereIs(parent)).toBeNull();
    expect(await one(`select status, error from jobs.job where job_id = $1`, [child]))
      .toEqual({ status: 'cancelled', error: `cancelled: dependency ${parent} did not succeed` });
    expect(await sql(`select * from jobs.dependency`)).toEqual([]);
    expect(await one(`select state from jobs.all where job_id = $1`, [next])).toEqual({ state: 'pending' });
    const again = await publish(`, dedupe_key => 'd'`);
    expect(again).not.toBe(parent);
    expect((await sql<{ id: string }>('select job_id::text as id from jobs.consume(10) order by job_id')).map((r) => r.id))
      .toEqual([next, again]);
  });

  it('an ended job\'s history is deleted, in jobs.job and in jobs.job_archive; getJob then answers null', async () => {
    const [done, archived] = [await publish(later), await publish(later)];
    await sql(`select jobs.complete($1::bigint[])`, [[done, archived]]);
    await sql(`update jobs.job set ended_at = now() - interval '30 days' where job_id = $1`, [archived]);
    await sql(`select jobs.maintain(retention => '7 days', archive => true)`);
    expect([await whereIs(done), await whereIs(archived)]).toEqual(['success', 'archived']);
    expect(await deleted([done, archived])).toEqual({ waiting: 0, ended: 2, running: [] });
    expect([await whereIs(done), await whereIs(archived)]).toEqual([null, null]);
    expect(await queue().getJob(done)).toBeNull();
    expect(await deleted([done, archived])).toEqual({ waiting: 0, ended: 0, running: [] });
  });

  it('a running job is left alone and answered in running; unknown ids are in none', async () => {
    const run = await publish();
    expect(await sql(`select job_id::text as id from jobs.consume(1)`)).toEqual([{ id: run }]);
    const [waiting, ended] = [await publish(later), await publish(later)];
    await sql(`select jobs.cancel($1::bigint)`, [ended]);
    expect(await deleted([run, waiting, ended, '999999'])).toEqual({ waiting: 1, ended: 1, running: [run] });
    expect(await whereIs(run)).toBe('queued');
    expect(await one(`select jobs.ack($1::bigint) as ok`, [run])).toEqual({ ok: true });
    expect(await deleted([run])).toEqual({ waiting: 0, ended: 1, running: [] });
    expect(await deleted([])).toEqual({ waiting: 0, ended: 0, running: [] });
  });

  it('a waiting job that opened a throttle window lets go of it: the next throttled publish of its key writes a job, '
    + 'not answering the deleted one', async () => {
    const throttled = `, dedupe_key => 'k', throttle_seconds => 3600`;
    const first = await publish(`${later}${throttled}`);
    expect(await deleted([first])).toEqual({ waiting: 1, ended: 0, running: [] });
    const second = await publish(throttled);
    expect(second).not.toBe(first);
    expect(await whereIs(second)).toBe('queued');
    // The window is the new job's now, as ever.
    expect(await publish(throttled)).toBe(second);
  });

  it('an ended job whose throttle window is open lets go of it: the next throttled publish of its key writes a job, '
    + 'not answering the deleted one', async () => {
    const throttled = `, dedupe_key => 'k', throttle_seconds => 3600`;
    const first = await publish(throttled);
    expect(await sql(`select job_id::text as id from jobs.consume(1)`)).toEqual([{ id: first }]);
    await sql(`select jobs.ack($1::bigint)`, [first]);
    expect(await publish(throttled)).toBe(first);
    expect(await deleted([first])).toEqual({ waiting: 0, ended: 1, running: [] });
    const second = await publish(throttled);
    expect(second).not.toBe(first);
    expect(await whereIs(second)).toBe('queued');
    expect(await publish(throttled)).toBe(second);
  });

  it('a claim in flight: delete waits for it and leaves the job it claimed running', async () => {
    const job = await publish();
    const [claimer, admin] = [await session(), await session()];
    await claimer.query('begin');
    expect((await claimer.query('select job_id::text as id from jobs.consume(1)')).rows).toEqual([{ id: job }]);
    const deleting = outcome(admin.query(`select waiting, ended, running::text[] as running from jobs.delete_jobs(array[$1::bigint])`, [job]));
    await blocked(sql, admin);
    await claimer.query('commit');
    expect(await deleting).toEqual([{ waiting: 0, ended: 0, running: [job] }]);
    expect(await whereIs(job)).toBe('queued');
  });

  it('a running job whose nack commits while the delete runs is answered (deleted, or running), never in none while it waits to run again', async () => {
    // The nack and the delete race: whichever order they land in, the delete
    // answers the job. Answered in none (as an unknown id), the caller was
    // told nothing while the job stayed queued to run again.
    const [nacker, admin] = [await session(), await session()];
    const unanswered: string[] = [];
    for (let i = 0; i < 300; i++) {
      const job = await publish(', max_retries => 5');
      expect(await sql(`select job_id::text as id from jobs.consume(1)`)).toEqual([{ id: job }]);
      const [, d] = await Promise.all([
        nacker.query(`select jobs.nack($1::bigint, 'again', now())`, [job]),
        admin.query<{ waiting: number; ended: number; running: string[] }>(
          `select waiting, ended, running::text[] as running from jobs.delete_jobs(array[$1::bigint])`, [job])]);
      const r = d.rows[0]!;
      if (r.waiting + r.ended + r.running.length === 0 && await whereIs(job) === 'queued') unanswered.push(job);
      await sql('delete from jobs.job_queue');
    }
    expect(unanswered).toEqual([]);
  });

  it('bad job_ids is PD005 naming job_ids; more than 500 waiting serial-key heads is PD005, nothing deleted', async () => {
    for (const ids of [null, '{1,NULL}']) {
      await expect(sql(`select jobs.delete_jobs($1::bigint[])`, [ids]))
        .rejects.toMatchObject({ code: 'PD005', column: 'job_ids', message: 'job_ids: must be an array of job ids without nulls' });
    }
    await sql(`select jobs.publish('t', scheduled_at => now() + interval '1 hour', serial_key => 'k' || i) from generate_series(1, 501) i`);
    await expect(sql(`select jobs.delete_jobs(array(select job_id from jobs.job_queue))`))
      .rejects.toMatchObject({ code: 'PD005', column: 'job_ids', message: expect.stringMatching(/^job_ids: at most 500 .* got 501/) });
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 501 });
  });
});

describe('jobs.delete_ended', () => {
  it('deletes a queue\'s ended jobs, history and archive, oldest first: all, those ended before a time, at most max_rows', async () => {
    await sql(`select jobs.create_queue('mail')`);
    const mail = [];
    for (let i = 0; i < 4; i++) mail.push(await publish(`${later}, queue => 'mail'`));
    const other = await publish(later);
    const waiting = await publish(`${later}, queue => 'mail'`);
    await sql(`select jobs.complete($1::bigint[])`, [[...mail.slice(0, 2), other]]);
    await sql(`select jobs.fail($1::bigint[])`, [[mail[2]]]);
    await sql(`select jobs.cancel($1::bigint)`, [mail[3]]);
    // Ended 40, 30, 20 and 10 days ago; the oldest archived.
    await sql(`update jobs.job set ended_at = now() - (10 * (4 - array_position($1::bigint[], job_id))) * interval '1 day' - interval '10 days'
               where job_id = any($1::bigint[])`, [mail]);
    await sql(`select jobs.maintain(retention => '35 days', archive => true)`);
    expect(await whereIs(mail[0]!)).toBe('archived');
    expect(await one(`select jobs.delete_ended('mail', ended_before => now() - interval '25 days', max_rows => 1) as n`)).toEqual({ n: 1 });
    expect(await whereIs(mail[0]!)).toBeNull();
    expect(await one(`select jobs.delete_ended('mail', ended_before => now() - interval '25 days') as n`)).toEqual({ n: 1 });
    expect([await whereIs(mail[1]!), await whereIs(mail[2]!)]).toEqual([null, 'failure']);
    expect(await one(`select jobs.delete_ended('mail') as n`)).toEqual({ n: 2 });
    expect(await one(`select jobs.delete_ended('mail') as n`)).toEqual({ n: 0 });
    expect([await whereIs(other), await whereIs(waiting)]).toEqual(['success', 'queued']);
    expect(await one(`select jobs.delete_ended('gone.queue') as n`)).toEqual({ n: 0 });
  });

  it('an ended job whose throttle window is open lets go of it, archived or not: a throttled publish of its key '
    + 'writes a job, not answering the deleted one', async () => {
    await sql(`select jobs.create_queue('mail')`);
    const throttled = (key: string) => `, queue => 'mail', dedupe_key => '${key}', throttle_seconds => 3600`;
    const [a, b] = [await publish(throttled('a')), await publish(throttled('b'))];
    expect(await sql(`select job_id::text as id from jobs.consume(2, queue => 'mail') order by job_id`)).toEqual([{ id: a }, { id: b }]);
    await sql(`select jobs.ack(array[$1, $2]::bigint[])`, [a, b]);
    await sql(`update jobs.job set ended_at = now() - interval '2 days' where job_id = $1::bigint`, [a]);
    await sql(`select jobs.maintain(retention => '1 day', archive => true)`);
    expect([await whereIs(a), await whereIs(b)]).toEqual(['archived', 'success']);
    expect([await publish(throttled('a')), await publish(throttled('b'))]).toEqual([a, b]);
    expect(await one(`select jobs.delete_ended('mail') as n`)).toEqual({ n: 2 });
    const [a2, b2] = [await publish(throttled('a')), await publish(throttled('b'))];
    expect([a2, b2]).not.toContain(a);
    expect([a2, b2]).not.toContain(b);
    expect([await whereIs(a2), await whereIs(b2)]).toEqual(['queued', 'queued']);
  });

  it('a bad queue is PD009 naming queue; a bad max_rows PDC03 naming max_rows', async () => {
    for (const name of [null, '', 'a b']) {
      await expect(sql(`select jobs.delete_ended($1)`, [name])).rejects.toMatchObject({ code: 'PD009', column: 'queue' });
    }
    for (const n of [null, 0, 10_000_001]) {
      await expect(sql(`select jobs.delete_ended('mail', max_rows => $1)`, [n])).rejects.toMatchObject({ code: 'PDC03', column: 'max_rows' });
    }
  });
});

it('PUBLIC may not call them; the admin role of jobs.create_roles may, the worker may not', async () => {
  for (const fn of ['jobs.delete_jobs(bigint[], timestamptz)', 'jobs.delete_ended(text, timestamptz, integer)']) {
    expect(await one(`select has_function_privilege('public', $1, 'execute') as ok`, [fn])).toEqual({ ok: false });
  }
  const prefix = `d${Date.now().toString(36)}`;
  await migrate(db.driver, { roles: prefix });
  const job = await publish(later);
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  try {
    await c.query('begin');
    await c.query(`set local role ${prefix}_worker`);
    await expect(c.query(`select jobs.delete_jobs(array[$1::bigint])`, [job])).rejects.toMatchObject({ code: '42501' });
    await c.query('rollback');
    await c.query('begin');
    await c.query(`set local role ${prefix}_admin`);
    expect((await c.query(`select (jobs.delete_jobs(array[$1::bigint])).waiting, jobs.delete_ended('default') as n`, [job])).rows)
      .toEqual([{ waiting: 1, n: 0 }]);
    await c.query('rollback');
  } finally {
    await c.end();
  }
});

describe('TypeScript', () => {
  it('queue.deleteJobs and queues.deleteEnded, and the standalone deleteJobs and deleteEndedJobs', async () => {
    const q = queue();
    const a = await q.publish('t', null, { runAt: new Date(Date.now() + 3_600_000) });
    const b = await q.publish('t', null, { dependsOn: [a] });
    const run = await q.publish('t', null, { priority: 1 });
    expect(await sql(`select job_id::text as id from jobs.consume(1)`)).toEqual([{ id: run }]);
    expect(await q.deleteJobs([a, run])).toEqual({ waiting: 1, ended: 0, running: [run] });
    expect(await q.getJob(a)).toBeNull();
    expect(await q.getJob(b)).toMatchObject({ state: 'cancelled' });
    expect(await deleteJobs(db.driver, [b])).toEqual({ waiting: 0, ended: 1, running: [] });
    await sql(`select jobs.ack($1::bigint)`, [run]);
    expect(await q.queues.deleteEnded('default', { endedBefore: new Date(Date.now() - 3_600_000) })).toBe(0);
    expect(await q.queues.deleteEnded('default', { maxRows: 5 })).toBe(1);
    expect(await deleteEndedJobs(db.driver, 'default')).toBe(0);
    expect(await q.getJob(run)).toBeNull();
  });

  it('a waitFor on a waiting job rejects once it is deleted (woken by pgdrain_completed, it finds no such job), never hangs', async () => {
    const listening = createQueue({ connectionString: db.url });
    try {
      const id = await listening.publish('t', null, { runAt: new Date(Date.now() + 3_600_000) });
      // The LISTEN session open first, so the waiter is listening, or asks after the delete: either way it ends.
      const stop = await listening.subscribe(() => {});
      const waiting = listening.waitFor(id);
      waiting.catch(() => {});
      expect(await deleteJobs(db.driver, [id])).toEqual({ waiting: 1, ended: 0, running: [] });
      await expect(waiting).rejects.toMatchObject({ name: 'ValidationError', field: 'jobId', message: expect.stringMatching(`no job with id ${id}`) });
      stop();
    } finally {
      await listening.close();
    }
  });

  it('bad input is refused before any round trip, naming the field', async () => {
    const q = queue();
    const cases: [() => Promise<unknown>, string][] = [
      [() => q.deleteJobs(['1', 'x']), 'jobIds.1'],
      [() => q.deleteJobs('1' as unknown as string[]), 'jobIds'],
      [() => q.deleteJobs(['0']), 'jobIds.0'],
      [() => q.queues.deleteEnded(''), 'name'],
      [() => q.queues.deleteEnded('a b'), 'name'],
      [() => q.queues.deleteEnded('mail', { endedBefore: new Date(NaN) }), 'options.endedBefore'],
      [() => q.queues.deleteEnded('mail', { maxRows: 0 }), 'options.maxRows'],
      [() => q.queues.deleteEnded('mail', { maxRows: 1.5 }), 'options.maxRows'],
      [() => q.queues.deleteEnded('mail', { rows: 1 } as never), 'options'],
      [() => deleteEndedJobs(db.driver, 7 as unknown as string), 'name'],
    ];
    for (const [call, field] of cases) {
      await expect(call(), field).rejects.toMatchObject({ name: 'ValidationError', code: 'invalid_argument', field });
    }
  });
});
