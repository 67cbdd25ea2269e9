// A running job being cancelled keeps its keys until it ends, but a
// keep-mode publish with its dedupe key takes the key over (graphile-worker's
// remove_job clears the key of a locked job too): it makes a new job instead
// of answering the id of the job being cancelled, with that job's serial key
// when it gives none, so it waits for it to end, as a replace does. The
// cancelled job still ends as cancelled. jobs.cancel, jobs.cancel_key and
// jobs.cancel_bulk, a real drain, and an overlap 'skip' schedule. On a real PostgreSQL.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, type JobContext } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';
import { until } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
  await sql(`delete from jobs.queue where name <> 'default'`);
  await sql(`select jobs.create_queue('ckq')`);
});

const publish = async (v: number, extra = '') =>
  (await sql<{ id: string }>(`select jobs.publish('ck.task', jsonb_build_object('v', ${v}), queue => 'ckq',
                                dedupe_key => 'user:7:sync'${extra})::text as id`))[0]!.id;
const claim = async () => (await sql<{ id: string }>(`select job_id::text as id from jobs.consume(1, queue => 'ckq')`)).map((r) => r.id);
const states = async () => sql(`select job_id::text as id, state, body, dedupe_key, serial_key from jobs.all where queue = 'ckq' order by job_id`);

