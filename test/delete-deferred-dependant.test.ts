// jobs.delete_jobs of a dependant whose cancel a cascade deferred (its
// serial key held elsewhere when its dependency failed: cancel requested,
// lease passed, attempt 0) answered it in `running` ("a drain holds it:
// cancel it"), though it never ran and no drain holds it. It is a waiting
// job whose end is pending: deleted as one, counted in `waiting`, leaving
// no history; its own dependants end cancelled and its serial key moves on.
import { describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { deferredDependant } from './support/deferred-dependant.js';
import { lockSessions } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);
const one = async (text: string, params?: unknown[]) => (await sql(text, params))[0]!;

describe('delete_jobs of a deferred dependant', () => {
  it('deleted and counted as waiting, not running; its dependant cancelled, its key handed on', async () => {
    // hashtext('low') < hashtext('high'): the parent's cascade only tries 'low', held by an open publish: child deferred.
    let grand = '';
    const { parent, child, later } = await deferredDependant(sql, session, async (child) => {
      grand = (await one(`select jobs.publish('grand', depends_on => array[$1::bigint])::text as id`, [child])).id as string;
    });

    expect(await one(`select waiting, ended, running::text[] from jobs.delete_jobs(array[$1::bigint])`, [child]))
      .toEqual({ waiting: 1, ended: 0, running: [] });
    expect(await sql(`select job_id::text as id from jobs.job_queue where job_id > 0 order by job_id`)).toEqual([{ id: later }]);
    expect(await sql(`select job_id::text as id, status, error from jobs.job where job_id <> $1 order by job_id`, [parent]))
      .toEqual([{ id: grand, status: 'cancelled', error: `cancelled: dependency ${child} did not succeed` }]);
    // 'low' moved on: the later job is its head, and runs.
    expect(await sql(`select job_id::text as id from jobs.consume(5)`)).toEqual([{ id: later }]);
  });
});
