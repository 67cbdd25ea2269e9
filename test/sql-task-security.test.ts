// Security review c29, each finding as its repro did it, with real roles:
// F1 a publisher (or an HTTP token holder) picked the function jobs.drain_sql
// runs as its caller: only functions on the list jobs.allow_sql_task keeps
// run now, checked at publish and again at run time. F2 a role able to create
// functions on the caller's search_path stood in for built-ins inside
// drain_sql, create_roles and cron_next. F3 pgdrain_admin read the HTTP
// drain's token. F5 a pgdrain_worker could not run drain_sql.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue, migrate, schedule } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
// Roles are cluster-wide: a prefix of this run's own.
const prefix = `c${Date.now().toString(36)}`;
const publisher = `${prefix}_publisher`;
const worker = `${prefix}_worker`;
const admin = `${prefix}_admin`;
const mallory = `${prefix}_mallory`; // a publisher, and nothing more
const shadower = `${prefix}_shadower`; // no pgdrain role: may create in schema shadow only
const client = new pg.Client({ connectionString: db.url }); // a superuser, as pg_cron's jobs of postgres run

/** Runs statements as role in one transaction, rolled back unless commit; the last one's rows. */
async function as(role: string, texts: string[], commit = false): Promise<unknown[]> {
  await client.query('begin');
  try {
    await client.query(`set local role ${role}`);
    let rows: unknown[] = [];
    for (const text of texts) rows = (await client.query(text)).rows;
    await client.query(commit ? 'commit' : 'rollback');
    return rows;
  } catch (error) {
    await client.query('rollback');
    throw error;
  }
}

/** A session of its own (drain_sql commits, so it cannot run inside as()'s transaction). */
async function session<T>(setup: string[], run: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  try {
    for (const text of setup) await c.query(text);
    return await run(c);
  } finally {
    await c.end();
  }
}
/** The search_path of the sessions that drain: app.record names its table unqualified. */
const appPath = 'set search_path = app, public';
const drainSql = async (c: pg.Client, budget = 30) =>
  (await c.query<{ report: Record<string, unknown> }>(`call jobs.drain_sql(10, ${budget}, 'sql')`)).rows[0]!.report;

beforeAll(async () => {
  await client.connect();
  await migrate(db.driver, { roles: prefix }); // already migrated: only the roles
  await sql(`select jobs.create_queue('sql')`);
  await sql(`create role ${mallory} nologin in role ${publisher}; create role ${shadower} nologin;
    create schema tenant authorization ${mallory};
    create schema shadow authorization ${shadower};
    create schema app;
    create table app.seen (b jsonb, by_role text);
    create function app.record(b jsonb) returns jsonb language plpgsql as $$
    begin
      insert into app.seen values (b, current_user);
      if b ? 'fail' then raise exception 'failed on purpose'; end if;
      -- Unqualified: found on the caller's search_path.
      return jsonb_build_object('path', current_setting('search_path'), 'seen', (select count(*) from seen));
    end $$;
    grant usage on schema app to ${worker};
    grant insert, select on app.seen to ${worker};`);
  // F1's function, made by the publisher in a schema of its own: run as a superuser, it makes its author one.
  await as(mallory, [`create function tenant.evil(body jsonb) returns jsonb language plpgsql as $$
    begin execute 'alter role ${mallory} superuser'; return jsonb_build_object('ran_as', current_user); end $$`], true);
});
afterAll(async () => {
  await client.end();
});

