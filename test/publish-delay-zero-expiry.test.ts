// A delay of 0 is no delay: the job is due at the transaction's time (now()),
// as with no delay, and its expiry is checked against that time. A delay
// counts from the call (jobs.call_time), so before, a delay of 0 put the job
// at clock_timestamp() and refused an expires_at of now() + 1 ms (PD007,
// "would expire before it could run") once the transaction had been open
// that long, where no delay accepted it. A delay above 0 still counts from
// the call: an expiry before then is refused, however long the transaction.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { publish, publishEvent, rescheduleJobs } from '../src/index.js';
import { testDb, withClient } from './support/db.js';

const db = await testDb();
const sql = db.sql;

await sql(`select jobs.subscribe('ev.zero', 'default', 't')`);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

/** Runs fn in a transaction already open for 50 ms; rolls it back. */
async function inOldTransaction<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  return withClient(db.url, async (c) => {
    await c.query('begin');
    await c.query('select pg_sleep(0.05)');
    try {
      return await fn(c);
    } finally {
      await c.query('rollback');
    }
  });
}

/** The error fn fails with (null: none). */
const errorOf = (fn: () => Promise<unknown>) => fn().then(() => null, (e: unknown) => e as pg.DatabaseError);

/** The job's scheduled_at is the transaction's now(). */
const dueAtNow = (c: pg.Client) =>
  c.query<{ ok: boolean }>('select bool_and(scheduled_at = now()) as ok from jobs.job_queue where job_id > 0');

describe('a delay of 0 with an expiry just after now()', () => {
  it('jobs.publish_arrays (delays 0): accepted, due at now(), as with no delay', async () => {
    await inOldTransaction(async (c) => {
      for (const delays of ['array[0]::float8[]', 'array[null]::float8[]', 'null']) {
        await c.query(`select jobs.publish_arrays(array['t'], delays => ${delays},
                                                  expires_at => array[now() + interval '1 ms'])`);
      }
      expect((await dueAtNow(c)).rows).toEqual([{ ok: true }]);
      expect((await c.query('select count(*)::int as n from jobs.job_queue where job_id > 0')).rows).toEqual([{ n: 3 }]);
    });
  });

  it('jobs.publish_event (delay 0): accepted, due at now()', async () => {
    await inOldTransaction(async (c) => {
      await c.query(`select jobs.publish_event('ev.zero', delay => 0, expires_at => now() + interval '1 ms')`);
      expect((await dueAtNow(c)).rows).toEqual([{ ok: true }]);
    });
  });

  it('TypeScript publish, publishEvent and rescheduleJobs (delaySeconds 0): accepted, due at now()', async () => {
    await inOldTransaction(async (c) => {
      const now = (await c.query<{ ms: number }>('select floor(extract(epoch from now()) * 1000)::float8 as ms')).rows[0]!.ms;
      const expiresAt = new Date(now + 1);
      expect(await errorOf(() => publish(c, 't', null, { delaySeconds: 0, expiresAt }))).toBe(null);
      expect(await errorOf(() => publishEvent(c, 'ev.zero', null, { delaySeconds: 0, expiresAt }))).toBe(null);
      expect((await dueAtNow(c)).rows).toEqual([{ ok: true }]);
      // reschedule's delaySeconds 0 too: now(), before the jobs' expiry.
      const ids = (await c.query<{ id: string }>('select job_id::text as id from jobs.job_queue where job_id > 0')).rows.map((r) => r.id);
      expect(await rescheduleJobs(c, ids, { delaySeconds: 0 })).toBe(2);
      expect((await dueAtNow(c)).rows).toEqual([{ ok: true }]);
    });
  });

  it('a delay above 0 counts from the call: an expiry before then is refused, one after accepted', async () => {
    await inOldTransaction(async (c) => {
      // Due 5 s after the call, 50 ms after now(): expiring 5.001 s after now() it could never run.
      await c.query('savepoint s');
      const e = await errorOf(() => c.query(`select jobs.publish_arrays(array['t'], delays => array[5],
                                                       expires_at => array[now() + interval '5.001 s'])`));
      expect([e?.code, e?.column]).toEqual(['PD007', 'jobs[1].expires_at']);
      await c.query('rollback to savepoint s');
      await c.query(`select jobs.publish_arrays(array['t'], delays => array[5], expires_at => array[now() + interval '6 s'])`);
      expect((await c.query<{ ok: boolean }>(`select scheduled_at >= now() + interval '5.05 s' as ok
                                               from jobs.job_queue where job_id > 0`)).rows).toEqual([{ ok: true }]);
    });
  });

  it('an expiry not after now() is still refused with a delay of 0', async () => {
    await inOldTransaction(async (c) => {
      const e = await errorOf(() => c.query(`select jobs.publish_arrays(array['t'], delays => array[0], expires_at => array[now()])`));
      expect([e?.code, e?.column]).toEqual(['PD007', 'jobs[1].expires_at']);
    });
  });
});
