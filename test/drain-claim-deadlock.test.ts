// A drain's claim carries its settle (jobs.claim_json), which takes the
// serial keys of the jobs it ends, in key order. A user's transaction that
// publishes jobs of two keys out of that order (b, then a) can deadlock with
// it; when the drain is the one PostgreSQL rolls back, nothing of its claim
// or settle happened, so it tries again instead of failing the whole drain.
// Sequenced by lock waits (pg_stat_activity). Which side PostgreSQL rolls
// back is the one whose deadlock check runs first once the cycle closes: the
// drain's runs 5 s after its claim began to wait, the user's not for a minute,
// so the drain is the victim even when the user's publish comes late on a
// loaded machine (with both at the server's 1 s, a publish more than 1 s late
// made the user's transaction the victim).
import pg from 'pg';
import { expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;

it('a claim rolled back as a deadlock victim is tried again: the drain goes on and its jobs end once', async () => {
  await sql(`select jobs.publish('t', '"a"', timeout_seconds => 30, serial_key => 'account:a'),
                    jobs.publish('t', '"b"', timeout_seconds => 30, serial_key => 'account:b')`);
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  let ran = 0;
  const drainUrl = new URL(db.url);
  drainUrl.searchParams.set('options', '-c deadlock_timeout=5s');
  const queue = createQueue({ connectionString: drainUrl.href, tasks: { t: async () => { ran++; await gate; return null; } } });
  const user = new pg.Client({ connectionString: db.url });
  await user.connect();
  await user.query(`set deadlock_timeout = '1min'`);
  try {
    const drained = queue.drain(10, Date.now() + 60_000, { workerId: 'victim' });
    await until(async () => ran === 2, 'both handlers to run');
    // The user's transaction takes account:b first.
    await user.query('begin');
    await user.query(`select jobs.publish('t', '"b2"', serial_key => 'account:b')`);
    // Both handlers return: the drain's next claim settles them, taking account:a, then waiting for account:b.
    release();
    await until(async () => (await sql(`select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'
                                          and query like '%claim_json%'`)).length > 0, "the drain's claim to wait for account:b");
    // Now the user's transaction asks for account:a: a cycle. The drain's deadlock check
    // runs first and it is rolled back; the user's publish then goes through.
    await user.query(`select jobs.publish('t', '"a2"', serial_key => 'account:a')`);
    await user.query('commit');
    // Before: the drain rejected with the deadlock, though its settle was put back.
    expect(await drained).toMatchObject({ claimed: 2, succeeded: 2, failed: 0 });
    expect(await sql(`select body, status from jobs.job order by job_id`)).toEqual([
      { body: 'a', status: 'success' }, { body: 'b', status: 'success' }]);
    expect(await sql(`select body from jobs.job_queue order by job_id`)).toEqual([{ body: 'b2' }, { body: 'a2' }]);
  } finally {
    release();
    await user.end();
    await queue.close();
  }
});