describe('F1: a sql: task runs only a function the owner or an admin allowed', () => {
  it('a publisher cannot make drain_sql run its own function: refused at every way to publish', async () => {
    const refused = { code: 'PD018', column: 'task',
                      message: expect.stringMatching(/^task: sql:tenant\.evil is not an allowed SQL task: .*select jobs\.allow_sql_task\('tenant\.evil'\)$/) };
    await expect(as(publisher, [`select jobs.publish('sql:tenant.evil', '{}', timeout_seconds => 10, queue => 'sql')`])).rejects.toMatchObject(refused);
    await expect(as(mallory, [`select jobs.publish('sql:tenant.evil', '{}', timeout_seconds => 10, queue => 'sql')`])).rejects.toMatchObject(refused);
    await expect(as(publisher, [`select jobs.publish_bulk(array[row('sql:tenant.evil', null, null, null, null, null)::jobs.bulk_job], queue => 'sql')`]))
      .rejects.toMatchObject({ code: 'PD018', column: 'jobs[1].task' });
    await expect(as(publisher, [`select jobs.publish_arrays(array['plain.job', 'sql:tenant.evil'], queue => 'sql')`]))
      .rejects.toMatchObject({ code: 'PD018', column: 'jobs[2].task' });
    await expect(sql(`select jobs.schedule('evil', '* * * * *', 'sql:tenant.evil', queue => 'sql')`))
      .rejects.toMatchObject({ code: 'PD018', column: 'task' });

    // TypeScript and HTTP (POST /jobs with only the token, as f1c did) get the same answer, naming the field.
    const queue = createQueue({ driver: { ...db.driver, close: async () => {} } });
    await expect(queue.publish('sql:tenant.evil', {}, { queue: 'sql' })).rejects.toMatchObject({ code: 'invalid_argument', field: 'task' });
    // TypeScript counts jobs from 0, as its own checks do; the database's jobs[2] is the caller's jobs[1].
    await expect(queue.publishBulk([{ task: 'ok.job' }, { task: 'sql:tenant.evil' }, { task: 'ok.job' }], 'sql'))
      .rejects.toMatchObject({ code: 'invalid_argument', field: 'jobs[1].task', message: expect.stringMatching(/^jobs\[1\]\.task: /) });
    await expect(schedule(db.driver, { name: 'evil', cron: '* * * * *', task: 'sql:tenant.evil' }))
      .rejects.toMatchObject({ code: 'invalid_argument', field: 'spec.task' });
    const token = 'tok-0123456789abcdef';
    const app = createApp({ queue, token });
    const answer = await app.request('/jobs', { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
                                                body: JSON.stringify({ task: 'sql:tenant.evil', queue: 'sql', timeoutSeconds: 5 }) });
    expect(answer.status).toBe(400);
    expect(((await answer.json()) as { error: unknown }).error).toMatchObject({ code: 'invalid_argument', field: 'task' });
    const bulk = await app.request('/jobs', { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
                                              body: JSON.stringify({ jobs: [{ task: 'sql:tenant.evil' }], queue: 'sql' }) });
    expect(bulk.status).toBe(400);
    expect(((await bulk.json()) as { error: unknown }).error).toMatchObject({ code: 'invalid_argument', field: 'jobs[0].task' });

    expect(await sql(`select count(*)::int as n from jobs.job_queue`)).toEqual([{ n: 0 }]);
    expect(await sql(`select count(*)::int as n from jobs.recurring`)).toEqual([{ n: 0 }]);
    await session([], async (c) => expect(await drainSql(c)).toMatchObject({ claimed: 0 }));
    expect(await sql(`select rolsuper from pg_roles where rolname = $1`, [mallory])).toEqual([{ rolsuper: false }]);
  });

  it('only the owner and an admin keep the list, through functions that check what they add', async () => {
    await expect(as(publisher, [`select jobs.allow_sql_task('tenant.evil')`])).rejects.toMatchObject({ code: '42501' });
    await expect(as(mallory, [`select jobs.allow_sql_task('tenant.evil')`])).rejects.toMatchObject({ code: '42501' });
    await expect(as(worker, [`select jobs.allow_sql_task('app.record')`])).rejects.toMatchObject({ code: '42501' });
    await expect(as(admin, [`insert into jobs.sql_task (name) values ('tenant.evil')`])).rejects.toMatchObject({ code: '42501' });
    await expect(as(publisher, [`select * from jobs.sql_task`])).rejects.toMatchObject({ code: '42501' });

    expect(await as(admin, [`select jobs.allow_sql_task('app.record') as first, jobs.allow_sql_task('app.record') as again`]))
      .toEqual([{ first: true, again: false }]);
    expect(await as(admin, [`select jobs.disallow_sql_task('app.record') as r`])).toEqual([{ r: false }]); // rolled back: never allowed
    // One entry per function, whatever the spelling (unquoted names fold to lower case): disallowed, it is gone under every one.
    expect(await as(admin, [`select jobs.allow_sql_task('App.Record') as a, jobs.allow_sql_task('app.record') as b`,
                            `select jobs.disallow_sql_task('app.RECORD') as gone`]))
      .toEqual([{ gone: true }]);
    expect(await as(admin, [`select jobs.allow_sql_task('App.Record')`, `select jobs.disallow_sql_task('app.RECORD')`,
                            `select count(*)::int as left from jobs.sql_task where name ilike 'app.record'`])).toEqual([{ left: 0 }]);
    expect(await as(admin, [`select jobs.allow_sql_task('App.Record')`, `select jobs.publish('sql:app.record', queue => 'sql') > 0 as ok`]))
      .toEqual([{ ok: true }]);
    await expect(as(admin, [`select jobs.allow_sql_task('app.record')`, `select jobs.disallow_sql_task('app.record')`,
                            `select jobs.publish('sql:App.Record', queue => 'sql')`])).rejects.toMatchObject({ code: 'PD018' });
    for (const [name, rule] of [['app.missing', /^name: no function app\.missing\(jsonb\): create it first/],
                                ['pg_catalog.jsonb_pretty', /^name: functions in schema pg_catalog cannot be task handlers$/],
                                ['app', /^name: must be schema\.function/]] as const) {
      await expect(as(admin, [`select jobs.allow_sql_task('${name}')`])).rejects.toMatchObject({ code: 'PD018', column: 'name', message: expect.stringMatching(rule) });
    }
  });

  it('an allowed task publishes and runs; disallowed after its publish, its job fails without retry and the function does not run', async () => {
    await sql(`truncate jobs.job_queue, jobs.job, app.seen`);
    expect(await sql(`select jobs.allow_sql_task('app.record') as r`)).toEqual([{ r: true }]);
    await as(publisher, [`select jobs.publish('sql:app.record', '{"n":1}', timeout_seconds => 10, queue => 'sql')`,
                         `select jobs.publish_arrays(array['sql:app.record'], '[{"n":2}]', timeouts => array[10], queue => 'sql')`], true);
    await session([appPath], async (c) => expect(await drainSql(c)).toMatchObject({ claimed: 2, succeeded: 2 }));

    await as(publisher, [`select jobs.publish('sql:app.record', '{"n":3}', timeout_seconds => 10, max_retries => 3, queue => 'sql')`], true);
    // A drain-run schedule of it too: its ticks fail from now on, recorded where jobs.schedules shows them.
    await sql(`select jobs.schedule('tick', '* * * * *', 'sql:app.record', queue => 'sql', runner => 'drains', now => now() - interval '2 minutes')`);
    expect(await sql(`select jobs.disallow_sql_task('app.record') as r`)).toEqual([{ r: true }]);
    await session([appPath], async (c) => expect(await drainSql(c)).toMatchObject({ claimed: 1, failed: 1, retried: 0 }));
    expect(await sql(`select body, status, attempts, error from jobs.job where body->>'n' = '3'`)).toEqual([{
      body: { n: 3 }, status: 'failure', attempts: 1,
      error: `task sql:app.record: not an allowed SQL task (allow it with jobs.allow_sql_task('app.record')) (SQLSTATE PD018)` }]);
    expect(await sql(`select b from app.seen order by b->>'n'`)).toEqual([{ b: { n: 1 } }, { b: { n: 2 } }]);
    expect((await sql<{ last_error: string }>(`select last_error from jobs.schedules where name = 'tick'`))[0]!.last_error)
      .toMatch(/^task: sql:app\.record is not an allowed SQL task/);
    await sql(`select jobs.unschedule('tick')`);
  });
});

