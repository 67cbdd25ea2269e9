// Security review R-sec: the `now` argument of the queue's SECURITY DEFINER
// functions (a test's hook) let a pgdrain_worker or pgdrain_publisher set
// the clock those functions act at: jobs.expire(now => 'infinity') failed
// every running job and every waiting job with an expires_at, and
// jobs.publish_due_schedules (or jobs.claim_json) with a far date pushed
// every drain-run schedule past it: what only an admin may do
// (jobs.fail, jobs.unschedule). A time of the caller's own transaction
// (its now() to the clock, as a transactional ack gives) is still taken.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
// Roles are cluster-wide: a prefix of this run's own.
const prefix = `k${Date.now().toString(36)}`;
const client = new pg.Client({ connectionString: db.url });

beforeAll(async () => {
  await client.connect();
  await migrate(db.driver, { roles: prefix }); // already migrated: only the roles
});
afterAll(async () => {
  await client.end();
});

/** Runs statements as role `${prefix}_${role}` in one transaction, committed; the last one's rows. */
async function as(role: string, ...texts: string[]): Promise<Record<string, unknown>[]> {
  await client.query('begin');
  try {
    await client.query(`set local role ${prefix}_${role}`);
    let rows: Record<string, unknown>[] = [];
    for (const text of texts) rows = (await client.query(text)).rows;
    await client.query('commit');
    return rows;
  } catch (error) {
    await client.query('rollback');
    throw error;
  }
}
const refused = (role: string, text: string) =>
  expect(as(role, text)).rejects.toMatchObject({ code: '42501', column: 'now', message: expect.stringMatching(/^now: role \S+ may not set the clock/) });

describe('a role that may not run jobs.maintain cannot set the clock', () => {
  it('a worker cannot expire running and waiting jobs early: refused, both stay', async () => {
    const running = (await sql<{ id: string }>(`select jobs.publish('clock.run', null, timeout_seconds => 3600, max_retries => 0)::text as id`))[0]!.id;
    const waiting = (await sql<{ id: string }>(
      `select jobs.publish('clock.wait', null, now() + interval '1 hour', expires_at => now() + interval '1 day')::text as id`))[0]!.id;
    expect(await as('worker', `select job_id::text as id from jobs.consume_topic('clock.run', 1)`)).toEqual([{ id: running }]);
    await refused('worker', `select jobs.expire(1000, now() + interval '100 years')`);
    await refused('worker', `select jobs.expire(1000, now() + interval '2 hours')`);
    const rows = await sql(`select job_id::text as id, lease_until is not null as leased from jobs.job_queue
                            where job_id = any($1::bigint[]) order by job_id`, [[running, waiting]]);
    expect(rows).toEqual([{ id: running, leased: true }, { id: waiting, leased: false }]);
    expect(await sql(`select count(*)::int as n from jobs.job where job_id = any($1::bigint[])`, [[running, waiting]])).toEqual([{ n: 0 }]);
    // The clock's own time is taken: nothing has expired yet.
    expect(await as('worker', `select jobs.expire(1000, now()) as n`)).toEqual([{ n: 0 }]);
  });

  it('a worker cannot push the drain-run schedules past a far date, by publish_due_schedules or a claim', async () => {
    await sql(`select jobs.schedule('clock.hourly', '0 * * * *', 'clock.tick', runner => 'drains')`);
    const before = await sql(`select next_run_at, last_run_at from jobs.recurring where name = 'clock.hourly'`);
    await refused('worker', `select jobs.publish_due_schedules('2200-01-01')`);
    await refused('worker', `select jobs.claim_json(1, 'clock.%', now => '2200-01-01')`);
    await refused('worker', `select * from jobs.consume(1, '2200-01-01')`);
    expect(await sql(`select next_run_at, last_run_at from jobs.recurring where name = 'clock.hourly'`)).toEqual(before);
    expect(await sql(`select count(*)::int as n from jobs.job_queue where task = 'clock.tick'`)).toEqual([{ n: 0 }]);
  });

  it('a worker cannot backdate an end or stretch a lease; an ack at the clock (a transactional ack\'s) settles', async () => {
    const id = (await sql<{ id: string }>(`select jobs.publish('clock.settle', null, timeout_seconds => 60)::text as id`))[0]!.id;
    await as('worker', `select job_id from jobs.consume_topic('clock.settle', 1)`);
    await refused('worker', `select jobs.ack(${id}, null, '1970-01-01')`);
    await refused('worker', `select jobs.extend_lease(${id}, 1, 60, now() + interval '100 years')`);
    await refused('worker', `select jobs.settle('[{"id": ${id}, "attempt": 1, "outcome": "ack"}]', '1970-01-01')`);
    // As src/run-transactional.ts sends it: the clock, later than the transaction's now().
    expect(await as('worker', `select pg_sleep(0.01)`, `select jobs.settle_arrays(array[${id}]::bigint[], array[1], array['ack'],
      now => clock_timestamp())->>'succeeded' as n`)).toEqual([{ n: '1' }]);
    expect(await sql(`select status, ended_at > created_at as later from jobs.job where job_id = $1`, [id]))
      .toEqual([{ status: 'success', later: true }]);
  });

  it('a publisher cannot date its jobs at another time; now() is taken', async () => {
    await refused('publisher', `select jobs.publish('clock.pub', null, now => '2200-01-01', dedupe_key => 'k', throttle_seconds => 60)`);
    await refused('publisher', `select jobs.publish_bulk(array[row('clock.pub', null, null, null, null, null)::jobs.bulk_job], '1970-01-01')`);
    await refused('publisher', `select jobs.publish_event('clock.event', null, now => '2200-01-01')`);
    expect(await as('publisher', `select jobs.publish('clock.pub', null, now => now()) > 0 as ok`)).toEqual([{ ok: true }]);
    expect(await sql(`select count(*)::int as n from jobs.throttle where dedupe_key = 'k'`)).toEqual([{ n: 0 }]);
  });

  it('an admin (and the owner) still sets the clock', async () => {
    const id = (await sql<{ id: string }>(`select jobs.publish('clock.admin', null, timeout_seconds => 3600, max_retries => 0)::text as id`))[0]!.id;
    await as('worker', `select job_id from jobs.consume_topic('clock.admin', 1)`);
    expect(await as('admin', `select jobs.expire(1000, now() + interval '2 hours') >= 1 as ok`)).toEqual([{ ok: true }]);
    expect(await sql(`select status from jobs.job where job_id = $1`, [id])).toEqual([{ status: 'failure' }]);
    expect(await sql(`select jobs.publish('clock.owner', null, now => '2030-01-01') > 0 as ok`)).toEqual([{ ok: true }]);
  });
});
