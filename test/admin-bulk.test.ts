// Changing queued jobs as a set (sql/0028): jobs.cancel_bulk, jobs.reschedule,
// jobs.fail, jobs.redrive's include_cancelled, and their TypeScript edge.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, type TaskMap } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const one = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await sql<R>(text, params))[0]!;
const queueWith = (tasks: TaskMap = {}) => createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });
const publish = async (args = '') => (await one<{ id: string }>(`select jobs.publish('t'${args})::text as id`)).id;
const stateOf = async (id: string) =>
  (await one<{ state: string | null }>(`select (select state from jobs.all where job_id = $1::bigint) as state`, [id])).state;

/** One job in each state: pending, scheduled, blocked (dependency, serial key), running, ended. */
async function jobsInEveryState() {
  const running = await publish(`, body => '"run"'`);
  await sql(`select * from jobs.consume(1)`); // the only due job: running
  const pending = await publish();
  const scheduled = await publish(`, scheduled_at => now() + interval '1 hour'`);
  const blocked = await publish(`, depends_on => array[${scheduled}::bigint]`);
  const head = await publish(`, scheduled_at => now() + interval '1 hour', serial_key => 's'`);
  const waiting = await publish(`, serial_key => 's'`);
  const ended = await publish();
  await sql(`select jobs.cancel($1::bigint)`, [ended]);
  return { running, pending, scheduled, blocked, head, waiting, ended };
}

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.job_archive, jobs.dependency');
});

describe('jobs.cancel_bulk', () => {
  it('cancels jobs not yet running, asks running ones to stop, counts both; ended and unknown ids are not counted', async () => {
    const j = await jobsInEveryState();
    const ids = [j.running, j.pending, j.scheduled, j.head, j.ended, '999999'];
    expect(await one(`select jobs.cancel_bulk($1::bigint[], 'tenant gone') as n`, [ids])).toEqual({ n: 4 });
    for (const id of [j.pending, j.scheduled, j.head]) {
      expect(await one(`select status, error from jobs.job where job_id = $1`, [id]))
        .toEqual({ status: 'cancelled', error: 'cancelled: tenant gone' });
    }
    expect(await one(`select lease_until is not null as running, cancel_reason from jobs.job_queue where job_id = $1`, [j.running]))
      .toEqual({ running: true, cancel_reason: 'cancelled: tenant gone' });
    // Cascade: the dependant of a cancelled job ends as cancelled; the serial key passes to its next job.
    expect(await one(`select status, error from jobs.job where job_id = $1`, [j.blocked]))
      .toEqual({ status: 'cancelled', error: `cancelled: dependency ${j.scheduled} did not succeed` });
    expect(await stateOf(j.waiting)).toBe('pending');
    // The running one ends as cancelled whatever it reports but an ack.
    const attempt = (await one<{ a: number }>(`select attempt as a from jobs.job_queue where job_id = $1`, [j.running])).a;
    await sql(`select jobs.settle(jsonb_build_array(jsonb_build_object('id', $1::bigint, 'attempt', $2::int, 'outcome', 'nack', 'error', 'x')))`,
              [j.running, attempt]);
    expect(await stateOf(j.running)).toBe('cancelled');
    expect(await one(`select jobs.cancel_bulk('{}') as n`)).toEqual({ n: 0 });
  });

  it('cancelling a serial key\'s head and a job waiting behind it hands the key to the next one', async () => {
    const [a, b, c] = [await publish(`, serial_key => 'k'`), await publish(`, serial_key => 'k'`), await publish(`, serial_key => 'k'`)];
    expect(await one(`select jobs.cancel_bulk($1::bigint[]) as n`, [[b, a]])).toEqual({ n: 2 });
    expect(await sql(`select job_id::text as id, serial_wait from jobs.job_queue`)).toEqual([{ id: c, serial_wait: false }]);
  });

  it('NOTIFY: pgdrain_completed with the ended ids (cancel, fail), pgdrain_queued with the queue (reschedule)', async () => {
    const a = await publish();
    const b = await publish();
    const c = await publish();
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    try {
      const heard: string[] = [];
      listener.on('notification', (n) => heard.push(`${n.channel} ${n.payload}`));
      await listener.query('listen pgdrain_completed; listen pgdrain_queued');
      await sql(`select jobs.cancel_bulk($1::bigint[])`, [[b, a]]);
      await sql(`select jobs.reschedule($1::bigint[], priority => 5)`, [[c]]);
      await sql(`select jobs.fail($1::bigint[])`, [[c]]);
      await listener.query('select 1'); // notifications arrive before this reply
      expect(heard).toEqual([`pgdrain_completed ${a},${b}`, 'pgdrain_queued default', `pgdrain_completed ${c}`]);
    } finally {
      await listener.end();
    }
  });
});