describe('F2: a function on the caller\'s search_path never stands in for a built-in', () => {
  // Stand-ins with the exact argument types, which beat pg_catalog's
  // polymorphic or variadic built-ins: each records that it ran, and as whom.
  beforeAll(async () => {
    await as(shadower, [`create table shadow.calls (fn text, ran_as text)`,
      `grant insert on shadow.calls to public`,
      `create function shadow.to_jsonb(i integer) returns jsonb language plpgsql as $$
       begin insert into shadow.calls values ('to_jsonb', current_user); return pg_catalog.to_jsonb(i); end $$`,
      `create function shadow.format(f text, a text) returns text language plpgsql as $$
       begin insert into shadow.calls values ('format', current_user); return pg_catalog.format(f, a); end $$`,
      `create function shadow.format(f text, a text, b text) returns text language plpgsql as $$
       begin insert into shadow.calls values ('format', current_user); return pg_catalog.format(f, a, b); end $$`,
      `create function shadow.unnest(a integer[]) returns setof integer language plpgsql as $$
       begin insert into shadow.calls values ('unnest', current_user); return query select pg_catalog.unnest(a); end $$`,
      `grant usage on schema shadow to public`], true);
  });
  const calls = async () => sql(`select fn, ran_as from shadow.calls`);

  it('drain_sql, run by a superuser with shadow on its path: only the task function runs, with the caller\'s path', async () => {
    await sql(`truncate jobs.job_queue, jobs.job, app.seen, shadow.calls; select jobs.allow_sql_task('app.record')`);
    await sql(`select jobs.publish('sql:app.record', '{"n":1}', timeout_seconds => 10, queue => 'sql'),
                      jobs.publish('sql:app.record', '{"fail":true}', timeout_seconds => 10, queue => 'sql')`);
    const path = 'shadow, app, public';
    await session([`set search_path = ${path}`], async (c) => {
      expect(await drainSql(c)).toMatchObject({ claimed: 2, succeeded: 1, retried: 1 });
      expect((await c.query('show search_path')).rows).toEqual([{ search_path: path }]);
    });
    expect(await calls()).toEqual([]);
    expect(await sql(`select result from jobs.job`)).toEqual([{ result: { path, seen: 1 } }]);
    expect(await sql(`select last_error from jobs.job_queue`)).toEqual([{ last_error: 'failed on purpose (SQLSTATE P0001)' }]);
  });

  it('create_roles (migrate --roles) and cron_next (jobs.schedules) do not either', async () => {
    await sql(`truncate shadow.calls`);
    await session([`set search_path = shadow, public`], async (c) => {
      expect((await c.query(`select jobs.create_roles($1) as r`, [prefix])).rows).toEqual([{ r: [publisher, worker, admin] }]);
      expect((await c.query(`select jobs.cron_next('0 9 * * mon-fri', '2030-01-01T00:00:00Z') as t`)).rows)
        .toEqual([{ t: new Date('2030-01-01T09:00:00Z') }]);
    });
    expect(await calls()).toEqual([]);
  });
});

