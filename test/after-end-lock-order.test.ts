// jobs.after_end locks the dependants it changes first, all of them (those
// cancelled in turn too), in job_id order. Locked level by level in plan
// order, two failures sharing dependants deadlocked (SQLSTATE 40P01, one
// side rolled back): each held a dependant the other waited for.
// Forced interleaving, no timing: a third session holds one dependency row,
// so the first settle stops while it holds its first level; the second then
// runs up to its wait; the third lets go.
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { lockSessions, waitUntilBlocked } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;

const session = lockSessions(db.url);

const one = async (text: string) => (await sql(text))[0]!;
const publish = async (task: string, opts = '') => (await one(`select jobs.publish('${task}', '{}'${opts})::text as id`)).id as string;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

describe('two failures whose dependants cross (a diamond, two levels deep)', () => {
  it('settle at once: both commit, every dependant cancelled, no deadlock', async () => {
    // b < c < e < d < x:  e needs c;  d needs b and e;  x needs d and c.
    // b's failure cancels d, then x; c's cancels e and x, then d.
    const b = await publish('b', ', max_retries => 0');
    const c = await publish('c', ', max_retries => 0');
    const e = await publish('e', `, depends_on => array[${c}]`);
    const d = await publish('d', `, depends_on => array[${b}, ${e}]`);
    const x = await publish('x', `, depends_on => array[${d}, ${c}]`);
    expect((await sql(`select job_id::text as id from jobs.consume(10) order by 1`)).map((r) => r.id)).toEqual([b, c]);

    const holder = await session();
    const t1 = await session();
    const t2 = await session();
    // The holder keeps the dependency row d -> x: b's settle stops there, holding d.
    await holder.query('begin');
    await holder.query(`select 1 from jobs.dependency where depends_on = ${d} and job_id = ${x} for update`);
    await t1.query('begin');
    const first = t1.query(`select jobs.nack(${b}::bigint, 'b failed')`).then(() => 'ok', (err: { code?: string }) => err.code);
    await waitUntilBlocked(holder, t1.pid);
    // c's settle runs until it waits for a dependant b's settle holds.
    await t2.query('begin');
    const second = t2.query(`select jobs.nack(${c}::bigint, 'c failed')`).then(() => 'ok', (err: { code?: string }) => err.code);
    await waitUntilBlocked(holder, t2.pid);
    await holder.query('commit');

    const r1 = await first;
    await t1.query(r1 === 'ok' ? 'commit' : 'rollback');
    const r2 = await second;
    await t2.query(r2 === 'ok' ? 'commit' : 'rollback');
    expect([r1, r2]).toEqual(['ok', 'ok']); // 40P01 (deadlock_detected) on one side before the fix

    expect(await sql(`select task, status from jobs.job order by job_id`)).toEqual([
      { task: 'b', status: 'failure' }, { task: 'c', status: 'failure' },
      { task: 'e', status: 'cancelled' }, { task: 'd', status: 'cancelled' }, { task: 'x', status: 'cancelled' },
    ]);
    expect(await one(`select (select count(*) from jobs.job_queue)::int as queued`)).toEqual({ queued: 0 });
  });
});
