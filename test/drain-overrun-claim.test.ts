// A claim the drain gives up on at its overrun limit (no reply overrunMs after
// its deadline) sends no jobs.release_holder: past that limit the drain
// returns at once, as a platform about to kill it needs. pgDriver cancels the
// abandoned statement on the server, so a claim stuck waiting on a lock (here
// max_running's, held as by another drain's claim) rolls back and leases
// nothing: nothing is left to give back. (One that committed, its answer lost
// in a frozen network, leaves its jobs leased until their leases pass:
// docs/typescript-api.md.) On a real PostgreSQL.
import pg from 'pg';
import { expect, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';

const db = await testDb();
const { sql } = db;

it('a claim abandoned at the overrun limit is cancelled on the server: its jobs stay unleased, attempt unspent', async () => {
  await sql(`select jobs.create_queue('held', max_running => 5)`);
  const lock = new pg.Client({ connectionString: db.url });
  await lock.connect();
  await lock.query(`select pg_advisory_lock(736043, hashtext('held'))`);
  const queue = createQueue({ driver: pgDriver(db.url), tasks: { work: async () => {} } });
  try {
    await queue.publishBulk([{ task: 'work', body: {}, timeoutSeconds: 1 }, { task: 'work', body: {}, timeoutSeconds: 1 }], 'held');
    // 5 s: a first claim sent up to 3.5 s late (a loaded machine; 0.5 s settle margin) still fits a 1 s job, so it
    // is sent, and waits on the lock until the overrun limit. At 2 s, one sent 0.5 s late fitted none: the drain returned.
    const error = await queue.drain(10, Date.now() + 5_000, { queue: 'held', overrunMs: 300 }).then(() => 'returned', (e: unknown) => e);
    expect(error).toMatchObject({ code: 'database_unavailable', message: expect.stringMatching(/no reply within 300 ms after the drain's deadline/) });
    expect(error).not.toHaveProperty('lostClaimReleased');
    // The cancel reached the claim's backend: it no longer waits on the lock.
    await until(async () => (await sql(`select 1 from pg_stat_activity where query like '%jobs.claim_json%'
                                          and state = 'active' and pid <> pg_backend_pid()`)).length === 0, 'the claim to end');
    await lock.query(`select pg_advisory_unlock(736043, hashtext('held'))`);
    expect(await sql('select attempt, lease_until is null as free from jobs.job_queue')).toEqual(
      [{ attempt: 0, free: true }, { attempt: 0, free: true }]);
  } finally {
    await lock.end();
    await queue.close();
  }
});
