// A publish with depends_on racing a redrive of one of its dependencies:
// jobs.lock_dependencies locks the queued ones in one statement and reads
// the history in the next, a later snapshot. A redrive committing between
// the two moved the failed dependency from jobs.job back to jobs.job_queue,
// in neither read: the publish answered PD013 'job N does not exist' for a
// job that exists (and waits to run again). Now it is locked once found
// queued again, and the publish waits for it; or, redriven after the whole
// check, it answers 'already ended as failure'. A real PostgreSQL.
import type pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { lockSessions, waitUntilBlocked } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

const id = async (text: string) => (await sql<{ id: string }>(text))[0]!.id;
/** A failed job (a dead letter redrive puts back). */
const failed = async () => {
  const f = await id(`select jobs.publish('dep', max_retries => 0)::text as id`);
  await sql(`select jobs.fail(array[$1::bigint], 'boom')`, [f]);
  return f;
};

describe('depends_on racing a redrive of a dependency', () => {
  it('redriven between the lock and the history read: accepted, waiting for it (was: does not exist)', async () => {
    const [holder, publisher] = [await session(), await session()];
    const x = await id(`select jobs.publish('x')::text as id`);
    const f = await failed();
    // The lock statement waits for x's row, its snapshot taken before the redrive.
    await holder.query('begin');
    await holder.query('select 1 from jobs.job_queue where job_id = $1 for update', [x]);
    const published = publisher.query(`select jobs.publish('child', depends_on => $1::bigint[])::text as id`, [[x, f]])
      .then((r) => ({ id: r.rows[0].id as string }), (e: pg.DatabaseError) => ({ error: `${e.code} ${e.message}` }));
    await waitUntilBlocked(holder, publisher.pid);
    expect(await sql(`select jobs.redrive(job_ids => array[$1::bigint]) as n`, [f])).toEqual([{ n: 1 }]);
    await holder.query('rollback');
    const r = await published;
    expect(r).toEqual({ id: expect.any(String) });
    expect(await sql(`select waiting_deps from jobs.job_queue where job_id = $1`, [(r as { id: string }).id]))
      .toEqual([{ waiting_deps: 2 }]);
  });
});
