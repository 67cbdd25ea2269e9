// `pgdrain maintain`: TS maintain() for schedulers that are not pg_cron, run as
// the built CLI (npm run build first) against a real PostgreSQL.
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb, withClient } from './support/db.js';
import { runCli, runCliWith, until } from './support/drain-process.js';
import { formatMaintainReport } from '../src/cli/maintain-command.js';

const db = await testDb();
const sql = db.sql;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.job_archive');
});

/** n ended jobs (ids from `first`), ended `days` ago. */
const ended = (first: number, n: number, days: number) => sql(
  `insert into jobs.job (job_id, task, status, attempts, priority, max_retries, timeout, scheduled_at, created_at, ended_at)
   select $1::bigint + g, 'x.y', 'success', 1, 0, 3, 60, now(), now(), now() - make_interval(days => $3::int)
   from generate_series(1, $2::int) g`, [first, n, days]);

/** A job whose lease ran out a second ago (its drain died). */
async function leaseRanOut(): Promise<string> {
  const [{ id }] = await sql<{ id: string }>(`select jobs.publish('slow.job') as id`) as [{ id: string }];
  await sql('select * from jobs.consume(1)');
  await sql(`update jobs.job_queue set lease_until = now() - interval '1 second' where job_id = $1`, [id]);
  return id;
}

const kept = async () => (await sql<{ job: string[]; archive: string[] }>(
  `select array(select job_id::text from jobs.job order by job_id) as job,
          array(select job_id::text from jobs.job_archive order by job_id) as archive`))[0]!;

describe('pgdrain maintain', () => {
  it('deletes ended jobs past --retention in passes of --max-rows, expires passed leases, and prints the counts', async () => {
    await ended(100, 3, 8);
    await ended(200, 1, 1);
    const id = await leaseRanOut();
    const run = await runCli(db.url, 'maintain', '--retention', String(2 * 86400), '--max-rows', '2');
    expect(run).toEqual({ code: 0, stderr: '', stdout: 'maintained in 2 passes: 3 deleted, 0 archived, 1 leases expired, '
      + '0 schedule ticks, 0 throttle windows, 0 tick misses\n' });
    expect(await kept()).toEqual({ job: ['201'], archive: [] });
    expect(await sql(`select lease_until, attempt from jobs.job_queue where job_id = $1`, [id]))
      .toEqual([{ lease_until: null, attempt: 1 }]);
  });

  it('--archive moves them to jobs.job_archive; --json prints the report as maintain() answers it', async () => {
    await ended(100, 2, 8);
    await ended(200, 1, 1);
    const run = await runCli(db.url, 'maintain', '--archive', '--json');
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ expired: 0, ticks: 0, deleted: 0, archived: 2, windows: 0, misses: 0, left: 0,
                                             passes: 1, caughtUp: true });
    expect(await kept()).toEqual({ job: ['201'], archive: ['101', '102'] });
  });

  it('a spent --budget is said, and exits 0: the next run goes on', async () => {
    await ended(100, 3, 8);
    // A budget of 1 ms is spent by the first pass's round trip.
    const run = await runCli(db.url, 'maintain', '--max-rows', '1', '--budget', '0.001');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^maintained in 1 pass: 1 deleted, .*\n {2}not caught up: --budget ran out/);
  });

  it('rows a pass left for a change after its snapshot are counted and named as the reason it did not catch up', () => {
    // A pass under REPEATABLE READ that found rows changed since its snapshot
    // (test/maintain-isolation-left makes one): the report maintain() answers.
    const report = { expired: 0, ticks: 0, deleted: 3, archived: 0, windows: 0, misses: 0, left: 2, passes: 1, caughtUp: false };
    expect(formatMaintainReport(report)).toBe('maintained in 1 pass: 3 deleted, 0 archived, 0 leases expired, 0 schedule ticks, '
      + '0 throttle windows, 0 tick misses, 2 left for the next pass\n'
      + '  not caught up: a pass left rows another session changed since its snapshot; run it again');
  });

  it.each([
    [['--retention', '-1'], "--retention: must be a number of seconds from 0 to 3153600000"],
    [['--retention', '7d'], "--retention: must be a number of seconds from 0 to 3153600000"],
    [['--retention', '3153600001'], 'must be a number of seconds from 0 to 3153600000'],
    [['--max-rows', '0'], "--max-rows: must be an integer from 1 to 10000000"],
    [['--max-rows', '2.5'], 'must be an integer from 1 to 10000000'],
    [['--budget', '0'], "--budget: must be a number of seconds from 0.001 to 86400"],
    [['--budget', '90000'], 'must be a number of seconds from 0.001 to 86400'],
    [['--archive=yes'], "unknown option '--archive=yes'"],
  ])('%j: one line naming the flag and its rule, exit 2, nothing run', async (flags, message) => {
    await ended(100, 1, 8);
    const run = await runCli(db.url, 'maintain', ...flags);
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toContain(message);
    expect(await kept()).toEqual({ job: ['101'], archive: [] });
  });

  it('a database that cannot be reached exits 1', async () => {
    const run = await runCli(db.url, 'maintain', '--dsn', 'postgres://nobody@127.0.0.1:1/none');
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^pgdrain: .*ECONNREFUSED/);
  });

  // --db-timeout's default (30 s) bounded each pass: one that took longer (a
  // large --max-rows, a lock) was cancelled, rolled back, and the run exited 1
  // 'database unavailable' every time, so maintenance never went on. As for
  // migrate, the bound (or PGDRAIN_DB_TIMEOUT) covers the connection only unless given.
  it('a pass that waits on a lock past PGDRAIN_DB_TIMEOUT ends and is counted; --db-timeout given still bounds it', async () => {
    await ended(100, 2, 8);
    await withClient(db.url, async (holder) => {
      await holder.query('begin');
      await holder.query('lock table jobs.job in exclusive mode');
      const given = await runCli(db.url, 'maintain', '--db-timeout', '1');
      expect(given.code).toBe(1);
      expect(given.stderr).toBe(`pgdrain: database unavailable: no reply from ${new URL(db.url).host} within 1 s (--db-timeout)\n`);
      const waiting = runCliWith({ PGDRAIN_DB_TIMEOUT: '1' }, db.url, 'maintain');
      // Its pass waits past the variable's 1 s, by the server's clock (a bound on it would have cancelled it at 1 s).
      await until(async () => (await sql<{ n: number }>(`select count(*)::int as n from pg_stat_activity
        where wait_event_type = 'Lock' and query like '%jobs.maintain(%' and clock_timestamp() - query_start > interval '3 seconds'`))[0]!.n === 1,
      'the pass to wait for the lock past 3 s');
      await holder.query('commit');
      expect(await waiting).toMatchObject({ code: 0, stderr: '', stdout: expect.stringMatching(/^maintained in 1 pass: 2 deleted,/) });
    });
    expect(await kept()).toEqual({ job: [], archive: [] });
  });
});