describe('roles', () => {
  it('F3: an admin can neither read nor redirect the HTTP drain\'s token, and changes it through the SECURITY DEFINER functions', async () => {
    await sql(`insert into jobs.http_drain (name, url, token, body, timeout_ms)
               values ('default', 'https://app.example.com/drain', 'the-secret-PGDRAIN_TOKEN-value', '{}', 1000)`);
    await expect(as(admin, [`select token from jobs.http_drain`])).rejects.toMatchObject({ code: '42501' });
    await expect(as(admin, [`update jobs.http_drain set url = 'https://attacker.example/steal'`])).rejects.toMatchObject({ code: '42501' });
    await expect(as(admin, [`insert into jobs.http_drain values ('x', 'https://attacker.example', null, '{}', 1)`])).rejects.toMatchObject({ code: '42501' });
    expect(await sql(`select proname, prosecdef from pg_proc where pronamespace = 'jobs'::regnamespace
                      and proname in ('schedule_http_drain', 'unschedule_http_drain', 'run_http_drain') order by 1`))
      .toEqual([{ proname: 'run_http_drain', prosecdef: true }, { proname: 'schedule_http_drain', prosecdef: true },
                { proname: 'unschedule_http_drain', prosecdef: true }]);
    // Allowed to call it: it gets as far as pg_net, missing here (not a permission error).
    await expect(as(admin, [`select jobs.schedule_http_drain('https://app.example.com/drain', 'new-token')`])).rejects.toMatchObject({ code: '0A000' });
    expect(await as(admin, [`select jobs.unschedule_http_drain() as r`], true)).toEqual([{ r: true }]);
    expect(await sql(`select count(*)::int as n from jobs.http_drain`)).toEqual([{ n: 0 }]);
  });

  it('F5: a worker runs CALL jobs.drain_sql, and the task functions run with the worker\'s privileges', async () => {
    await sql(`truncate jobs.job_queue, jobs.job, app.seen; select jobs.allow_sql_task('app.record');
      create function app.private(b jsonb) returns jsonb language sql as $$ select b $$;
      revoke execute on function app.private(jsonb) from public;
      select jobs.allow_sql_task('app.private');
      select jobs.publish('sql:app.record', '{"n":1}', timeout_seconds => 10, queue => 'sql'),
             jobs.publish('sql:app.private', '{}', timeout_seconds => 10, queue => 'sql')`);
    await session([`set role ${worker}`, appPath], async (c) => {
      expect(await drainSql(c)).toMatchObject({ claimed: 2, succeeded: 1, retried: 1, stoppedBy: 'empty' });
      await expect(c.query(`call jobs.drain_sql(0, 10)`)).rejects.toMatchObject({ code: 'PDC03', column: 'batch' });
    });
    expect(await sql(`select by_role from app.seen`)).toEqual([{ by_role: worker }]);
    expect(await sql(`select last_error from jobs.job_queue`)).toEqual([{ last_error: 'permission denied for function private (SQLSTATE 42501)' }]);
  });

  it('no routine of schema jobs keeps the EXECUTE of PUBLIC, procedures (drain_sql) included, but the two clocks and the tick settings\' check', async () => {
    // jobs.clock and jobs.call_time: every TS publish reads the call's time through them, so a role granted only
    // jobs.publish publishes (neither writes; jobs.clock's other time goes through jobs.check_now, admin-only).
    // jobs.tick_settings_error: what `pgdrain stats` and the dashboard ask of any role (its own session's settings; no write).
    expect(await sql(`select p.oid::regprocedure::text as routine from pg_proc p
                      where p.pronamespace = 'jobs'::regnamespace
                        and (p.proacl is null or exists (select from aclexplode(p.proacl) a where a.grantee = 0))
                      order by 1`)).toEqual([
      { routine: 'jobs.call_time(timestamp with time zone,timestamp with time zone)' },
      { routine: 'jobs.clock(timestamp with time zone)' },
      { routine: 'jobs.tick_settings_error()' }]);
  });
});
