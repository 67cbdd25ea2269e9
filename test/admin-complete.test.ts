// Ending a waiting job as a success (jobs.complete) and cancelling the job
// holding a dedupe key (jobs.cancel_key), sql/0036, and their TypeScript edge.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { cancelJobByKey, completeJobs, createQueue, migrate } from '../src/index.js';
import { testDb } from './support/db.js';
import { blocked, lockSessions, outcome } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const one = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await sql<R>(text, params))[0]!;
const queue = () => createQueue({ driver: { ...db.driver, close: async () => {} } });
const publish = async (args = '') => (await one<{ id: string }>(`select jobs.publish('t'${args})::text as id`)).id;
const stateOf = async (id: string) =>
  (await one<{ state: string | null }>(`select (select state from jobs.all where job_id = $1::bigint) as state`, [id])).state;
const later = `, scheduled_at => now() + interval '1 hour'`;
const session = lockSessions(db.url);

/** Claims the only due job: it runs now. */
async function running(args = '') {
  const id = await publish(args);
  const claimed = await sql<{ job_id: string; attempt: number }>('select job_id::text, attempt from jobs.consume(10)');
  expect(claimed.map((r) => r.job_id)).toEqual([id]);
  return { id, attempt: claimed[0]!.attempt };
}

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

describe('jobs.complete', () => {
  it('ends a waiting job as a success with its result, as an ack: dependants released, the key\'s next job heads it, '
    + 'the dedupe key free, pgdrain_completed sent', async () => {
    const parent = await publish(`${later}, serial_key => 's', dedupe_key => 'd'`);
    const next = await publish(`, serial_key => 's'`);
    const other = await publish(later);
    const child = await publish(`, depends_on => array[${parent}::bigint]`);
    const both = await publish(`, depends_on => array[${parent}::bigint, ${other}::bigint]`);
    expect(await stateOf(next)).toBe('blocked');
    expect(await stateOf(child)).toBe('blocked');
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    try {
      const heard: string[] = [];
      listener.on('notification', (n) => heard.push(`${n.channel} ${n.payload}`));
      await listener.query('listen pgdrain_completed');
      expect(await one(`select jobs.complete(array[$1::bigint], '{"done":"by hand"}') as n`, [parent])).toEqual({ n: 1 });
      await listener.query('select 1'); // notifications arrive before this reply
      expect(heard).toEqual([`pgdrain_completed ${parent}`]);
    } finally {
      await listener.end();
    }
    expect(await one(`select status, result, error, attempts, started_at, dedupe_key, serial_key from jobs.job where job_id = $1`, [parent]))
      .toEqual({ status: 'success', result: { done: 'by hand' }, error: null, attempts: 0, started_at: null, dedupe_key: 'd', serial_key: 's' });
    // child waited on parent alone: due now; both still waits for other.
    expect(await sql(`select job_id::text as id, waiting_deps from jobs.job_queue where job_id in ($1, $2) order by job_id`, [child, both]))
      .toEqual([{ id: child, waiting_deps: 0 }, { id: both, waiting_deps: 1 }]);
    expect(await sql(`select job_id::text as id from jobs.dependency`)).toEqual([{ id: both }]);
    expect(await stateOf(next)).toBe('pending');
    // The key is free: a publish of it writes a new job.
    const again = await publish(`, dedupe_key => 'd'`);
    expect(again).not.toBe(parent);
    // The released ones are claimed as any due job.
    expect((await sql<{ id: string }>('select job_id::text as id from jobs.consume(10) order by job_id')).map((r) => r.id))
      .toEqual([next, child, again]);
  });

  it('a job that ran before (a retry pending) keeps its attempts and last error; one behind its key\'s head hands nothing on', async () => {
    const { id: retried, attempt } = await running(`, serial_key => 'r'`);
    await sql(`select jobs.nack($1::bigint, 'first try failed')`, [retried]);
    const behind = await publish(`, serial_key => 'r'`);
    const last = await publish(`, serial_key => 'r'`);
    expect(attempt).toBe(1);
    expect(await one(`select jobs.complete(array[$1::bigint]) as n`, [behind])).toEqual({ n: 1 });
    expect(await stateOf(last)).toBe('blocked'); // retried still heads key r
    expect(await one(`select jobs.complete(array[$1::bigint], '7') as n`, [retried])).toEqual({ n: 1 });
    expect(await sql(`select job_id::text as id, status, result, error, attempts from jobs.job order by job_id`)).toEqual([
      { id: retried, status: 'success', result: 7, error: 'first try failed', attempts: 1 },
      { id: behind, status: 'success', result: null, error: null, attempts: 0 },
    ]);
    expect(await stateOf(last)).toBe('pending');
  });

  it('running jobs are left alone and not counted, and still ack later; ended and unknown ids are not counted', async () => {
    const run = await running();
    const waiting = await publish(later);
    const ended = await publish(later);
    await sql(`select jobs.cancel($1::bigint)`, [ended]);
    expect(await one(`select jobs.complete($1::bigint[], '"x"') as n`, [[run.id, waiting, ended, '999999']])).toEqual({ n: 1 });
    expect(await stateOf(run.id)).toBe('running');
    expect(await stateOf(ended)).toBe('cancelled');
    expect(await one(`select jobs.ack($1::bigint, '"acked"') as ok`, [run.id])).toEqual({ ok: true });
    expect(await one(`select status, result from jobs.job where job_id = $1`, [run.id])).toEqual({ status: 'success', result: 'acked' });
    // Ended now: completing again counts nothing, changes nothing.
    expect(await one(`select jobs.complete($1::bigint[]) as n`, [[run.id, waiting]])).toEqual({ n: 0 });
    expect(await one(`select result from jobs.job where job_id = $1`, [waiting])).toEqual({ result: 'x' });
    expect(await one(`select jobs.complete('{}') as n`)).toEqual({ n: 0 });
  });

  it('a claim in flight: complete waits for it and leaves the job it claimed to run; a claim skips a job being completed', async () => {
    const job = await publish();
    const [claimer, admin] = [await session(), await session()];
    await claimer.query('begin');
    expect((await claimer.query('select job_id::text as id from jobs.consume(1)')).rows).toEqual([{ id: job }]);
    const completing = outcome(admin.query(`select jobs.complete(array[$1::bigint]) as n`, [job]));
    await blocked(sql, admin);
    await claimer.query('commit');
    expect(await completing).toEqual([{ n: 0 }]);
    expect(await stateOf(job)).toBe('running');
    // The other way round: the completing transaction holds the job, a claim passes it by, and then it is gone.
    const other = await publish();
    await admin.query('begin');
    expect((await admin.query(`select jobs.complete(array[$1::bigint]) as n`, [other])).rows).toEqual([{ n: 1 }]);
    expect(await sql('select job_id from jobs.consume(1)')).toEqual([]);
    await admin.query('commit');
    expect(await stateOf(other)).toBe('success');
  });

  it('bad job_ids is PD005 naming job_ids', async () => {
    for (const ids of [null, '{1,NULL}']) {
      await expect(sql(`select jobs.complete($1::bigint[])`, [ids]))
        .rejects.toMatchObject({ code: 'PD005', column: 'job_ids', message: 'job_ids: must be an array of job ids without nulls' });
    }
  });
});

