// A job a drain gave back (a SnoozeJob's release: its attempt back to 0) kept
// that drain's holder token (lease_holder) while it waited; the release now
// clears it, as every give-back does (lease-holder-give-back.test.ts). jobs.cancel_bulk
// defers the serial-key heads past its bound that never ran (attempt 0) by
// writing them a passed lease, for the next claims' expiry to end them as
// cancelled: such a lease is no delivery of any drain's, so every claim must
// end it, the drain that gave the job back included. Over a real PostgreSQL;
// no timing is asserted: the drain's claims are held back by a job the test
// holds, so the claim after it is the first to see the deferred lease.
import { expect, it, onTestFinished } from 'vitest';
import { createQueue, SnoozeJob } from '../src/index.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const gate = () => {
  let open!: () => void;
  const shut = new Promise<void>((resolve) => (open = resolve));
  return { open, shut };
};

it("the drain that gave a job back ends its deferred cancel (jobs.cancel_bulk past its bound), as any claim does", async () => {
  await sql(`select jobs.create_queue('other')`);
  // 500 keyed heads that never ran, in a queue no drain here takes: cancel_bulk ends these at once.
  await sql(`select count(jobs.publish('head', null, serial_key => 'k:' || g, queue => 'other'))
             from generate_series(1, 500) g`);
  const [blocking, letGo, markerRan] = [gate(), gate(), gate()];
  const q = createQueue({ driver: { ...db.driver, close: async () => {} } });
  q.defineTask('snoozer', async () => { throw new SnoozeJob({ delayMs: 3_600_000 }); });
  q.defineTask('blocker', async () => { blocking.open(); await letGo.shut; });
  q.defineTask('marker', async () => markerRan.open());
  // The 501st keyed head (the greatest id): the one cancel_bulk defers.
  const id = await q.publish('snoozer', null, { serialKey: 'snoozed' });
  const stop = new AbortController();
  onTestFinished(() => { stop.abort(); letGo.open(); }); // a drain left lingering by a failure
  const drained = q.drain(1, Date.now() + 120_000, { lingerMs: 120_000, pollMs: 100, signal: stop.signal });
  // Given back by this drain: waiting, attempt 0 (before, its lease_holder still this drain's).
  await until(async () => (await sql(`select 1 from jobs.job_queue where job_id = $1 and attempt = 0 and lease_until is null`,
    [id])).length > 0, 'the snooze to be settled');
  // One job at a time: while the blocker runs, the drain sends no claim.
  await q.publish('blocker');
  await blocking.shut;
  expect(await sql(`select jobs.cancel_bulk(array(select job_id from jobs.job_queue where task in ('head', 'snoozer')),
                                            'import undone') as n`)).toEqual([{ n: 501 }]);
  expect(await sql(`select cancel_requested_at is not null as deferred, lease_until <= now() as passed
                    from jobs.job_queue where job_id = $1`, [id])).toEqual([{ deferred: true, passed: true }]);
  letGo.open();
  // The blocker's ack goes with the drain's next claim; a job published now runs after a claim that saw the deferred lease.
  await q.publish('marker');
  await markerRan.shut;
  stop.abort();
  await drained;
  // Before, the drain's claims left the lease to the drain whose token the row still had: the job
  // stayed, cancel requested, its key held, until another drain's claim or jobs.maintain.
  expect(await sql('select status, error from jobs.job where job_id = $1', [id]))
    .toEqual([{ status: 'cancelled', error: 'cancelled: import undone' }]);
});
