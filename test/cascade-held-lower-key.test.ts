// A cascade (jobs.after_end, via jobs.lock_head_keys) that ends a dependant
// heading a serial key whose lock comes BEFORE a key the ending transaction
// already holds only tries that lock: held by another transaction at that
// moment, for whatever reason (here a plain publish of the key, not yet
// committed, that will never wait for the cascade's keys), the head is
// deferred (cancel requested, lease passed) rather than waited for, and the
// next claim's expiry ends it. The known cost, carried: a head is deferred on
// a key that was merely held, no deadlock at stake. What must hold anyway:
// nothing is lost or run, and the key's later jobs get their turn once an
// expiry runs.
import { describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { lockSessions } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);
const one = async (text: string, params?: unknown[]) => (await sql(text, params))[0]!;

describe('a cascade meeting a lower serial key another transaction merely holds', () => {
  it('defers the head, which never runs; the next claim ends it and hands the key on', async () => {
    // hashtext('low') < hashtext('high'): the settle holds 'high' before the cascade reaches 'low'.
    expect(await one(`select hashtext('low') < hashtext('high') as ordered`)).toEqual({ ordered: true });
    const parent = (await one(`select jobs.publish('parent', serial_key => 'high', max_retries => 0)::text as id`)).id as string;
    const child = (await one(`select jobs.publish('child', serial_key => 'low', depends_on => array[$1::bigint])::text as id`,
      [parent])).id as string;
    expect(await sql(`select job_id::text as id from jobs.consume(5)`)).toEqual([{ id: parent }]);

    // Another transaction publishes a plain job of 'low' and stays open: it holds 'low', waits for nothing.
    const holder = await session();
    await holder.query('begin');
    const later = (await holder.query(`select jobs.publish('later', serial_key => 'low')::text as id`)).rows[0].id as string;

    // The parent fails for good: its cascade cannot take 'low' (lower than 'high', held): the child is deferred.
    expect(await one(`select jobs.nack($1::bigint, 'broke') as ok`, [parent])).toEqual({ ok: true });
    expect(await one(`select (cancel_requested_at is not null) as deferred, attempt, serial_wait from jobs.job_queue where job_id = $1`,
      [child])).toEqual({ deferred: true, attempt: 0, serial_wait: false });
    await holder.query('commit');
    expect(await one(`select serial_wait from jobs.job_queue where job_id = $1`, [later])).toEqual({ serial_wait: true });
    // The next claim's expiry ends the head as cancelled (never run) and hands the key on: the claim takes the later job.
    expect(await sql(`select job_id::text as id from jobs.consume(5)`)).toEqual([{ id: later }]);
    expect(await one(`select status, error, attempts from jobs.job where job_id = $1`, [child]))
      .toEqual({ status: 'cancelled', error: `cancelled: dependency ${parent} did not succeed`, attempts: 0 });
  });
});
