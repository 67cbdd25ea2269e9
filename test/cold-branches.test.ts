// sql/0045's rare branches of jobs.pick, jobs.settle_arrays and
// jobs.publish_keyed: a no-op drain's claims and settles, and a keyed
// publish no running holder stands in the way of, call none of them
// (counted with track_functions on the drain's own connection: a setting
// in another session counts nothing); each rare path still runs for the
// role docs/roles.md gives it (the helpers have no grant of their own:
// they run inside the security definer entry points).
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { createQueue, migrate } from '../src/index.js';
import { testDb, withClient } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const COLD = ['raise_pick_isolation', 'pick_stepped', 'pick_filtered', 'raise_bad_outcomes', 'settle_releases',
  'settle_stale', 'check_busy_passes', 'wait_busy', 'keyed_serials', 'keyed_late'];
// Roles are cluster-wide: a prefix of this run's own.
const prefix = `k${Date.now().toString(36)}`;

/** Calls of sql/0045's functions (and of the entry points given) in one transaction of its own, run as role. */
async function callsAs(role: string, texts: string[], entry: string[] = [], client?: pg.Client, begin = 'begin') {
  const run = async (c: pg.Client) => {
    await c.query(begin);
    await c.query(`set local track_functions = 'all'`);
    await c.query(`set local role ${role}`);
    let error: pg.DatabaseError | undefined;
    let rows: Record<string, unknown>[] = [];
    await c.query('savepoint s');
    try {
      for (const text of texts) rows = (await c.query(text)).rows;
    } catch (e) {
      error = e as pg.DatabaseError;
      await c.query('rollback to savepoint s');
    }
    await c.query('reset role');
    const { rows: calls } = await c.query<{ f: string; n: number }>(
      `select funcname as f, calls::int as n from pg_stat_xact_user_functions where schemaname = 'jobs' and funcname = any($1) and calls > 0`,
      [[...COLD, ...entry]]);
    await c.query('commit');
    return { rows, error, calls: Object.fromEntries(calls.map((r) => [r.f, r.n])) };
  };
  return client ? run(client) : withClient(db.url, run);
}

beforeAll(async () => {
  await migrate(db.driver, { roles: prefix }); // already migrated: only the roles
  await sql(`select jobs.create_queue('g', group_concurrency => 1), jobs.create_queue('m', max_running => 5)`);
});

describe('the hot paths call none of them', () => {
  it("a drain's claims and settles (acks, and nacks retried)", async () => {
    await sql(`alter database ${db.name} set track_functions = 'all'`);
    const driver = pgDriver(db.url, { max: 1 }); // one backend: its counts flushed on demand below
    try {
      const q = createQueue({ driver, tasks: { noop: async () => null, bad: () => { throw new Error('no') } } });
      await q.publishBulk([...Array.from({ length: 2000 }, () => ({ task: 'noop' })), ...Array.from({ length: 20 }, () => ({ task: 'bad' }))]);
      const report = await q.drain(500, Date.now() + 120_000);
      expect(report).toMatchObject({ claimed: 2020, succeeded: 2000, retried: 20, released: 0, stale: 0 });
      await driver.query('select pg_stat_force_next_flush()');
      await driver.query('select pg_stat_clear_snapshot()');
      const { rows } = await driver.query<{ f: string; n: number }>(
        `select funcname as f, calls::int as n from pg_stat_user_functions where schemaname = 'jobs' and funcname = any($1) and calls > 0`,
        [[...COLD, 'claim_json', 'pick', 'settle_arrays']]);
      const calls = Object.fromEntries(rows.map((r) => [r.f, r.n]));
      // Counted at all: the claims and their settles.
      expect(calls.claim_json).toBeGreaterThanOrEqual(5);
      expect(calls.pick).toBe(calls.claim_json);
      expect(calls.settle_arrays).toBeGreaterThanOrEqual(4);
      expect(Object.keys(calls).filter((f) => COLD.includes(f))).toEqual([]);
    } finally {
      await driver.close();
      await sql(`alter database ${db.name} reset track_functions`);
    }
  });

  it('a keyed publish: dedupe, serial and keep_waiting keys, a waiting holder answered', async () => {
    await sql('truncate jobs.job_queue, jobs.job');
    const held = await sql<{ id: string }>(`select jobs.publish('t', dedupe_key => 'w1')::text as id`);
    const { rows, calls } = await callsAs(`${prefix}_publisher`, [`select jobs.publish_arrays(array['t', 't', 't'],
        dedupe_keys => array['w1', 'd2', null], serial_keys => array[null, 's2', 's3'],
        dedupe_modes => array['keep_waiting', 'keep', null])::text[] as ids`], ['publish_keyed']);
    expect((rows[0]!.ids as string[])[0]).toBe(held[0]!.id);
    expect(calls).toEqual({ publish_keyed: 1 });
  });
});

