// pg_cron for a role that does not own it, as on managed PostgreSQL: the
// schema jobs migrated by role `app`, which has no USAGE on schema cron
// until a test grants it; and the command jobs.schedule_maintenance gives
// pg_cron keeping up with a backlog past one maintain call's 100,000 rows.
// pg_cron installs only in its cron.database_name (`postgres`), which on the
// shared test server cron.test.ts migrates and drops: this file starts its
// own ephemeral cluster (pg_cron preloaded) so the two never meet.
// Without pg_cron every test here fails: install postgresql-15-cron.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { maintain, migrate, pgDriver, schedule, unschedule } from '../src/index.js';
import { sqlErrorOf } from './support/db.js';
import { startServer, type Server } from './support/postgres.js';

let server: Server;
let admin: pg.Pool; // postgres, superuser
let app: pg.Pool; // the role that owns schema jobs
let appUrl: string;
const asAdmin = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await admin.query(text, params)).rows as R[];
const asApp = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await app.query(text, params)).rows as R[];

beforeAll(async () => {
  server = await startServer();
  if (!server.pgCron) {
    await server.stop();
    throw new Error('pg_cron is not preloaded on this test cluster: install postgresql-15-cron (.ci/run does); these tests must not be skipped');
  }
  admin = new pg.Pool({ connectionString: server.url, max: 2 });
  await asAdmin('create extension pg_cron');
  await asAdmin('create role app login; grant create on database postgres to app');
  const u = new URL(server.url);
  u.username = 'app';
  appUrl = u.href;
  app = new pg.Pool({ connectionString: appUrl, max: 2 });
  const driver = pgDriver(appUrl);
  try {
    await migrate(driver);
  } finally {
    await driver.close();
  }
}, 120_000);

afterAll(async () => {
  await app?.end();
  await admin?.end();
  await server?.stop();
});

describe('pg_cron installed, and role app may not use it (no USAGE on schema cron)', () => {
  it('jobs.maintain does its pass (lease expiry, retention) without touching pg_cron\'s run log; TS maintain() too', async () => {
    expect(await asApp(`select has_schema_privilege('cron', 'usage') as u, jobs.has_pg_cron() as h`)).toEqual([{ u: false, h: false }]);
    // An ended job past retention, and a lease that ran out (max_retries 0: it ends as a failure).
    await asApp(`select jobs.publish('old.job', now => now() - interval '10 days')`);
    await asApp(`select jobs.ack(job_id, null, now() - interval '10 days') from jobs.claim(1, 'old.job', null, now() - interval '10 days')`);
    await asApp(`select jobs.publish('stuck.job', timeout_seconds => 5, max_retries => 0, now => now() - interval '1 hour')`);
    await asApp(`select jobs.claim(1, 'stuck.job', null, now() - interval '1 hour')`);
    expect(await asApp(`select jobs.maintain('7 days') as r`)).toEqual([{ r: { expired: 1, ticks: 0, deleted: 1, archived: 0, windows: 0, misses: 0, left: 0 } }]);
    expect(await asApp(`select task, status from jobs.job`)).toEqual([{ task: 'stuck.job', status: 'failure' }]);

    const driver = pgDriver(appUrl);
    try {
      expect(await maintain(driver, { retentionSeconds: 0 })).toEqual({ expired: 0, ticks: 0, deleted: 1, archived: 0, windows: 0, misses: 0, left: 0, passes: 1, caughtUp: true });
    } finally {
      await driver.close();
    }
  });

  it('schedules go to the drains, by default and when asked; unschedule works; asking for pg_cron names runner and the privilege', async () => {
    expect(await asApp(`select jobs.schedule('hb', '*/5 * * * *', 'ops.ping', runner => 'drains') as r`)).toEqual([{ r: 'drains' }]);
    expect(await asApp(`select jobs.schedule('nightly', '0 3 * * *', 'report.daily') as r`)).toEqual([{ r: 'drains' }]);
    expect(await asApp(`select jobs.unschedule('hb') as r`)).toEqual([{ r: true }]);

    const e = await sqlErrorOf(asApp, `select jobs.schedule('c', '* * * * *', 'a.b', runner => 'pg_cron')`);
    expect([e.code, e.column]).toEqual(['PDC03', 'runner']);
    expect(e.message).toBe("runner: 'pg_cron' needs USAGE ON SCHEMA cron, which role app lacks: GRANT USAGE ON SCHEMA cron TO app, or use runner => 'drains'");

    const m = await sqlErrorOf(asApp, `select jobs.schedule_maintenance()`);
    expect(m.code).toBe('42501');
    expect(m.message).toMatch(/^pg_cron is installed but role app may not use it: jobs\.schedule_maintenance needs USAGE ON SCHEMA cron/);

    const driver = pgDriver(appUrl);
    try {
      expect(await schedule(driver, { name: 'ts', cron: '@hourly', task: 'a.b' })).toBe('drains');
      expect(await unschedule(driver, 'ts')).toBe(true);
      await expect(schedule(driver, { name: 'ts', cron: '@hourly', task: 'a.b', runner: 'pg_cron' }))
        .rejects.toMatchObject({ name: 'ValidationError', code: 'invalid_argument', field: 'spec.runner' });
    } finally {
      await driver.close();
    }
    expect(await asApp(`select name, runner from jobs.schedules order by name`)).toEqual([{ name: 'nightly', runner: 'drains' }]);
    expect(await asAdmin(`select count(*)::int as n from cron.job`)).toEqual([{ n: 0 }]);
    await asApp(`select jobs.unschedule('nightly')`);
  });
});

