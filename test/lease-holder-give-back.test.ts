// lease_holder (jobs.claim_json's holder: one token per drain() call) names a
// drain only while the row is leased: every update that ends a delivery but
// keeps the job in jobs.job_queue clears it in the same statement. A stale
// token left on a waiting job made any passed lease written on it later (a
// deferral's) look like a delivery of that drain, whose own claims leave such
// leases to its timers (jobs.expire_due). Over a real PostgreSQL, in SQL.
import { beforeEach, expect, it } from 'vitest';
import { sqlErrorOf, testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const HOLDER = 7;
beforeEach(async () => void (await sql('truncate jobs.job_queue, jobs.job')));

/** Publishes a job and claims it as a drain call with HOLDER would; returns its id. */
async function claimed(): Promise<string> {
  const { id } = (await sql<{ id: string }>(`select jobs.publish('t', null, max_retries => 3)::text as id`))[0]!;
  const { claim } = (await sql<{ claim: { count: number } }>(
    `select jobs.claim_json(1, worker_id => 'w', holder => $1) as claim`, [HOLDER]))[0]!;
  expect(claim.count).toBe(1);
  expect(await holderOf(id)).toEqual({ attempt: 1, leased: true, lease_holder: String(HOLDER) });
  return id;
}

const holderOf = async (id: string) => (await sql(
  `select attempt, lease_until is not null as leased, lease_holder::text from jobs.job_queue where job_id = $1`, [id]))[0];

const settle = (id: string, outcome: string, retryAt: string | null = null) => sql(
  `select jobs.settle_arrays(array[$1::bigint], array[1], array[$2], errors => array['boom'],
                             retry_at => array[$3::timestamptz], worker_id => 'w')`, [id, outcome, retryAt]);

it.each([
  ["a nack's retry (jobs.settle_arrays)", (id: string) => settle(id, 'nack', null), 1],
  ['a release (jobs.settle_arrays)', (id: string) => settle(id, 'release'), 0],
  ['a snooze: a release with retry_at (jobs.settle_arrays)', (id: string) => settle(id, 'release', '2100-01-01'), 0],
  ["a drain's settle sent with its claim (jobs.claim_json)", (id: string) => sql(
    `select jobs.claim_json(1, worker_id => 'w', ids => array[$1::bigint], attempts => array[1], outcomes => array['nack'],
                            errors => array['boom'], retry_at => array[timestamptz '2100-01-01'], holder => $2)`,
    [id, HOLDER]), 1],
  ['jobs.nack', (id: string) => sql(`select jobs.nack($1::bigint, 'boom')`, [id]), 1],
  ['jobs.release', (id: string) => sql(`select jobs.release(array[$1::bigint])`, [id]), 0],
  ["an expired lease's retry (jobs.expire_due)", async (id: string) => {
    await sql(`update jobs.job_queue set lease_until = now() - interval '1 second' where job_id = $1`, [id]);
    expect(await sql('select jobs.expire() as n')).toEqual([{ n: 1 }]);
  }, 1],
] as const)('%s leaves the job waiting with no lease_holder', async (_path, giveBack, attempt) => {
  const id = await claimed();
  await giveBack(id);
  // Before, each kept the holder of the delivery it ended.
  expect(await holderOf(id)).toEqual({ attempt, leased: false, lease_holder: null });
});

it('an update ending a lease but keeping its holder is refused (the check job_queue_lease_holder_leased), the row unchanged', async () => {
  const id = await claimed();
  // As a give-back path that forgot lease_holder would.
  const e = await sqlErrorOf(sql, `update jobs.job_queue set lease_until = null, started_at = null where job_id = $1`, [id]);
  expect(e.code).toBe('23514');
  expect(e.constraint).toBe('job_queue_lease_holder_leased');
  expect(await holderOf(id)).toEqual({ attempt: 1, leased: true, lease_holder: String(HOLDER) });
});

it("a serial-key head nacked by a drain, then rescheduled to attempt 0 and deferred by jobs.cancel_bulk, is ended by that drain's claim", async () => {
  await sql(`select jobs.create_queue('other')`);
  // 500 keyed heads that never ran, in a queue the claim below does not take: cancel_bulk ends these at once.
  await sql(`select count(jobs.publish('head', null, serial_key => 'k:' || g, queue => 'other'))
             from generate_series(1, 500) g`);
  // The 501st keyed head (the greatest id): the one cancel_bulk defers.
  const { id } = (await sql<{ id: string }>(
    `select jobs.publish('t', null, serial_key => 'mine', max_retries => 3)::text as id`))[0]!;
  await sql(`select jobs.claim_json(1, queue => 'default', worker_id => 'w', holder => $1)`, [HOLDER]);
  expect(await settle(id, 'nack', '2100-01-01')).toEqual([{ settle_arrays: expect.objectContaining({ retried: 1 }) }]);
  // Attempt 0 again: a head that never ran, for cancel_bulk to defer.
  await sql(`select jobs.reschedule(array[$1::bigint], attempt => 0)`, [id]);
  expect(await sql(`select jobs.cancel_bulk(array(select job_id from jobs.job_queue), 'import undone') as n`))
    .toEqual([{ n: 501 }]);
  expect(await sql(`select cancel_requested_at is not null as deferred, lease_until <= now() as passed
                    from jobs.job_queue where job_id = $1`, [id])).toEqual([{ deferred: true, passed: true }]);
  // The drain that nacked it claims again: its expiry ends the deferred head, a lease of no drain's.
  await sql(`select jobs.claim_json(1, queue => 'default', worker_id => 'w', holder => $1)`, [HOLDER]);
  expect(await sql('select status, error from jobs.job where job_id = $1', [id]))
    .toEqual([{ status: 'cancelled', error: 'cancelled: import undone' }]);
});
