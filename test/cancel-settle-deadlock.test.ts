// jobs.cancel against the settle of a job it is tied to (a dependency, a
// serial key's head). A settle that ends a job holds its dependency rows and
// then locks its dependants (to cancel them after a failure, or to count a
// success); jobs.cancel of a dependant locked it, then waited for those
// dependency rows: a deadlock (SQLSTATE 40P01), one side rolled back.
// First the exact interleaving, forced with a third session holding the
// dependant's row; then many rounds of the two calls at once.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { lockSessions, waitUntilBlocked } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;

const session = lockSessions(db.url);

const one = async (text: string, params?: unknown[]) => (await sql(text, params))[0]!;
const publish = async (opts = '') => (await one(`select jobs.publish('t', '{}'${opts})::text as id`)).id as string;
/** Claims the one claimable job; returns its delivery. */
async function claim(): Promise<{ id: string; attempt: number }> {
  const rows = await sql<{ id: string; attempt: number }>(`select job_id::text as id, attempt from jobs.consume(1)`);
  expect(rows).toHaveLength(1);
  return rows[0]!;
}
const settleSql = `select jobs.settle_arrays(array[$1::bigint], array[$2::int], array[$3::text], errors => array['boom'])`;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

describe('jobs.cancel of a dependant while its dependency settles', () => {
  // nack with no retries left: A fails, and its settle cancels B and C; ack: A succeeds, and its settle unblocks B.
  it.each([
    { outcome: 'nack', status: 'failure', answers: [null, 'cancelled'] },
    { outcome: 'ack', status: 'success', answers: ['cancelled'] },
  ])('forced interleaving, $outcome: cancel queues for the dependant B, then the settle, holding B\'s dependency row; no deadlock', async ({ outcome, status, answers }) => {
    const a = await publish(`, max_retries => 0`);
    const b = await publish(`, depends_on => array[${a}]`);
    const c = await publish(`, depends_on => array[${b}]`);
    const delivery = await claim();
    expect(delivery.id).toBe(a);
    const [holder, canceller, settler, watcher] = await Promise.all([session(), session(), session(), session()]);

    // B's row held elsewhere: the cancel queues for it first, then the settle (holding A's dependency rows).
    await holder.query('begin');
    await holder.query('select 1 from jobs.job_queue where job_id = $1 for update', [b]);
    const cancel = canceller.query<{ r: string | null }>(`select jobs.cancel($1::bigint, 'race') as r`, [b])
      .then((r) => r.rows[0]!.r, (e: pg.DatabaseError) => e);
    await waitUntilBlocked(watcher, canceller.pid);
    const settle = settler.query(settleSql, [a, delivery.attempt, outcome]).then((r) => r.rows[0], (e: pg.DatabaseError) => e);
    await waitUntilBlocked(watcher, settler.pid);
    await holder.query('commit');
    const [cancelled, settled] = await Promise.all([cancel, settle]);

    expect([cancelled, settled].filter((x) => x instanceof Error).map((e) => (e as pg.DatabaseError).code)).toEqual([]);
    expect(settled).toEqual({ settle_arrays: expect.objectContaining(status === 'success' ? { succeeded: 1 } : { failed: 1 }) });
    // Whoever ended B, B and its dependant C end as cancelled; nothing is left queued or blocked.
    expect(answers).toContain(cancelled);
    expect(await sql(`select job_id::text as id, status from jobs.job order by job_id`))
      .toEqual([{ id: a, status }, { id: b, status: 'cancelled' }, { id: c, status: 'cancelled' }]);
    expect(await sql('select job_id from jobs.job_queue union all select job_id from jobs.dependency')).toEqual([]);
  });
});

