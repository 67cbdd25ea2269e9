// A drain's claim that waits to publish a due tick into a bounded queue (an
// app transaction holds the queue's publishers' lock) must hold no schedule's
// row while it waits: an app transaction that published to that queue and
// then calls jobs.schedule for that schedule (which locks the row) closed a
// cycle, 40P01 for the app (or, the claim's check first, a tick failed and
// put off a minute). On a real PostgreSQL.
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { minute, T0 } from './support/schedule-clock.js';

const db = await testDb();
const sql = db.sql;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
  await sql(`select jobs.create_queue('capped', max_size => 100)`);
});
afterEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
  await sql(`select jobs.delete_queue('capped')`);
});

describe("a claim waiting to publish a tick into a bounded queue, and an app transaction that then changes that schedule", () => {
  it('neither the claim nor the app gets a deadlock', async () => {
    await sql(`select jobs.schedule('sweep', '*/10 * * * *', 'sweep.run', queue => 'capped', now => $1)`, [T0]);
    const open = new pg.Client({ connectionString: db.url });
    const claim = new pg.Client({ connectionString: db.url });
    await Promise.all([open.connect(), claim.connect()]);
    try {
      await claim.query(`set lock_timeout = '20s'`);
      await claim.query(`set pgdrain.tick_wait_ms = 60000`);  // past jobs.tick_wait_bound's default 500 ms
      // The app's check finds the cycle first (as when it calls schedule more than deadlock_timeout after the claim began to wait).
      await claim.query(`set deadlock_timeout = '30s'`);
      await open.query(`set lock_timeout = '20s'`);
      // Its waiter, of this file's database (the server is shared with other files, whose claims wait too).
      const openPid = (await open.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
      await open.query('begin');
      await open.query(`select jobs.publish('sweep.run', '{"by":"app"}', queue => 'capped')`);
      // A drain's first claim (nothing to settle): it waits for the app's lock on capped.
      let answered = false;
      const claimed = claim.query(`select jobs.claim_json(1, now => $1) as c`, [minute(10)])
        .then(() => 'claimed', (e: { code?: string }) => e.code).finally(() => (answered = true));
      await expect.poll(async () => answered || (await sql<{ n: number }>(`select count(*)::int as n from pg_stat_activity
        where datname = current_database() and $1::int = any(pg_blocking_pids(pid))`, [openPid]))[0]!.n === 1, { timeout: 10_000 }).toBe(true);
      // Another drain's first claim meanwhile: one claim at a time waits for the tick; this one answers.
      expect((await sql<{ c: { count: number } }>(`select jobs.claim_json(1, now => $1) as c`, [minute(10)]))[0]!.c.count).toBe(0);
      // The app, in the same transaction, schedules sweep again (the same rule: nothing changes).
      const scheduled = open.query(`select jobs.schedule('sweep', '*/10 * * * *', 'sweep.run', queue => 'capped')`)
        .then(() => 'scheduled', (e: { code?: string }) => e.code);
      const app = await scheduled;
      await open.query(app === 'scheduled' ? 'commit' : 'rollback');
      expect({ app, claim: await claimed }).toEqual({ app: 'scheduled', claim: 'claimed' });
    } finally {
      await open.end();
      await claim.end();
    }
  });
});
