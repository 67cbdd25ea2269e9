// pg_cron in its background-worker mode, for real: cron.use_background_workers
// = on (as managed services often run it, and where pg_cron's libpq
// connections would need a password) runs each command in a background worker
// of the server, not over a connection: one transaction that pg_cron starts
// and commits itself, its statements parsed and run one by one, a procedure's
// COMMIT and VACUUM allowed only as a command's only statement. Every command
// kind pgdrain registers fires here, in the same minute (pg_cron 1.4
// fires at minute boundaries; its '5 seconds' syntax is 1.5's): a schedule's
// tick (also as a role at a SERIALIZABLE default, its row changed by another
// session across the minute: as cron.test.ts's 'a real firing at a
// SERIALIZABLE default'), an HTTP drain's (pg_net's stand-in: no network),
// maintenance's CALL of a procedure that commits, its VACUUM, and the
// documented `call jobs.drain_sql(…)`. pg_cron installs only in its
// cron.database_name (`postgres`): this file starts its own cluster, as
// cron-privileges.test.ts does, with the mode on (a postmaster setting).
// Without pg_cron every test here fails: install postgresql-15-cron.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateWithNoteTask } from './support/cron-fixture.js';
import { until } from './support/drain-process.js';
import { PG_NET_STAND_IN } from './support/pg-net-stand-in.js';
import { startServer, type Server } from './support/postgres.js';

let server: Server;
let pool: pg.Pool; // postgres, superuser, in database postgres
const sql = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await pool.query(text, params)).rows as R[];

/** The pgdrain pg_cron jobs fired here (and the test's own drain_sql one), by jobname. */
const FIRED = ['pgdrain:schedule:beat', 'pgdrain:schedule:serial', 'pgdrain:http:default', 'pgdrain:maintain', 'pgdrain:vacuum',
               'pgdrain:test:drain-sql', 'pgdrain:test:drain-sql-long'];

/** The fired jobs' pg_cron ids, by jobname, once registered (their runs outlive their rows in cron.job). */
const jobids = new Map<string, string>();

/** Each fired job's runs so far: how many ended, how many succeeded, how many are still going, failures' messages.
 *  In this mode pg_cron 1.4 records a run 'succeeded' at the end of each statement of its command, as it goes
 *  (a tick's first, its `set transaction …`: 'succeeded', return_message 'SET', while its select still waits or
 *  runs, then fails or publishes and commits). A run has ended once its status says so for more than that
 *  'SET' and its background worker (backend_type 'pg_cron', the job's command its query; one run of a job at a
 *  time) has exited: its transaction committed or rolled back. Read as ended before, a tick still waiting on its
 *  row counted as succeeded, its job not yet published (CI, loaded). */
const runs = async () => {
  const rows = await sql<{ jobid: string; ended: number; succeeded: number; going: number; errors: string[] }>(
    `select jobid::text, count(*) filter (where over)::int as ended,
            count(*) filter (where over and status = 'succeeded')::int as succeeded,
            count(*) filter (where not over)::int as going,
            coalesce(array_agg(return_message) filter (where over and status = 'failed'), '{}') as errors
     from (select d.jobid, d.status, d.return_message,
                  d.status in ('succeeded', 'failed') and d.return_message is distinct from 'SET'
                  and not (d.runid = max(d.runid) over (partition by d.jobid)
                           and exists (select from pg_stat_activity a where a.backend_type = 'pg_cron' and a.query = d.command)) as over
           from cron.job_run_details d where d.jobid = any($1::bigint[]) and d.runid <> $2) d
     group by 1`, [[...jobids.values()], OLD_RUN]);
  const byId = new Map(rows.map(({ jobid, ...r }) => [jobid, r]));
  return Object.fromEntries([...jobids].map(([name, id]) => [name, byId.get(id) ?? { ended: 0, succeeded: 0, going: 0, errors: [] }]));
};

/** A run of pg_cron's log past retention, made up for maintenance to prune. */
const OLD_RUN = 1000001;

/** The backend_type of a session running `text` that waits on a lock, if one does. */
const waiterOnLock = async (text: string) =>
  (await sql<{ backend_type: string }>(`select backend_type from pg_stat_activity where datname = current_database()
                                        and wait_event_type = 'Lock' and query like $1`, [`%${text}%`]))[0]?.backend_type;

