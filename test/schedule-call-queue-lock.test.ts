// jobs.schedule changing a schedule whose tick is due publishes that tick
// first, which into a bounded queue waits for the queue's publishers' lock
// (sql/0022). Taken with the schedule's row held, an app transaction that
// published to that queue and then called jobs.schedule for that schedule
// closed a cycle with it (40P01 for one of them). On a real PostgreSQL.
import pg from 'pg';
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';

const db = await testDb();

it("a jobs.schedule waiting on a bounded queue's lock for its due tick, and an app transaction that published there then changes that schedule: no deadlock", async () => {
  await db.sql(`select jobs.create_queue('capped', max_size => 100)`);
  await db.sql(`select jobs.schedule('sweep', '* * * * *', 'sweep.run', queue => 'capped', now => now() - interval '10 minutes')`);
  const app = new pg.Client({ connectionString: db.url });
  const admin = new pg.Client({ connectionString: db.url });
  await Promise.all([app.connect(), admin.connect()]);
  try {
    await app.query(`set lock_timeout = '20s'`);
    await admin.query(`set lock_timeout = '20s'`);
    await admin.query(`set deadlock_timeout = '30s'`);  // the app's check finds a cycle first
    const adminPid = (await admin.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
    await app.query('begin');
    await app.query(`select jobs.publish('sweep.run', '{"by":"app"}', queue => 'capped')`);
    const changed = admin.query(`select jobs.schedule('sweep', '*/5 * * * *', 'sweep.run', queue => 'capped')`)
      .then(() => 'ok', (e: { code?: string }) => `admin ${e.code ?? ''}`);
    await until(async () => (await db.sql<{ n: number }>(
      `select count(*)::int as n from pg_stat_activity where pid = $1 and wait_event_type = 'Lock'`, [adminPid]))[0]!.n > 0,
      "jobs.schedule's wait");
    const own = await app.query(`select jobs.schedule('sweep', '*/2 * * * *', 'sweep.run', queue => 'capped')`)
      .then(() => 'ok', (e: { code?: string }) => `app ${e.code ?? ''}`);
    await app.query(own === 'ok' ? 'commit' : 'rollback');
    expect([own, await changed]).toEqual(['ok', 'ok']);
    // The due tick was published once (by the app's call), the admin's expression last.
    expect(await db.sql(`select count(*)::int as n from jobs.job_queue where task = 'sweep.run' and body->>'by' is null`)).toEqual([{ n: 1 }]);
    expect(await db.sql(`select cron from jobs.recurring where name = 'sweep'`)).toEqual([{ cron: '*/5 * * * *' }]);
  } finally {
    await Promise.all([app.end(), admin.end()]);
  }
});