describe('SQL: a keep publish takes the dedupe key of a running job being cancelled', () => {
  for (const [how, cancel] of [
    ['jobs.cancel_key', () => sql(`select jobs.cancel_key('user:7:sync', 'superseded') as r`)],
    ['jobs.cancel', (id: string) => sql(`select jobs.cancel($1::bigint, 'superseded') as r`, [id])],
    ['jobs.cancel_bulk', (id: string) => sql(`select jobs.cancel_bulk(array[$1::bigint], 'superseded') as r`, [id])],
  ] as const) {
    it(`${how}: a keep publish with the key makes a new job, which runs after the cancelled one ended`, async () => {
      const first = await publish(1, `, serial_key => 'acct:7'`);
      expect(await claim()).toEqual([first]);
      expect((await cancel(first))[0]!.r).toBe(how === 'jobs.cancel_bulk' ? 1 : 'cancelling');
      // Both keys stay with the running job until a publish takes the dedupe key.
      expect(await states()).toEqual([{ id: first, state: 'running', body: { v: 1 }, dedupe_key: 'user:7:sync', serial_key: 'acct:7' }]);
      const second = await publish(2);
      expect(second).not.toBe(first);
      // The new job holds the dedupe key and waits behind the first on its serial key.
      expect(await states()).toEqual([
        { id: first, state: 'running', body: { v: 1 }, dedupe_key: null, serial_key: 'acct:7' },
        { id: second, state: 'blocked', body: { v: 2 }, dedupe_key: 'user:7:sync', serial_key: 'acct:7' }]);
      expect(await claim()).toEqual([]);
      // The first one's drain reports (a handler that stopped): it ends cancelled, not retried; then the second runs.
      await sql(`select jobs.nack($1::bigint, 'aborted')`, [first]);
      expect(await claim()).toEqual([second]);
      await sql(`select jobs.ack($1::bigint)`, [second]);
      expect(await sql(`select job_id::text as id, state, body, error from jobs.all where queue = 'ckq' order by job_id`)).toEqual([
        { id: first, state: 'cancelled', body: { v: 1 }, error: 'cancelled: superseded\naborted' },
        { id: second, state: 'success', body: { v: 2 }, error: null },
      ]);
    });
  }

  it('a replace after the cancel still finds the running job: the new job takes its serial key and waits', async () => {
    const first = await publish(1, `, serial_key => 'acct:7'`);
    expect(await claim()).toEqual([first]);
    expect(await sql(`select jobs.cancel($1::bigint) as r`, [first])).toEqual([{ r: 'cancelling' }]);
    const second = await publish(2, `, dedupe_mode => 'replace'`);
    expect(second).not.toBe(first);
    expect((await states()).map((r) => [r.id, r.state, r.serial_key])).toEqual([[first, 'running', 'acct:7'], [second, 'blocked', 'acct:7']]);
    expect(await claim()).toEqual([]);
  });

  it("an overlap 'skip' schedule publishes no tick while its cancelled job still runs", async () => {
    const T0 = '2030-01-01T00:00:00Z';
    const at = (m: number) => new Date(Date.parse(T0) + m * 60_000).toISOString();
    await sql(`select jobs.schedule('tick1', '* * * * *', 'ck.tick', queue => 'ckq', overlap => 'skip', runner => 'drains', now => $1)`, [T0]);
    await sql(`select jobs.publish_due_schedules($1)`, [at(1)]);
    const [tick] = await sql<{ id: string }>(`select job_id::text as id from jobs.consume(1, $1, 'ckq')`, [at(1)]);
    expect(await sql(`select jobs.cancel($1::bigint) as r`, [tick!.id])).toEqual([{ r: 'cancelling' }]);
    await sql(`select jobs.publish_due_schedules($1)`, [at(2)]);
    expect(await sql(`select job_id::text as id from jobs.job_queue where task = 'ck.tick'`)).toEqual([{ id: tick!.id }]);
    expect(await sql(`select skipped_ticks::int as n from jobs.recurring where name = 'tick1'`)).toEqual([{ n: 1 }]);
    await sql(`select jobs.unschedule('tick1')`);
  });

  it('a transaction taking two cancelling jobs\' keys does not deadlock with the settle ending both: a row the settle holds is skipped', async () => {
    const x1 = await publish(1);
    const x2 = (await sql<{ id: string }>(`select jobs.publish('ck.task', '{"v":2}', queue => 'ckq', dedupe_key => 'other')::text as id`))[0]!.id;
    const claimed = await sql<{ id: string; attempt: number }>(`select job_id::text as id, attempt from jobs.consume(2, queue => 'ckq') order by job_id`);
    expect(claimed.map((r) => r.id)).toEqual([x1, x2]);
    await sql(`select jobs.cancel($1::bigint), jobs.cancel($2::bigint)`, [x1, x2]);
    const t = new pg.Client({ connectionString: db.url });
    const settler = new pg.Client({ connectionString: db.url });
    await Promise.all([t.connect(), settler.connect()]);
    try {
      await t.query('begin');
      // The transaction takes x2's key (its row now held by the transaction)...
      const third = (await t.query(`select jobs.publish('ck.task', '{"v":3}', queue => 'ckq', dedupe_key => 'other')::text as id`)).rows[0].id;
      expect(third).not.toBe(x2);
      // ...while a drain's settle of both locks x1, then waits for x2.
      const settlerPid = (await settler.query('select pg_backend_pid() as pid')).rows[0].pid as number;
      const settled = settler.query(`select jobs.settle_arrays($1::bigint[], $2::integer[], array['ack', 'ack']) as r`,
                                    [claimed.map((r) => r.id), claimed.map((r) => r.attempt)]);
      await until(async () => (await sql<{ w: string | null }>(`select wait_event_type as w from pg_stat_activity where pid = $1`,
                                                               [settlerPid]))[0]?.w === 'Lock', 'the settle to wait for x2');
      // x1's row is the settle's: its key is not taken, the holder answered, nothing waits.
      expect((await t.query(`select jobs.publish('ck.task', '{"v":4}', queue => 'ckq', dedupe_key => 'user:7:sync')::text as id`)).rows[0].id)
        .toBe(x1);
      await t.query('commit');
      expect(Number((await settled).rows[0].r.succeeded)).toBe(2);
    } finally {
      await Promise.all([t.end(), settler.end()]);
    }
  });

  it('a bulk publish takes the keys of running jobs being cancelled, in its one statement: the new jobs take their serial keys and wait', async () => {
    const x1 = await publish(1, `, serial_key => 'acct:7'`);
    const x2 = (await sql<{ id: string }>(`select jobs.publish('ck.task', '{"v":2}', queue => 'ckq', dedupe_key => 'other')::text as id`))[0]!.id;
    const x3 = (await sql<{ id: string }>(`select jobs.publish('ck.task', '{"v":3}', queue => 'ckq', dedupe_key => 'busy',
                                             serial_key => 'acct:8')::text as id`))[0]!.id;
    expect((await sql<{ id: string }>(`select job_id::text as id from jobs.consume(3, queue => 'ckq') order by job_id`)).map((r) => r.id))
      .toEqual([x1, x2, x3]);
    await sql(`select jobs.cancel($1::bigint), jobs.cancel($2::bigint)`, [x1, x2]); // x3 runs on, not cancelled
    const [{ ids }] = await sql<{ ids: string[] }>(`select jobs.publish_arrays(array['ck.task', 'ck.task', 'ck.task', 'ck.task'],
      '[{"v":4}, {"v":5}, {"v":6}, {"v":7}]', queue => 'ckq',
      dedupe_keys => array['user:7:sync', 'other', 'busy', 'user:7:sync'])::text[] as ids`) as [{ ids: string[] }];
    const [n1, n2] = [ids[0]!, ids[1]!];
    expect(ids).toEqual([n1, n2, x3, n1]); // x3 still holds its key; a key's later position takes its first's id
    expect([x1, x2, x3]).not.toContain(n1);
    expect([x1, x2, x3]).not.toContain(n2);
    expect(await states()).toEqual([
      { id: x1, state: 'running', body: { v: 1 }, dedupe_key: null, serial_key: 'acct:7' },
      { id: x2, state: 'running', body: { v: 2 }, dedupe_key: null, serial_key: null },
      { id: x3, state: 'running', body: { v: 3 }, dedupe_key: 'busy', serial_key: 'acct:8' },
      // Behind x1 on its serial key (taken, as the position gave none); n2 has none to wait for.
      { id: n1, state: 'blocked', body: { v: 4 }, dedupe_key: 'user:7:sync', serial_key: 'acct:7' },
      { id: n2, state: 'pending', body: { v: 5 }, dedupe_key: 'other', serial_key: null }]);
    expect(await claim()).toEqual([n2]);
    await sql(`select jobs.nack($1::bigint, 'aborted')`, [x1]); // x1's drain reports: it ends cancelled, and n1 runs
    expect(await claim()).toEqual([n1]);
    expect(await sql(`select job_id::text as id, status, dedupe_key from jobs.job where job_id = $1`, [x1]))
      .toEqual([{ id: x1, status: 'cancelled', dedupe_key: null }]);
  });

  it('a bulk publish given its own serial key keeps it, and one taking more than 500 serial keys so is refused, writing nothing', async () => {
    const x1 = await publish(1, `, serial_key => 'acct:7'`);
    expect(await claim()).toEqual([x1]);
    await sql(`select jobs.cancel($1::bigint)`, [x1]);
    const [{ ids }] = await sql<{ ids: string[] }>(`select jobs.publish_arrays(array['ck.task'], '[{"v":2}]', queue => 'ckq',
      dedupe_keys => array['user:7:sync'], serial_keys => array['acct:9'])::text[] as ids`) as [{ ids: string[] }];
    expect(ids[0]).not.toBe(x1);
    expect((await states()).map((r) => [r.id, r.state, r.dedupe_key, r.serial_key]))
      .toEqual([[x1, 'running', null, 'acct:7'], [ids[0], 'pending', 'user:7:sync', 'acct:9']]);

    // 501 running jobs being cancelled, each with a serial key of its own: a bulk taking all their keys would lock 501.
    for (const [from, to] of [[1, 250], [251, 501]] as const) {
      await sql(`select jobs.publish_arrays(array_fill('ck.task'::text, array[${to - from + 1}]), queue => 'ckq',
        dedupe_keys => array(select 'd' || i from generate_series(${from}, ${to}) i),
        serial_keys => array(select 's' || i from generate_series(${from}, ${to}) i))`);
    }
    await sql(`select jobs.cancel_bulk(array(select job_id from jobs.consume(1000, queue => 'ckq')))`);
    expect(await sql(`select count(*)::int as n from jobs.job_queue
                      where dedupe_key like 'd%' and lease_until is not null and cancel_requested_at is not null`)).toEqual([{ n: 501 }]);
    const before = await sql(`select job_id, dedupe_key, serial_key from jobs.job_queue order by job_id`);
    const error = await sqlErrorOf(sql, `select jobs.publish_arrays(array_fill('ck.task'::text, array[501]), queue => 'ckq',
      dedupe_keys => array(select 'd' || i from generate_series(1, 501) i))`);
    expect(error).toMatchObject({ code: 'PD012', column: 'serial_keys',
      message: expect.stringMatching(/^serial_keys: must hold at most 500 distinct keys in one bulk publish, counting those its jobs take/) });
    expect(await sql(`select job_id, dedupe_key, serial_key from jobs.job_queue order by job_id`)).toEqual(before);
  });

  it("a bulk publish does not deadlock with the settle ending two cancelling jobs: a row the settle holds is skipped", async () => {
    const x1 = await publish(1);
    const x2 = (await sql<{ id: string }>(`select jobs.publish('ck.task', '{"v":2}', queue => 'ckq', dedupe_key => 'other')::text as id`))[0]!.id;
    const claimed = await sql<{ id: string; attempt: number }>(`select job_id::text as id, attempt from jobs.consume(2, queue => 'ckq') order by job_id`);
    expect(claimed.map((r) => r.id)).toEqual([x1, x2]);
    await sql(`select jobs.cancel($1::bigint), jobs.cancel($2::bigint)`, [x1, x2]);
    const bulk = (key: string) => `select (jobs.publish_arrays(array['ck.task'], '[{"v":3}]', queue => 'ckq',
                                           dedupe_keys => array['${key}']))[1]::text as id`;
    const t = new pg.Client({ connectionString: db.url });
    const settler = new pg.Client({ connectionString: db.url });
    await Promise.all([t.connect(), settler.connect()]);
    try {
      await t.query('begin');
      // The transaction's bulk takes x2's key (its row now held by the transaction)...
      expect((await t.query(bulk('other'))).rows[0].id).not.toBe(x2);
      // ...while a drain's settle of both locks x1, then waits for x2.
      const settlerPid = (await settler.query('select pg_backend_pid() as pid')).rows[0].pid as number;
      const settled = settler.query(`select jobs.settle_arrays($1::bigint[], $2::integer[], array['ack', 'ack']) as r`,
                                    [claimed.map((r) => r.id), claimed.map((r) => r.attempt)]);
      await until(async () => (await sql<{ w: string | null }>(`select wait_event_type as w from pg_stat_activity where pid = $1`,
                                                               [settlerPid]))[0]?.w === 'Lock', 'the settle to wait for x2');
      // x1's row is the settle's: its key is not taken, the holder answered, nothing waits.
      expect((await t.query(bulk('user:7:sync'))).rows[0].id).toBe(x1);
      await t.query('commit');
      expect(Number((await settled).rows[0].r.succeeded)).toBe(2);
    } finally {
      await Promise.all([t.end(), settler.end()]);
    }
  });

  // jobs.publish takes a holder's key on its first pass only, before any
  // lock. A later pass comes when its insert lost the key to a publish that
  // committed while it waited: that holder, past its expiry or asked to
  // cancel by then, is answered, not taken over.
  for (const [kind, holder] of [
    ['past its expiry', `select jobs.publish('ck.task', '{"v":1}', queue => 'ckq', dedupe_key => 'late',
                           now => now() - interval '1 hour', expires_at => now() - interval '59 minutes')::text as id`],
    ['asked to cancel', `select p.id::text as id, jobs.cancel(p.id) from (select jobs.publish('ck.task', '{"v":1}', queue => 'ckq',
                           dedupe_key => 'late') as id) p, jobs.consume(1, queue => 'ckq') c`],
  ] as const) {
    it(`jobs.publish answers a holder ${kind} that took the key while its insert waited: its second pass takes no key`, async () => {
      const a = new pg.Client({ connectionString: db.url });
      const b = new pg.Client({ connectionString: db.url });
      await Promise.all([a.connect(), b.connect()]);
      try {
        await a.query('begin');
        const first = (await a.query<{ id: string }>(holder)).rows[0]!.id;
        const bPid = (await b.query('select pg_backend_pid() as pid')).rows[0].pid as number;
        // B's first pass sees no holder (A's is uncommitted); its insert waits for A's index entry.
        const second = b.query<{ id: string }>(`select jobs.publish('ck.task', '{"v":2}', queue => 'ckq', dedupe_key => 'late')::text as id`);
        await until(async () => (await sql<{ w: string | null }>(`select wait_event_type as w from pg_stat_activity where pid = $1`,
                                                                 [bPid]))[0]?.w === 'Lock', "B's insert to wait for A");
        await a.query('commit');
        expect((await second).rows[0]!.id).toBe(first);
        expect((await sql(`select job_id::text as id, dedupe_key from jobs.job_queue where queue = 'ckq'`)))
          .toEqual([{ id: first, dedupe_key: 'late' }]);
        // The next publish's first pass takes the key.
        expect((await sql<{ id: string }>(`select jobs.publish('ck.task', '{"v":3}', queue => 'ckq', dedupe_key => 'late')::text as id`))[0]!.id)
          .not.toBe(first);
      } finally {
        await a.query('rollback').catch(() => {});
        await Promise.all([a.end(), b.end()]);
      }
    });
  }

  it('a job not yet running ends at once, as before: its key is free too', async () => {
    const first = await publish(1);
    expect(await sql(`select jobs.cancel_key('user:7:sync') as r`)).toEqual([{ r: 'cancelled' }]);
    expect(await publish(2)).not.toBe(first);
  });
});

