// A batch settle deletes its jobs in job_id order, the order in which a
// publish locks the dependencies it names (jobs.lock_dependencies). Deleted
// in the order the handlers returned, a settle of [b, a] and a publish
// depending on [a, b] deadlocked (SQLSTATE 40P01, one side rolled back):
// the publish held a and waited for b; the settle held b and waited for a.
// Forced interleaving, no timing: a third session holds b, the settle queues
// on it first, the publish (holding a) second; the third lets go.
import { beforeEach, describe, expect, it } from 'vitest';
import { outcomeArrays, SETTLE_ARRAYS_SQL, type Outcome } from '../src/outcome-arrays.js';
import { testDb } from './support/db.js';
import { lockSessions, waitUntilBlocked } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;

const session = lockSessions(db.url);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

describe('a batch settle and a publish depending on two of its jobs', () => {
  it('settled in the order the handlers returned (b before a): both commit, no deadlock', async () => {
    await sql(`select jobs.publish('a'), jobs.publish('b')`);
    const claimed = await sql<{ id: string; attempt: number }>(`select job_id::text as id, attempt from jobs.consume(10) order by job_id`);
    const [a, b] = claimed;
    const acks: Outcome[] = [b!, a!].map((j) => ({ id: j.id, attempt: j.attempt, outcome: 'ack', result: null, ms: 1 }));

    const holder = await session();
    const settler = await session();
    const publisher = await session();
    await holder.query('begin');
    await holder.query(`select 1 from jobs.job_queue where job_id = ${b!.id} for update`);
    const settled = settler.query(SETTLE_ARRAYS_SQL, [...outcomeArrays(acks), null])
      .then(() => 'ok', (err: { code?: string }) => err.code);
    await waitUntilBlocked(holder, settler.pid);
    const published = publisher.query(`select jobs.publish('after', depends_on => array[${a!.id}, ${b!.id}]::bigint[])`)
      .then(() => 'ok', (err: { code?: string }) => err.code);
    await waitUntilBlocked(holder, publisher.pid);
    await holder.query('commit');

    expect([await settled, await published]).toEqual(['ok', 'ok']); // 40P01 on one side before the fix
    expect(await sql(`select task, status from jobs.job order by job_id`)).toEqual([
      { task: 'a', status: 'success' }, { task: 'b', status: 'success' }]);
    // Both dependencies succeeded: the dependant is free to run.
    expect(await sql(`select task, waiting_deps from jobs.job_queue`)).toEqual([{ task: 'after', waiting_deps: 0 }]);
  });
});
