// depends_on a job that will never run. A waiting job past its expires_at
// never runs: the next claim (or jobs.maintain) ends it as a failure,
// 'expired: ...'. Before, a publish depending on it was taken, and its
// dependant was cancelled only once an expiry ran; one that had already
// been ended so was refused (PD013 'already ended as failure'). Now both
// are refused, PD013 naming depends_on. A dependency whose cancel a
// cascade deferred (its serial key held elsewhere) is taken, and the
// dependant ends cancelled when the next claim ends it, as for any
// dependency that fails after the publish.
import { beforeEach, describe, expect, it } from 'vitest';
import { sqlErrorOf, testDb } from './support/db.js';
import { deferredDependant } from './support/deferred-dependant.js';
import { lockSessions } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);
const one = async (text: string, params?: unknown[]) => (await sql(text, params))[0]!;
const T = '2030-01-01T00:00:00Z';

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

/** A job due at T that expires a minute later. */
const expiring = async () => (await one(`select jobs.publish('x', scheduled_at => $1::timestamptz, now => $1::timestamptz,
  expires_at => $1::timestamptz + interval '60 s')::text as id`, [T])).id as string;

describe('depends_on a job that will never run', () => {
  it('a waiting job past its expiry: PD013 naming depends_on, nothing written', async () => {
    const x = await expiring();
    const e = await sqlErrorOf(sql, `select jobs.publish('child', depends_on => array[$1::bigint],
                                                         now => $2::timestamptz + interval '60 s')`, [x, T]);
    expect([e.code, e.column, e.message]).toEqual(['PD013', 'depends_on', `depends_on: job ${x} expired at `
      + '2030-01-01T00:01:00.000Z (not started before it): it ends as a failure, so this job could never run']);
    expect(await sql(`select count(*)::int as n from jobs.job_queue where job_id > 0`)).toEqual([{ n: 1 }]);
    // As once the expiry ended it.
    await sql(`select jobs.consume(10, $1::timestamptz + interval '61 s')`, [T]);
    expect((await sqlErrorOf(sql, `select jobs.publish('child', depends_on => array[$1::bigint])`, [x])).message)
      .toBe(`depends_on: job ${x} already ended as failure, so this job could never run`);
  });

  it('before its expiry: taken, and the dependant ends cancelled once the dependency expires', async () => {
    const x = await expiring();
    const child = (await one(`select jobs.publish('child', depends_on => array[$1::bigint],
                                                   now => $2::timestamptz + interval '59 s')::text as id`, [x, T])).id;
    expect(await sql(`select job_id from jobs.consume(10, $1::timestamptz + interval '61 s')`, [T])).toEqual([]);
    expect(await sql(`select job_id::text as id, status, error from jobs.job order by job_id`)).toEqual([
      { id: x, status: 'failure', error: 'expired: not started before 2030-01-01T00:01:00.000Z' },
      { id: child, status: 'cancelled', error: `cancelled: dependency ${x} did not succeed` },
    ]);
  });

  it('a dependency whose cancel a cascade deferred: taken; the next claim ends both cancelled', async () => {
    // The parent's cascade cannot take 'low' (held by an open publish; lower than 'high', which it holds): child deferred.
    const { parent, child, later } = await deferredDependant(sql, session);
    const grand = (await one(`select jobs.publish('grand', depends_on => array[$1::bigint])::text as id`, [child])).id;
    expect(await sql(`select job_id::text as id from jobs.consume(10)`)).toEqual([{ id: later }]);
    expect(await sql(`select job_id::text as id, status, error from jobs.job where job_id <> $1 order by job_id`, [parent])).toEqual([
      { id: child, status: 'cancelled', error: `cancelled: dependency ${parent} did not succeed` },
      { id: grand, status: 'cancelled', error: `cancelled: dependency ${child} did not succeed` },
    ]);
  });
});
