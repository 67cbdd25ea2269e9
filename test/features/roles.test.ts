// Issue 7, feature 12: opt-in NOLOGIN roles with exactly the grants each
// needs, checked with real roles through SET ROLE.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createQueue, migrate } from '../../src/index.js';
import { testDb } from '../support/db.js';

const db = await testDb();
const sql = db.sql;
// Roles are cluster-wide: a prefix of this run's own.
const prefix = `t${Date.now().toString(36)}`;
const client = new pg.Client({ connectionString: db.url });

beforeAll(async () => {
  await client.connect();
  await migrate(db.driver, { roles: prefix }); // already migrated: only the roles
  await sql(`select jobs.publish('secret.job', '{"card":"4242"}')`);
});
afterAll(async () => {
  await client.end();
});

/** Runs statements as role (SET ROLE inside a transaction that is rolled back); the last one's rows. */
async function as(role: string, ...texts: string[]): Promise<unknown[]> {
  await client.query('begin');
  try {
    await client.query(`set local role ${prefix}_${role}`);
    let rows: unknown[] = [];
    for (const text of texts) rows = (await client.query(text)).rows;
    return rows;
  } finally {
    await client.query('rollback');
  }
}
const denied = (role: string, text: string) =>
  expect(as(role, text)).rejects.toMatchObject({ code: '42501' });