describe('jobs.reschedule', () => {
  it('moves pending, scheduled and blocked jobs; running and ended ones are left alone and not counted', async () => {
    const j = await jobsInEveryState();
    const all = Object.values(j);
    const before = await one<{ at: Date }>(`select scheduled_at as at from jobs.job_queue where job_id = $1`, [j.running]);
    expect(await one(`select jobs.reschedule($1::bigint[], '2031-01-01T00:00:00Z', 7) as n`, [all])).toEqual({ n: 5 });
    expect(await sql(`select job_id::text as id from jobs.job_queue
                      where scheduled_at = '2031-01-01T00:00:00Z' and priority = 7 order by job_id`))
      .toEqual([j.pending, j.scheduled, j.blocked, j.head, j.waiting].map((id) => ({ id })));
    expect(await one(`select scheduled_at as at, priority from jobs.job_queue where job_id = $1`, [j.running]))
      .toEqual({ at: before.at, priority: 0 });
    expect(await one(`select priority from jobs.job where job_id = $1`, [j.ended])).toEqual({ priority: 0 });
    // Only the priority: scheduled_at stays.
    expect(await one(`select jobs.reschedule($1::bigint[], priority => -3) as n`, [[j.pending]])).toEqual({ n: 1 });
    expect(await one(`select scheduled_at = '2031-01-01T00:00:00Z' as kept, priority from jobs.job_queue where job_id = $1`, [j.pending]))
      .toEqual({ kept: true, priority: -3 });
  });

  it('a serial key still runs in publish order when its later jobs get a higher priority or an earlier time', async () => {
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push(await publish(`, body => '${i}', serial_key => 'k', scheduled_at => now() - interval '1 minute'`));
    await publish(`, body => '"other"'`);
    await sql(`select jobs.reschedule($1::bigint[], run_at => now() - interval '1 hour', priority => 100)`, [[ids[2], ids[1]]]);
    const order: unknown[] = [];
    await queueWith({ t: (body: unknown) => void order.push(body) }).drain(1, Date.now() + 120_000, { concurrency: 1 });
    // Key k's jobs in job_id order; the prioritised ones first among claimable jobs once their turn comes.
    expect(order.filter((b) => b !== 'other')).toEqual([0, 1, 2]);
  });

  it('bad input names the argument (PD007 run_at, PD004 priority, PD005 job_ids)', async () => {
    const id = await publish();
    for (const [call, code, column] of [
      [`jobs.reschedule(array[${id}::bigint])`, 'PD007', 'run_at'],
      [`jobs.reschedule(array[${id}::bigint], 'infinity')`, 'PD007', 'run_at'],
      [`jobs.reschedule(array[${id}::bigint], priority => 1000001)`, 'PD004', 'priority'],
      [`jobs.reschedule(null, now())`, 'PD005', 'job_ids'],
      [`jobs.reschedule(array[null::bigint], now())`, 'PD005', 'job_ids'],
      [`jobs.cancel_bulk(array[1, null])`, 'PD005', 'job_ids'],
      [`jobs.fail(null)`, 'PD005', 'job_ids'],
      [`jobs.redrive(include_cancelled => true)`, 'PD005', 'job_ids'],
    ] as const) {
      expect(await sqlErrorOf(sql, `select ${call}`), call).toMatchObject({ code, column, message: expect.stringMatching(new RegExp(`^${column}: `)) });
    }
  });
});

describe('jobs.fail', () => {
  it('ends jobs not yet running as dead letters; dependants end as cancelled; running ones are left alone', async () => {
    const j = await jobsInEveryState();
    await sql(`update jobs.job_queue set last_error = 'earlier try' where job_id = $1`, [j.scheduled]);
    const ids = Object.values(j).filter((id) => id !== j.blocked);
    expect(await one(`select jobs.fail($1::bigint[], 'tenant deleted') as n`, [ids])).toEqual({ n: 4 });
    expect(await sql(`select job_id::text as id, error from jobs.dead_letters order by job_id`)).toEqual([
      { id: j.pending, error: 'failed: tenant deleted' },
      { id: j.scheduled, error: 'failed: tenant deleted\nearlier try' },
      { id: j.head, error: 'failed: tenant deleted' },
      { id: j.waiting, error: 'failed: tenant deleted' },
    ]);
    // blocked depended on scheduled: cancelled as after any failure.
    expect(await stateOf(j.blocked)).toBe('cancelled');
    expect(await stateOf(j.running)).toBe('running');
    expect(await stateOf(j.ended)).toBe('cancelled');
    // Redrivable: they run again.
    expect(await one(`select jobs.redrive(array[$1::bigint, $2::bigint]) as n`, [j.pending, j.scheduled])).toEqual({ n: 2 });
    expect(await stateOf(j.pending)).toBe('pending');
  });
});