describe('role app granted USAGE on schema cron', () => {
  beforeAll(async () => {
    await asAdmin('grant usage on schema cron to app');
  });

  it('schedules default to pg_cron, and maintain prunes pg_cron\'s old run log of pgdrain jobs', async () => {
    expect(await asApp(`select jobs.schedule('hb', '0 4 1 1 *', 'ops.ping') as r`)).toEqual([{ r: 'pg_cron' }]);
    const [{ jobid }] = await asAdmin<{ jobid: string }>(`select jobid from cron.job where jobname = 'pgdrain:schedule:hb'`) as [{ jobid: string }];
    await asAdmin(`insert into cron.job_run_details (jobid, runid, username, database, command, status, start_time, end_time)
                   values ($1, 1001, 'app', 'postgres', 'x', 'succeeded', now() - interval '9 days', now() - interval '9 days'),
                          ($1, 1002, 'app', 'postgres', 'x', 'succeeded', now() - interval '1 day', now() - interval '1 day')`, [jobid]);
    await asApp(`select jobs.maintain('7 days')`);
    expect(await asAdmin(`select runid::int from cron.job_run_details where jobid = $1`, [jobid])).toEqual([{ runid: 1002 }]);
    expect(await asApp(`select jobs.unschedule('hb') as r`)).toEqual([{ r: true }]);
  });

  for (const level of ['repeatable read', 'serializable']) {
    it(`maintain in ${level}: run log rows another pass pruned after its snapshot are left to it, not a failed pass`, async () => {
      expect(await asApp(`select jobs.schedule('hb', '0 4 1 1 *', 'ops.ping') as r`)).toEqual([{ r: 'pg_cron' }]);
      const [{ jobid }] = await asAdmin<{ jobid: string }>(`select jobid from cron.job where jobname = 'pgdrain:schedule:hb'`) as [{ jobid: string }];
      await asAdmin(`insert into cron.job_run_details (jobid, runid, username, database, command, status, start_time, end_time)
                     values ($1, 2001, 'app', 'postgres', 'x', 'succeeded', now() - interval '9 days', now() - interval '9 days')`, [jobid]);
      const c = new pg.Client({ connectionString: appUrl });
      await c.connect();
      try {
        await c.query(`begin isolation level ${level}`);
        await c.query('select count(*) from cron.job_run_details');  // its snapshot, the old row there
        await asApp(`select jobs.maintain('7 days')`);  // another pass prunes it, commits
        const answer = await c.query(`select jobs.maintain('7 days') as r`).then((r) => r.rows, (e: Error & { code?: string }) => `error ${e.code}: ${e.message}`);
        await c.query('rollback');
        // Unfixed: error 40001 (could not serialize access due to concurrent update).
        expect(answer).toMatchObject([{ r: { deleted: 0 } }]);
      } finally {
        await c.end();
      }
      expect(await asAdmin(`select count(*)::int as n from cron.job_run_details where jobid = $1`, [jobid])).toEqual([{ n: 0 }]);
      expect(await asApp(`select jobs.unschedule('hb') as r`)).toEqual([{ r: true }]);
    });
  }

  it('a role that may read pg_cron\'s run log but not delete from it: maintain skips the prune instead of failing', async () => {
    await asAdmin('revoke delete on cron.job_run_details from public');
    try {
      // has_table_privilege('select, delete') is true for either one: the two are asked apart.
      expect(await asApp(`select jobs.pg_cron_lacks(true) as l`)).toEqual([{ l: 'SELECT, DELETE ON cron.job_run_details' }]);
      expect(await asApp(`select jobs.maintain('7 days') as r`)).toEqual([{ r: { expired: 0, ticks: 0, deleted: 0, archived: 0, windows: 0, misses: 0, left: 0 } }]);
    } finally {
      await asAdmin('grant delete on cron.job_run_details to public');
    }
  });

  it('a role that lost USAGE on cron cannot unschedule a pg_cron schedule silently: 42501, and the schedule stays', async () => {
    expect(await asApp(`select jobs.schedule('lost', '0 4 1 1 *', 'ops.ping') as r`)).toEqual([{ r: 'pg_cron' }]);
    await asAdmin('revoke usage on schema cron from app');
    try {
      const e = await sqlErrorOf(asApp, `select jobs.unschedule('lost')`);
      expect(e.code).toBe('42501');
      expect(e.message).toMatch(/^cannot remove pg_cron job pgdrain:schedule:lost: role app lacks USAGE ON SCHEMA cron/);
      // Moving it to the drains would leave its pg_cron job running too.
      expect((await sqlErrorOf(asApp, `select jobs.schedule('lost', '0 4 1 1 *', 'ops.ping', runner => 'drains')`)).code).toBe('42501');
      expect(await asApp(`select name, runner from jobs.schedules where name = 'lost'`)).toEqual([{ name: 'lost', runner: 'pg_cron' }]);
      expect(await asAdmin(`select count(*)::int as n from cron.job where jobname = 'pgdrain:schedule:lost'`)).toEqual([{ n: 1 }]);
    } finally {
      await asAdmin('grant usage on schema cron to app');
    }
    expect(await asApp(`select jobs.unschedule('lost') as r`)).toEqual([{ r: true }]);
    expect(await asAdmin(`select count(*)::int as n from cron.job where jobname = 'pgdrain:schedule:lost'`)).toEqual([{ n: 0 }]);
  });

  it('the maintenance pg_cron runs catches up with a backlog larger than one pass (150,000 ended jobs)', async () => {
    await asApp('truncate jobs.job');
    // A yearly tick, kept inactive: this test runs the command itself, as pg_cron would (as app).
    await asApp(`select jobs.schedule_maintenance('0 3 1 1 *', '7 days')`);
    await asAdmin(`update cron.job set active = false where jobname like 'pgdrain:%'`);
    const [{ command, username }] = await asAdmin<{ command: string; username: string }>(
      `select command, username from cron.job where jobname = 'pgdrain:maintain'`) as [{ command: string; username: string }];
    expect(username).toBe('app');
    await asApp(`insert into jobs.job (job_id, task, status, attempts, priority, max_retries, timeout, scheduled_at, created_at, ended_at)
      select 10000000 + g, 'x.y', 'success', 1, 0, 3, 60, now(), now(), now() - interval '8 days' + g * interval '1 ms'
      from generate_series(1, 150000) g`);
    await asApp(`insert into jobs.job (job_id, task, status, attempts, priority, max_retries, timeout, scheduled_at, created_at, ended_at)
      values (1, 'fresh', 'success', 1, 0, 3, 60, now(), now(), now() - interval '1 day')`);
    await asApp(command);
    expect(await asApp(`select task, count(*)::int as n from jobs.job group by task`)).toEqual([{ task: 'fresh', n: 1 }]);
    await asAdmin(`select cron.unschedule(jobid) from cron.job`);
  });
});