describe('jobs.cancel_key', () => {
  it('cancels the job holding the key, waiting or running, as jobs.cancel; null when no active job holds it', async () => {
    await sql(`select jobs.create_queue('other')`);
    const waiting = await publish(`${later}, dedupe_key => 'w', queue => 'other'`);
    const untouched = await publish(`${later}, dedupe_key => 'u'`);
    const run = await running(`, dedupe_key => 'r'`);
    expect(await one(`select jobs.cancel_key('w', 'superseded') as r`)).toEqual({ r: 'cancelled' });
    expect(await one(`select status, error, dedupe_key from jobs.job where job_id = $1`, [waiting]))
      .toEqual({ status: 'cancelled', error: 'cancelled: superseded', dedupe_key: 'w' });
    expect(await stateOf(untouched)).toBe('scheduled');
    expect(await one(`select jobs.cancel_key('r') as r`)).toEqual({ r: 'cancelling' });
    expect(await one(`select cancel_reason from jobs.job_queue where job_id = $1`, [run.id])).toEqual({ cancel_reason: 'cancelled: by request' });
    // Ended (or never held): null.
    expect(await one(`select jobs.cancel_key('w') as r`)).toEqual({ r: null });
    expect(await one(`select jobs.cancel_key('nobody') as r`)).toEqual({ r: null });
    // The running one ends as cancelled on anything but an ack.
    await sql(`select jobs.nack($1::bigint, 'stopped')`, [run.id]);
    expect(await stateOf(run.id)).toBe('cancelled');
  });

  it('bad dedupe_key is PD011 naming dedupe_key', async () => {
    for (const key of [null, '', 'k'.repeat(501)]) {
      await expect(sql(`select jobs.cancel_key($1)`, [key]))
        .rejects.toMatchObject({ code: 'PD011', column: 'dedupe_key' });
    }
  });
});