describe('roles', () => {
  it('migrate --roles made three NOLOGIN roles', async () => {
    const rows = await sql(`select rolname, rolcanlogin from pg_roles where rolname like $1 order by rolname`, [`${prefix}_%`]);
    expect(rows).toEqual([
      { rolname: `${prefix}_admin`, rolcanlogin: false },
      { rolname: `${prefix}_publisher`, rolcanlogin: false },
      { rolname: `${prefix}_worker`, rolcanlogin: false },
    ]);
  });

  it('a publisher publishes and can neither consume nor read jobs', async () => {
    expect(await as('publisher', `select jobs.publish('mail.send', '{}') is not null as ok`)).toEqual([{ ok: true }]);
    expect(await as('publisher', `select count(*)::int as n from jobs.publish_bulk(array[row('a', null, null, null, null, null)::jobs.bulk_job])`))
      .toEqual([{ n: 1 }]);
    await denied('publisher', `select * from jobs.consume(1)`);
    await denied('publisher', `select jobs.claim_json(1)`);
    await denied('publisher', `select jobs.settle('[]')`);
    await denied('publisher', `select * from jobs.job_queue`);
    await denied('publisher', `select * from jobs.job`);
    await denied('publisher', `select * from jobs.all`);
    await denied('publisher', `select jobs.cancel(1)`);
    await denied('publisher', `insert into jobs.job_queue (task, scheduled_at, timeout, priority, max_retries, created_at) values ('x', now(), 1, 0, 0, now())`);
  });

  it('a worker consumes, settles and publishes follow-ups; it cannot administer', async () => {
    const rows = await as('worker', `create temp table c as select * from jobs.consume(1)`,
                          `select jobs.ack(c.job_id) as ok from c`);
    expect(rows).toEqual([{ ok: true }]);
    expect(await as('worker', `select jobs.claim_json(10)::jsonb ? 'jobs' as ok`)).toEqual([{ ok: true }]);
    expect(await as('worker', `select jobs.publish('follow.up') > 0 as ok`)).toEqual([{ ok: true }]);
    // waitFor's question, as a worker asks it: whether a job is active, without reading its body.
    expect(await as('worker', `select exists (select 1 from jobs.job_queue q where q.job_id = 1) as known`))
      .toEqual([{ known: expect.any(Boolean) }]);
    await denied('worker', `select body from jobs.job_queue`);
    await denied('worker', `select jobs.redrive()`);
    await denied('worker', `select jobs.create_queue('evil')`);
    await denied('worker', `select jobs.pause_queue('default')`);
    await denied('worker', `delete from jobs.job_queue`);
  });

  it('a worker login can wait for a job: an ended (or archived) one answers, an active one times out (not permission denied)', async () => {
    const login = `${prefix}_wlogin`;
    await sql(`create role ${login} login in role ${prefix}_worker`);
    const url = new URL(db.url);
    url.username = login;
    const q = createQueue({ connectionString: url.href, tasks: {} });
    try {
      const ended = (await sql<{ id: string }>(`select jobs.publish('w.ended')::text as id`))[0]!.id;
      await sql(`select jobs.ack(job_id) from jobs.consume_topic('w.ended', 1)`);
      const active = (await sql<{ id: string }>(`select jobs.publish('w.active', null, now() + interval '1 hour')::text as id`))[0]!.id;
      expect(await q.waitFor(ended)).toMatchObject({ status: 'success' });
      // …and once maintain has archived it.
      await sql(`select jobs.maintain('0 seconds', true)`);
      expect(await sql(`select count(*)::int as n from jobs.job_archive where job_id = $1`, [ended])).toEqual([{ n: 1 }]);
      expect(await q.waitFor(ended)).toMatchObject({ status: 'success' });
      await expect(q.waitFor(active, { timeoutMs: 100 })).rejects.toMatchObject({ code: 'timed_out' });
    } finally {
      await q.close();
      await sql(`drop role ${login}`);
    }
  });

  it('a publisher login that drains gets a PgDrainError permission_denied, naming what it may not run', async () => {
    const login = `${prefix}_plogin`;
    await sql(`create role ${login} login in role ${prefix}_publisher`);
    const url = new URL(db.url);
    url.username = login;
    const q = createQueue({ connectionString: url.href, tasks: {} });
    try {
      expect(await q.publish('p.ok')).toMatch(/^\d+$/);
      await expect(q.drain(10, Date.now() + 60_000)).rejects.toMatchObject({
        name: 'PgDrainError', code: 'permission_denied', message: expect.stringMatching(/^permission denied for function claim_json/) });
    } finally {
      await q.close();
      await sql(`drop role ${login}`);
    }
  });

  it('an admin reads the migrations applied but cannot change that record (the owner\'s next migrate reads it)', async () => {
    expect(await as('admin', `select count(*)::int > 0 as ok from jobs.migration`)).toEqual([{ ok: true }]);
    await denied('admin', `delete from jobs.migration where version = 1`);
    await denied('admin', `insert into jobs.migration (version, name) values (1000, 'x')`);
    await denied('admin', `update jobs.migration set checksum = null`);
  });

  it('an admin does everything: cancel, redrive, queues, views', async () => {
    expect(await as('admin', `select jobs.redrive() >= 0 as ok, jobs.pause_queue('default') as p`)).toEqual([{ ok: true, p: true }]);
    expect(await as('admin', `select count(*)::int > 0 as ok from jobs.all`)).toEqual([{ ok: true }]);
    expect(await as('admin', `select jobs.cancel(job_id) as r from jobs.job_queue limit 1`)).toEqual([{ r: 'cancelled' }]);
  });

  it('every SECURITY DEFINER function pins its search_path; a role cannot hijack it', async () => {
    const loose = await sql(`select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                             where n.nspname = 'jobs' and p.prosecdef
                               and not coalesce(p.proconfig, '{}') @> array['search_path=pg_catalog, pg_temp']`);
    expect(loose).toEqual([]);
    const definers = await sql<{ n: number }>(`select count(*)::int as n from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                                               where n.nspname = 'jobs' and p.prosecdef`);
    expect(definers[0]!.n).toBeGreaterThan(10);
    // A publisher with its own now() first on its search_path still gets the real one inside publish.
    await client.query('begin');
    try {
      await client.query(`create schema evil; create function evil.now() returns timestamptz language sql as $$ select '2000-01-01'::timestamptz $$`);
      await client.query(`grant usage on schema evil to ${prefix}_publisher`);
      await client.query(`set local role ${prefix}_publisher`);
      await client.query(`set local search_path = evil, pg_catalog`);
      await client.query(`select jobs.publish('evil.check')`);
      await client.query('reset role');
      const { rows } = await client.query(`select created_at > '2020-01-01' as ok from jobs.job_queue where task = 'evil.check'`);
      expect(rows).toEqual([{ ok: true }]);
    } finally {
      await client.query('rollback');
    }
  });

  it('a bad prefix names the field', async () => {
    await expect(sql(`select jobs.create_roles('Bad-Prefix')`)).rejects.toMatchObject({ code: 'PD016', column: 'prefix' });
  });
});
