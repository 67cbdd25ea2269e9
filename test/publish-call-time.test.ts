// A relative delay given in TS (publish, publishBulk, publishEvent,
// rescheduleJobs) counts from the SQL functions' own time of the call:
// jobs.call_time of jobs.clock (sql/0002), one definition, so a test that
// moves jobs.clock moves the delays too. The publisher and worker roles of
// migrate --roles may call them (sql/0018), and so may any role: a role of
// one's own granted only jobs.publish publishes from TS as before.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate, publish, publishBulk, publishEvent, rescheduleJobs } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const client = new pg.Client({ connectionString: db.url });
// Roles are cluster-wide: a prefix of this run's own.
const prefix = `ct${Date.now().toString(36)}`;

beforeAll(async () => {
  await client.connect();
  await migrate(db.driver, { roles: prefix }); // already migrated: only the roles
  await db.sql(`select jobs.subscribe('ct.event', 'default')`);
});
afterAll(async () => {
  await client.end();
});

/** The seconds from the transaction's now() to each job's scheduled_at. */
async function delays(ids: string[]): Promise<number[]> {
  const { rows } = await client.query<{ s: number }>(
    `select extract(epoch from scheduled_at - now())::float8 as s from jobs.job_queue j
     join unnest($1::bigint[]) with ordinality i(id, o) on i.id = j.job_id order by i.o`, [ids]);
  return rows.map((r) => r.s);
}

describe('a TS delay counts from jobs.call_time', () => {
  it('from the injected clock: publish, publishBulk, publishEvent and rescheduleJobs', async () => {
    await client.query('begin');
    try {
      // The test's clock, a day ahead, for this transaction only (rolled back below).
      await client.query(`create or replace function jobs.clock(p_now timestamptz) returns timestamptz
                          language sql stable as $$ select coalesce(p_now, now() + interval '1 day') $$`);
      const one = await publish(client, 'ct.one', null, { delaySeconds: 60 });
      const [bulk] = await publishBulk(client, [{ task: 'ct.bulk', delaySeconds: 60 }]);
      const [event] = await publishEvent(client, 'ct.event', null, { delaySeconds: 60 });
      const moved = await publish(client, 'ct.moved', null, { delaySeconds: 5 });
      expect(await rescheduleJobs(client, [moved], { delaySeconds: 120 })).toBe(1);
      expect(await delays([one, bulk!, event!, moved])).toEqual([86_460, 86_460, 86_460, 86_520]);
    } finally {
      await client.query('rollback');
    }
  });

  it('which a publisher and a worker may call', async () => {
    for (const role of ['publisher', 'worker']) {
      await client.query('begin');
      try {
        await client.query(`set local role ${prefix}_${role}`);
        const one = await publish(client, 'ct.role', null, { delaySeconds: 60 });
        const [bulk] = await publishBulk(client, [{ task: 'ct.role', delaySeconds: 60 }]);
        const [event] = await publishEvent(client, 'ct.event', null, { delaySeconds: 60 });
        await client.query('reset role');
        // From the call: at least the delay after the transaction's start.
        for (const s of await delays([one, bulk!, event!])) expect(s).toBeGreaterThanOrEqual(60);
      } finally {
        await client.query('rollback');
      }
    }
  });

  it('which a login role granted only USAGE on jobs and EXECUTE on jobs.publish may call: TS publish with and without a delay', async () => {
    const login = `${prefix}_own`;
    await db.sql(`create role ${login} login`);
    await db.sql(`grant usage on schema jobs to ${login}`);
    await db.sql(`grant execute on function jobs.publish(text, jsonb, timestamptz, numeric, integer, integer, timestamptz, text, text, text,
                  bigint[], jsonb, text, numeric, numeric, text, numeric, timestamptz, text, text, text) to ${login}`);
    const u = new URL(db.url);
    u.username = login;
    const own = new pg.Client({ connectionString: u.href });
    await own.connect();
    try {
      const plain = await publish(own, 'ct.own', null);
      const later = await publish(own, 'ct.own', null, { delaySeconds: 60 });
      // Due at its publish (created_at, the transaction's now()), and at least the delay after it.
      const { rows } = await client.query<{ s: number }>(
        `select extract(epoch from scheduled_at - created_at)::float8 as s from jobs.job_queue
         where job_id = any($1::bigint[]) order by job_id`, [[plain, later]]);
      expect(rows[0]!.s).toBe(0);
      expect(rows[1]!.s).toBeGreaterThanOrEqual(60);
      // It may not move a clock with them: jobs.clock checks another time as an admin's (jobs.check_now).
      await expect(own.query(`select jobs.clock(now() + interval '1 day')`)).rejects.toMatchObject({ code: '42501' });
      await expect(own.query(`select jobs.check_now(now() + interval '1 day')`)).rejects.toMatchObject({ code: '42501' });
    } finally {
      await own.end();
      await db.sql(`drop owned by ${login}; drop role ${login}`);
    }
  });
});
