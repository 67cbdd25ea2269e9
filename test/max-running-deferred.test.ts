// max_running's slot is a delivery's lease (jobs.running_slot, counted by
// jobs.running_count): a job leased at attempt 0 is no delivery but a
// serial-key head whose cancel was deferred (jobs.cancel_bulk past its 500
// keys; a cascade's dependants likewise), which never runs again and takes
// no slot (as group_concurrency and jobs.create_queue count them). One
// that a claim handed out and a release (or snooze) gave back before that
// kept its slot's row, which counted it as running while no claim could
// end it (its row held): the queue ran nothing. On a real PostgreSQL.
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { lockSessions } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);
const ids = async (text: string, params?: unknown[]) => (await sql<{ id: string }>(text, params)).map((r) => r.id);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.running_slot');
  await sql(`delete from jobs.queue where name <> 'default'`);
  await sql(`select jobs.create_queue('one', max_running => 1)`);
});

describe('max_running counts deliveries, not a deferred cancel', () => {
  it('a job given back, then its cancel deferred (leased at attempt 0), takes no slot while it waits to end', async () => {
    // 500 serial-key heads elsewhere, then the limited queue's own head: jobs.cancel_bulk ends 500 heads, defers the rest.
    const heads = await ids(`select unnest(jobs.publish_arrays(array_fill('other'::text, array[500]),
                               serial_keys => array(select 'h' || i from generate_series(1, 500) i)))::text as id`);
    const [given] = await ids(`select jobs.publish('one.job', queue => 'one', serial_key => 'g')::text as id`);
    expect(await ids(`select job_id::text as id from jobs.claim(1, queue => 'one')`)).toEqual([given]);
    expect(await sql(`select jobs.release(array[$1::bigint]) as n`, [given])).toEqual([{ n: 1 }]);
    expect(await sql(`select jobs.cancel_bulk($1::bigint[]) as n`, [[...heads, given]])).toEqual([{ n: 501 }]);
    expect(await sql(`select attempt, lease_until is not null as leased, cancel_requested_at is not null as cancelling
                      from jobs.job_queue where job_id = $1`, [given])).toEqual([{ attempt: 0, leased: true, cancelling: true }]);
    const [next] = await ids(`select jobs.publish('one.job', queue => 'one')::text as id`);
    // Its row held (an admin call on it, say): no claim's expiry can end it meanwhile.
    const holder = await session();
    await holder.query('begin');
    try {
      await holder.query(`select 1 from jobs.job_queue where job_id = $1 for update`, [given]);
      // Nothing of the queue runs: its one slot is free (unfixed: none, the queue at max_running).
      expect(await sql(`select r->'count' as count, r->'atMaxRunning' as at from jobs.claim_json(1, queue => 'one') r`))
        .toEqual([{ count: 1, at: false }]);
      expect(await sql(`select job_id::text as id from jobs.job_queue where queue = 'one' and attempt > 0`)).toEqual([{ id: next }]);
    } finally {
      await holder.query('rollback');
    }
    // Ended by the next expiry, as cancelled; the claimed job holds the slot.
    expect(await sql(`select jobs.expire() as n`)).toEqual([{ n: 1 }]);
    expect(await sql(`select status from jobs.job where job_id = $1`, [given])).toEqual([{ status: 'cancelled' }]);
    expect(await ids(`select job_id::text as id from jobs.claim(1, queue => 'one')`)).toEqual([]);
  });
});