describe('TypeScript: cancelByKey during a drain', () => {
  it('the republished job is a new one and runs; the cancelled one ends cancelled', async () => {
    let started!: () => void;
    const running = new Promise<void>((resolve) => { started = resolve; });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => { release = resolve; });
    const ran: unknown[] = [];
    const tasks = {
      ck: {
        task: async (body: { v: number }, ctx: JobContext) => {
          ran.push(body.v);
          if (body.v !== 1) return 'done';
          started();
          // Until the test has cancelled and republished, or the drain aborts it.
          await Promise.race([gate, new Promise((resolve) => ctx.signal.addEventListener('abort', resolve))]);
          throw new Error('stopped');
        },
      },
    };
    const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });
    const first = await queue.publish('ck.task', { v: 1 }, { queue: 'ckq', dedupeKey: 'acct:9', timeoutSeconds: 20 });
    const drained = queue.drain(5, Date.now() + 60_000, { queue: 'ckq' });
    await running;
    expect(await queue.cancelByKey('acct:9', 'superseded')).toBe('cancelling');
    const second = await queue.publish('ck.task', { v: 2 }, { queue: 'ckq', dedupeKey: 'acct:9', timeoutSeconds: 20 });
    expect(second).not.toBe(first);
    release();
    await drained;
    // A drain that started after the cancel runs the new job if the first drain had stopped claiming.
    await queue.drain(5, Date.now() + 60_000, { queue: 'ckq' });
    expect(ran.sort()).toEqual([1, 2]);
    expect((await queue.getJob(first))).toMatchObject({ state: 'cancelled', error: expect.stringMatching(/^cancelled: superseded/) });
    expect((await queue.getJob(second))).toMatchObject({ state: 'success', result: 'done' });
  });
});