beforeAll(async () => {
  server = await startServer({ settings: ['-c cron.use_background_workers=on', '-c max_worker_processes=24',
                                          '-c cron.max_running_jobs=12'] });
  if (server.kind !== 'cluster' || !server.pgCron) {
    await server.stop();
    throw new Error(`this test starts PostgreSQL with pg_cron in its background-worker mode: it needs a cluster it started itself, ` +
      `pg_cron preloaded, got a '${server.kind}' server (pg_cron ${server.pgCron ? '' : 'not '}preloaded): unset TEST_DATABASE_URL ` +
      'and PGDRAIN_TEST_POSTGRES, install the PostgreSQL server binaries and postgresql-15-cron (.ci/run does); it must not be skipped');
  }
  pool = new pg.Pool({ connectionString: server.url, max: 4 });
  expect(await sql(`select current_setting('cron.use_background_workers') as bg`)).toEqual([{ bg: 'on' }]);
  await sql('create extension pg_cron');
  await migrateWithNoteTask(server.url, sql);
  await sql(PG_NET_STAND_IN); // pg_net's signature, recording each request (test/support/pg-net-stand-in.ts)
}, 120_000);

afterAll(async () => {
  await pool?.end();
  await server?.stop();
});

describe('pg_cron with cron.use_background_workers = on: every command pgdrain registers, fired for real', () => {
  let fired: Awaited<ReturnType<typeof runs>> = {};
  let serialWaiter: string | undefined; // the backend_type of the SERIALIZABLE tick seen waiting on its row

  // Registers them all to fire every minute, then waits for a minute's firing of each: the SERIALIZABLE tick
  // waits on its schedule's row, held by another session until it does. The tests below read what they did.
  beforeAll(async () => {
    // What maintenance has to do: an ended job past retention, and a run of pg_cron's log as old.
    await sql(`select jobs.publish('old.job', now => now() - interval '10 days')`);
    await sql(`select jobs.ack(job_id, null, now() - interval '10 days') from jobs.claim(1, 'old.job', null, now() - interval '10 days')`);
    // What drain_sql runs (its timeout within the call's budget, 20 s).
    await sql(`select jobs.publish('sql:app.note', '{"from":"pg_cron worker"}', timeout_seconds => 10)`);

    expect(await sql(`select jobs.schedule('beat', '* * * * *', 'cron.beat', '{"beat":1}') as r`)).toEqual([{ r: 'pg_cron' }]);
    await sql(`select jobs.schedule_http_drain('https://app.example/drain', 'secret', '* * * * *', body => '{"batchSize":50}')`);
    await sql(`select jobs.schedule_maintenance('* * * * *', '7 days', true, 30)`);
    // pgdrain registers its VACUUM every 10 minutes: fired here at every minute, its command as registered.
    await sql(`select cron.alter_job(jobid, schedule => '* * * * *') from cron.job where jobname = 'pgdrain:vacuum'`);
    await sql(`select cron.schedule('pgdrain:test:drain-sql', '* * * * *', 'call jobs.drain_sql(10, 20)')`);
    // And one whose queue holds a due job it never fits (timeout 30, budget 20): it fails, after its commits.
    await sql(`select jobs.create_queue('cronlong'); select jobs.publish('sql:app.note', '{}', timeout_seconds => 30, queue => 'cronlong')`);
    await sql(`select cron.schedule('pgdrain:test:drain-sql-long', '* * * * *', $$call jobs.drain_sql(10, 20, 'cronlong')$$)`);
    await sql(`insert into cron.job_run_details (jobid, runid, username, database, command, status, start_time, end_time)
               select jobid, $1, 'postgres', 'postgres', 'x', 'succeeded', now() - interval '9 days', now() - interval '9 days'
               from cron.job where jobname = 'pgdrain:schedule:beat'`, [OLD_RUN]);

    // pg_cron runs a job as its username: this one's, at a SERIALIZABLE default.
    await sql(`create role pgdrain_serial_ticks login superuser;
               alter role pgdrain_serial_ticks set default_transaction_isolation = 'serializable'`);
    await sql(`select jobs.schedule('serial', '* * * * *', 'cron.serial');
               update cron.job set username = 'pgdrain_serial_ticks' where jobname = 'pgdrain:schedule:serial'`);
    for (const { jobname, jobid } of await sql<{ jobname: string; jobid: string }>(
      `select jobname, jobid::text from cron.job where jobname = any($1)`, [FIRED])) jobids.set(jobname, jobid);
    expect([...jobids.keys()].sort()).toEqual([...FIRED].sort());
    const holder = await pool.connect();
    try {
      await holder.query(`begin; update jobs.recurring set updated_at = updated_at where name = 'serial'`);
      // Up to ~60 s to the next minute (a tick that ran before the row was held: the next); a failed run ends the wait too.
      serialWaiter = await until(async () => (await waiterOnLock(`jobs.run_schedule('serial')`))
                                              ?? ((await runs())['pgdrain:schedule:serial']!.errors.length > 0 && 'none: a run failed'),
                                 "the SERIALIZABLE tick to wait on its schedule's row", 150_000, 200);
      await holder.query('commit');
    } finally {
      holder.release(true); // not back to the pool: a wait that timed out leaves its transaction open
    }
    await until(async () => Object.values(await runs()).filter((r) => r.ended > 0).length === FIRED.length,
                'every job to end a run', 90_000, 500).catch(() => undefined); // each test below says which did not
    // No more firings; those started end.
    await sql(`select cron.unschedule(jobid) from cron.job where jobname = any($1)`, [FIRED]);
    await until(async () => Object.values(await runs()).every((r) => r.going === 0),
                'the runs started to end', 90_000, 500).catch(() => undefined);
    fired = await runs();
  }, 300_000);

  /** The job's runs: at least one, every one succeeded (else pg_cron's messages). */
  const expectSucceeded = (jobname: string) => {
    const r = fired[jobname]!;
    expect({ jobname, ...r, ran: r.ended > 0 }).toEqual({ jobname, ended: r.succeeded, succeeded: r.succeeded, going: 0, errors: [], ran: true });
    return r.succeeded;
  };

  it("a schedule's tick (`set transaction isolation level read committed; select jobs.run_schedule(name)`) publishes", async () => {
    const n = expectSucceeded('pgdrain:schedule:beat');
    expect(await sql(`select body from jobs.job_queue where task = 'cron.beat'`)).toEqual(Array.from({ length: n }, () => ({ body: { beat: 1 } })));
    expect(await sql(`select last_run_at is not null as ran, last_error from jobs.recurring where name = 'beat'`))
      .toEqual([{ ran: true, last_error: null }]);
  });

  it("a tick as a role at a SERIALIZABLE default, its row changed across the minute: it runs at READ COMMITTED, waits, publishes", async () => {
    expect(serialWaiter).toBe('pg_cron'); // a background worker of pg_cron's, not a 'client backend'
    const n = expectSucceeded('pgdrain:schedule:serial');
    // The schedule's own record first: a tick whose publish failed succeeds in pg_cron's log and says why here.
    expect(await sql(`select last_run_at is not null as ran, last_error, skipped_ticks::int, runner from jobs.recurring where name = 'serial'`))
      .toEqual([{ ran: true, last_error: null, skipped_ticks: 0, runner: 'pg_cron' }]);
    expect(await sql(`select count(*)::int as n from jobs.all where task = 'cron.serial'`)).toEqual([{ n }]);
  });

  it("an HTTP drain's tick posts to the endpoint with the token (pg_net's stand-in)", async () => {
    const n = expectSucceeded('pgdrain:http:default');
    expect(await sql(`select url, body, headers->>'Authorization' as auth from net.requests`)).toEqual(
      Array.from({ length: n }, () => ({ url: 'https://app.example/drain', body: { batchSize: 50 }, auth: 'Bearer secret' })));
  });

  it('maintenance (`call jobs.run_maintenance(…)`, a procedure that commits) removes what is past retention, pg_cron\'s old runs too', async () => {
    expectSucceeded('pgdrain:maintain');
    expect(await sql(`select count(*)::int as n from jobs.all where task = 'old.job'`)).toEqual([{ n: 0 }]);
    expect(await sql(`select count(*)::int as n from cron.job_run_details where runid = $1`, [OLD_RUN])).toEqual([{ n: 0 }]);
  });

  it("maintenance's VACUUM (analyze) of jobs.job_queue runs", async () => {
    expectSucceeded('pgdrain:vacuum');
    await until(async () => (await sql(`select 1 from pg_stat_user_tables where relid = 'jobs.job_queue'::regclass
                                        and vacuum_count > 0 and analyze_count > 0`)).length > 0, "the VACUUM's counts", 30_000, 200);
  });

  it('`call jobs.drain_sql(…)` (a procedure that commits after each job) runs a SQL task', async () => {
    expectSucceeded('pgdrain:test:drain-sql');
    expect(await sql(`select state from jobs.all where task = 'sql:app.note' and queue = 'default'`)).toEqual([{ state: 'success' }]);
    expect(await sql(`select b from app.notes`)).toEqual([{ b: { from: 'pg_cron worker' } }]);
  });

  it('a `call jobs.drain_sql(…)` that never fits a due job (its timeout not under the budget) fails in pg_cron\'s log, naming it', async () => {
    const r = fired['pgdrain:test:drain-sql-long']!;
    expect(r).toMatchObject({ succeeded: 0, going: 0 });
    expect(r.ended).toBeGreaterThan(0);
    expect(r.errors).toEqual(Array.from({ length: r.ended }, () =>
      expect.stringContaining('budget: 20 seconds is not over the 30-second timeout of a due job of task sql:app.note')));
    expect(await sql(`select attempt, lease_until from jobs.job_queue where queue = 'cronlong'`)).toEqual([{ attempt: 0, lease_until: null }]);
  });
});