describe('jobs.redrive include_cancelled', () => {
  it('puts cancelled jobs back by id; without it they stay, and a notice says why for each id', async () => {
    const a = await publish(`, serial_key => 'k'`);
    const b = await publish(`, serial_key => 'k'`);
    const archived = await publish();
    await sql(`select jobs.cancel_bulk($1::bigint[])`, [[a, b, archived]]);
    await sql(`update jobs.job set ended_at = now() - interval '30 days' where job_id = $1`, [archived]);
    await sql(`select jobs.maintain(retention => '7 days', archive => true)`);
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      const notices: string[] = [];
      c.on('notice', (n) => notices.push(n.message!));
      expect((await c.query(`select jobs.redrive(array[$1, $2, 424242]::bigint[]) as n`, [a, archived])).rows).toEqual([{ n: 0 }]);
      expect(notices).toEqual([`pgdrain: not redriven: ${a} (cancelled: give include_cancelled), `
        + `${archived} (archived by jobs.maintain: redrive reads jobs.job only), 424242 (unknown, or deleted by retention)`]);
      expect((await c.query(`select jobs.redrive(array[$1, $2]::bigint[], include_cancelled => true) as n`, [b, a])).rows)
        .toEqual([{ n: 2 }]);
    } finally {
      await c.end();
    }
    // Back in the serial key: the first is its head again, the second waits.
    expect(await sql(`select job_id::text as id, serial_wait, last_error from jobs.job_queue order by job_id`)).toEqual([
      { id: a, serial_wait: false, last_error: 'cancelled: by request' },
      { id: b, serial_wait: true, last_error: 'cancelled: by request' },
    ]);
    // Failures as before: a filter alone redrives failures only, never cancelled jobs.
    await sql(`select jobs.cancel_bulk($1::bigint[])`, [[b]]);
    expect(await one(`select jobs.redrive() as n`)).toEqual({ n: 0 });
  });
});

describe('TypeScript', () => {
  it('queue.cancel([...]), reschedule, fail and redrive({ ids, includeCancelled }) call the SQL and count', async () => {
    const q = queueWith();
    const [a, b, c, d] = [await q.publish('t'), await q.publish('t'), await q.publish('t'), await q.publish('t')];
    expect(await q.cancel(a)).toBe('cancelled'); // one id: as before
    expect(await q.cancel([b, a], 'oops')).toBe(1);
    expect(await q.reschedule([c], { delaySeconds: 3600, priority: 9 })).toBe(1);
    expect(await one(`select scheduled_at > now() + interval '59 minutes' as later, priority from jobs.job_queue where job_id = $1`, [c]))
      .toEqual({ later: true, priority: 9 });
    expect(await q.reschedule([c], { runAt: new Date('2030-05-01T00:00:00Z') })).toBe(1);
    expect(await q.fail([d, c], 'no tenant')).toBe(2);
    expect(await q.redrive({ ids: [a, b] })).toEqual({ redriven: 0, heldByKey: 0, serialLater: 0 });
    expect(await q.redrive({ ids: [a, b, c], includeCancelled: true })).toEqual({ redriven: 3, heldByKey: 0, serialLater: 0 });
    expect((await q.getJob(b))!.state).toBe('pending');
  });

  it('bad input is refused before any round trip, naming the field', async () => {
    const q = queueWith();
    const cases: [() => Promise<unknown>, string][] = [
      [() => q.cancel(['1', 'x']), 'jobIds.1'],
      [() => q.cancel(['1'], 7 as unknown as string), 'reason'],
      [() => q.fail('1' as unknown as string[]), 'jobIds'],
      [() => q.fail(['1'], 'a\0b'), 'reason'],
      [() => q.reschedule(['1'], {}), 'options'],
      [() => q.reschedule(['1'], { priority: 1.5 }), 'options.priority'],
      [() => q.reschedule(['1'], { priority: 2_000_000 }), 'options.priority'],
      [() => q.reschedule(['1'], { runAt: new Date(NaN) }), 'options.runAt'],
      [() => q.reschedule(['1'], { runAt: new Date(), delaySeconds: 1 }), 'options.delaySeconds'],
      [() => q.reschedule(['1'], { when: 1 } as never), 'options'],
      [() => q.redrive({ includeCancelled: true }), 'filter.includeCancelled'],
    ];
    for (const [call, field] of cases) {
      await expect(call(), field).rejects.toMatchObject({ code: 'invalid_argument', field });
    }
  });
});