describe('many rounds of jobs.cancel and a settle at once', () => {
  const ROUNDS = 400;

  /** Runs `settle` and `cancel` together each round; returns the deadlocks seen and the cancels' answers. */
  async function race(setup: () => Promise<{ settle: unknown[]; cancel: string }>, check: () => Promise<void>) {
    const [s1, s2] = await Promise.all([session(), session()]);
    let deadlocks = 0;
    const answers = new Set<string | null>();
    for (let i = 0; i < ROUNDS; i++) {
      await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
      const { settle, cancel } = await setup();
      // Who starts first changes from round to round.
      const settleCall = () => s1.query(settleSql, settle);
      const cancelCall = () => s2.query(`select jobs.cancel($1::bigint, 'race') as r`, [cancel]);
      const results = await Promise.allSettled(i % 2 ? [settleCall(), cancelCall()] : [cancelCall(), settleCall()]);
      for (const r of results) {
        if (r.status === 'rejected') {
          if ((r.reason as pg.DatabaseError).code === '40P01') deadlocks++;
          else throw r.reason;
        } else if ('r' in (r.value.rows[0] ?? {})) {
          answers.add(r.value.rows[0].r);
        }
      }
      if (results.every((r) => r.status === 'fulfilled')) await check();
    }
    return { deadlocks, answers };
  }

  it('a failing dependency (no retries left) and cancel of its dependant B (with a dependant C)', async () => {
    let ids: string[] = [];
    const { deadlocks } = await race(async () => {
      const a = await publish(`, max_retries => 0`);
      const b = await publish(`, depends_on => array[${a}]`);
      const c = await publish(`, depends_on => array[${b}]`);
      const d = await claim();
      ids = [a, b, c];
      return { settle: [a, d.attempt, 'nack'], cancel: b };
    }, async () => {
      expect(await sql(`select job_id::text as id, status from jobs.job order by job_id`)).toEqual(
        [{ id: ids[0], status: 'failure' }, { id: ids[1], status: 'cancelled' }, { id: ids[2], status: 'cancelled' }]);
      expect(await sql('select job_id from jobs.job_queue union all select job_id from jobs.dependency')).toEqual([]);
    });
    expect(deadlocks).toBe(0);
  }, 120_000);

  it('a succeeding dependency and cancel of its dependant B (with a dependant C)', async () => {
    let ids: string[] = [];
    const { deadlocks, answers } = await race(async () => {
      const a = await publish();
      const b = await publish(`, depends_on => array[${a}]`);
      const c = await publish(`, depends_on => array[${b}]`);
      const d = await claim();
      ids = [a, b, c];
      return { settle: [a, d.attempt, 'ack'], cancel: b };
    }, async () => {
      expect(await sql(`select job_id::text as id, status from jobs.job order by job_id`)).toEqual(
        [{ id: ids[0], status: 'success' }, { id: ids[1], status: 'cancelled' }, { id: ids[2], status: 'cancelled' }]);
      expect(await sql('select job_id from jobs.job_queue union all select job_id from jobs.dependency')).toEqual([]);
    });
    expect(deadlocks).toBe(0);
    // B never ended before the cancel: with no drain to claim it, every cancel cancelled it.
    expect([...answers]).toEqual(['cancelled']);
  }, 120_000);

  it('a serial key\'s head settles while the job waiting behind it is cancelled: the key passes to the third', async () => {
    let ids: string[] = [];
    const { deadlocks, answers } = await race(async () => {
      ids = [await publish(`, serial_key => 'k'`), await publish(`, serial_key => 'k'`), await publish(`, serial_key => 'k'`)];
      const d = await claim();
      return { settle: [ids[0], d.attempt, 'ack'], cancel: ids[1]! };
    }, async () => {
      expect(await sql(`select job_id::text as id, status from jobs.job order by job_id`))
        .toEqual([{ id: ids[0], status: 'success' }, { id: ids[1], status: 'cancelled' }]);
      expect(await sql(`select job_id::text as id, serial_wait from jobs.job_queue`)).toEqual([{ id: ids[2], serial_wait: false }]);
    });
    expect(deadlocks).toBe(0);
    expect([...answers]).toEqual(['cancelled']);
  }, 120_000);
});