describe('each rare path, as the role that takes it', () => {
  const worker = `${prefix}_worker`;

  it('a worker: a filtered claim, a group-limited claim past its head, a claim refused outside READ COMMITTED', async () => {
    await sql('truncate jobs.job_queue, jobs.job');
    await sql(`select jobs.publish('t', attributes => '{"a": 1}'), jobs.publish('t', queue => 'g', group_id => 'A'),
                      jobs.publish('t', queue => 'g', group_id => 'A'), jobs.publish('t', queue => 'g', group_id => 'B')`);
    const filtered = await callsAs(worker, [`select job_id from jobs.claim(5, filter => '{"a": 1}')`]);
    expect(filtered.rows).toHaveLength(1);
    expect(filtered.calls).toEqual({ pick_filtered: 1 });
    // The second claim finds group A's second job at the head, A at its cap: it takes B's, stepping over one.
    const stepped = await callsAs(worker, [`select jobs.claim_json(1, queue => 'g', worker_id => 'w')`,
                                           `select jobs.claim_json(1, queue => 'g', worker_id => 'w') #>> '{jobs,id}' as id`]);
    expect(stepped.rows).toEqual([{ id: expect.any(String) }]);
    expect(stepped.calls).toEqual({ pick_stepped: 1 });
    expect(await sql(`select group_id from jobs.job_queue where job_id = $1`, [stepped.rows[0]!.id])).toEqual([{ group_id: 'B' }]);
    const refused = await callsAs(worker, [`select jobs.claim(5, queue => 'm')`], [], undefined, 'begin isolation level repeatable read');
    expect(refused.error).toMatchObject({ code: '0A000',
      message: "a claim of queue 'm' (max_running 5) must run in a READ COMMITTED transaction, not REPEATABLE READ" });
  });

  it('a worker: a settle with a release, a snooze, a stale outcome (with and without worker_id), a bad outcome', async () => {
    await sql('truncate jobs.job_queue, jobs.job');
    await sql(`select jobs.publish('t'), jobs.publish('t'), jobs.publish('t')`);
    const settled = await callsAs(worker, [`create temp table c on commit drop as select job_id from jobs.claim(3)`,
      `select jobs.settle_arrays(array(select job_id from c order by job_id) || 999999::bigint, array[1, 1, 1, 1],
         array['release', 'release', 'ack', 'ack'], retry_at => array[null, now() + interval '1 hour', null, null]::timestamptz[]) as r`]);
    expect(settled.rows[0]!.r).toEqual({ succeeded: 1, failed: 0, cancelled: 0, retried: 0, released: 2, stale: 1, stale_ids: '999999:1' });
    expect(settled.calls).toEqual({ settle_releases: 1, settle_stale: 1 });
    const resent = await callsAs(worker, [`select jobs.settle_arrays(array[999999::bigint], array[1], array['ack'], worker_id => 'w') as r`]);
    expect(resent.rows[0]!.r).toMatchObject({ stale: 1, stale_ids: '999999:1' });
    expect(resent.calls).toEqual({ settle_stale: 1 });
    const bad = await callsAs(worker, [`select jobs.settle_arrays(array[1::bigint], array[1], array['nope'])`]);
    expect(bad.error).toMatchObject({ code: 'PD008', column: 'outcomes',
      message: 'outcomes: every element needs id, attempt and an outcome of ack, nack, fail or release (got nope)' });
  });

  it('a publisher: a keep_waiting bulk answered with a job written since its pass that started meanwhile (busy, waited for, done again)', async () => {
    await sql('truncate jobs.job_queue, jobs.job');
    const a = new pg.Client({ connectionString: db.url });
    const b = new pg.Client({ connectionString: db.url });
    await a.connect();
    await b.connect();
    try {
      // A (not taking the key's lock: keep) writes key K and starts its job, uncommitted: B's insert waits for it.
      await a.query('begin');
      const first = (await a.query<{ id: string }>(`select jobs.publish('t', dedupe_key => 'K', serial_key => 'S')::text as id`)).rows[0]!.id;
      await a.query('select jobs.consume(1)');
      const bPid = (await b.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
      const taking = callsAs(`${prefix}_publisher`, [`select jobs.publish_arrays(array['t'], dedupe_keys => array['K'],
        dedupe_modes => array['keep_waiting'])::text[] as ids`], [], b);
      for (let i = 0; ; i++) {
        const [row] = await sql<{ w: string | null }>(`select wait_event_type as w from pg_stat_activity where pid = $1`, [bPid]);
        if (row?.w === 'Lock') break;
        if (i > 600) throw new Error("B's publish never waited for A");
        await new Promise((r) => setTimeout(r, 50));
      }
      await a.query('commit');
      const { rows, error, calls } = await taking;
      expect(error).toBeUndefined();
      // A's job had started: not answered; the key taken from it, its serial key with it.
      const id = (rows[0]!.ids as string[])[0];
      expect(id).not.toBe(first);
      expect(calls).toEqual({ keyed_late: 1, check_busy_passes: 1, wait_busy: 1, keyed_serials: 2 });
      expect(await sql(`select job_id::text as id, dedupe_key, serial_key, serial_wait from jobs.job_queue order by job_id`)).toEqual([
        { id: first, dedupe_key: null, serial_key: 'S', serial_wait: false }, { id, dedupe_key: 'K', serial_key: 'S', serial_wait: true }]);
    } finally {
      await a.query('rollback').catch(() => {});
      await Promise.all([a.end(), b.end()]);
    }
  });
});