it('PUBLIC may not call them; the admin role of jobs.create_roles may, the worker may not', async () => {
  for (const fn of ['jobs.complete(bigint[], jsonb, timestamptz)', 'jobs.cancel_key(text, text, timestamptz)']) {
    expect(await one(`select has_function_privilege('public', $1, 'execute') as ok`, [fn])).toEqual({ ok: false });
  }
  const prefix = `c${Date.now().toString(36)}`;
  await migrate(db.driver, { roles: prefix });
  const job = await publish(`${later}, dedupe_key => 'roles'`);
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  try {
    await c.query('begin');
    await c.query(`set local role ${prefix}_worker`);
    await expect(c.query(`select jobs.complete(array[$1::bigint])`, [job])).rejects.toMatchObject({ code: '42501' });
    await c.query('rollback');
    await c.query('begin');
    await c.query(`set local role ${prefix}_admin`);
    expect((await c.query(`select jobs.cancel_key('nobody') as r, jobs.complete(array[$1::bigint]) as n`, [job])).rows)
      .toEqual([{ r: null, n: 1 }]);
    await c.query('rollback');
  } finally {
    await c.end();
  }
});

describe('TypeScript', () => {
  it('queue.complete and queue.cancelByKey, and the standalone completeJobs and cancelJobByKey', async () => {
    const q = queue();
    const a = await q.publish('t', null, { runAt: new Date(Date.now() + 3_600_000) });
    const b = await q.publish('t', null, { dependsOn: [a] });
    expect(await q.complete([a], { n: 1 })).toBe(1);
    expect(await q.getJob(a)).toMatchObject({ state: 'success', result: { n: 1 } });
    expect((await q.getJob(b))!.state).toBe('pending');
    expect(await completeJobs(db.driver, [b])).toBe(1);
    expect(await one(`select result from jobs.job where job_id = $1`, [b])).toEqual({ result: null });
    const k = await q.publish('t', null, { dedupeKey: 'welcome:42', runAt: new Date(Date.now() + 3_600_000) });
    expect(await q.cancelByKey('welcome:42', 'not needed')).toBe('cancelled');
    expect(await q.getJob(k)).toMatchObject({ state: 'cancelled', error: 'cancelled: not needed' });
    expect(await cancelJobByKey(db.driver, 'welcome:42')).toBeNull();
  });

  it('bad input is refused before any round trip, naming the field', async () => {
    const q = queue();
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    const cases: [() => Promise<unknown>, string][] = [
      [() => q.complete(['1', 'x']), 'jobIds.1'],
      [() => q.complete('1' as unknown as string[]), 'jobIds'],
      [() => q.complete(['1'], 10n), 'result'],
      [() => q.complete(['1'], cycle), 'result'],
      [() => q.complete(['1'], new Map([[1, 2]])), 'result'],
      [() => q.complete(['1'], 'a\0b'), 'result'],
      [() => q.cancelByKey(''), 'dedupeKey'],
      [() => q.cancelByKey(7 as unknown as string), 'dedupeKey'],
      [() => q.cancelByKey('k'.repeat(501)), 'dedupeKey'],
      [() => q.cancelByKey('k', 7 as unknown as string), 'reason'],
      [() => q.cancelByKey('k', 'a\0b'), 'reason'],
    ];
    for (const [call, field] of cases) {
      await expect(call(), field).rejects.toMatchObject({ name: 'ValidationError', code: 'invalid_argument', field });
    }
  });
});
