// jobs.fail of a blocked job (waiting for a dependency) ends it as a dead
// letter and drops its dependency rows (jobs.end_waiting), so a redrive puts
// it back without them: it runs at once, its dependency still waiting
// (README "Changing queued jobs", jobs.fail), as a cancelled dependant
// redriven with include_cancelled does. Pinned so a change of either is seen.
import { describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const id = async (text: string, params?: unknown[]) => (await sql<{ id: string }>(text, params))[0]!.id;

describe('a blocked job failed by hand, then redriven', () => {
  it('comes back without its dependencies and is handed out while its dependency still waits', async () => {
    const a = await id(`select jobs.publish('a', scheduled_at => now() + interval '1 hour')::text as id`);
    const b = await id(`select jobs.publish('b', depends_on => array[$1::bigint])::text as id`, [a]);
    expect(await sql(`select jobs.fail(array[$1::bigint], 'by hand') as n`, [b])).toEqual([{ n: 1 }]);
    expect(await sql(`select count(*)::int as n from jobs.dependency`)).toEqual([{ n: 0 }]);
    expect(await sql(`select jobs.redrive(job_ids => array[$1::bigint]) as n`, [b])).toEqual([{ n: 1 }]);
    expect(await sql(`select job_id::text as id from jobs.consume(5)`)).toEqual([{ id: b }]);
    expect(await sql(`select job_id::text as id, lease_until is null as waiting from jobs.job_queue where job_id = $1`, [a]))
      .toEqual([{ id: a, waiting: true }]);
  });
});
