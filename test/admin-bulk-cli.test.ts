// pgdrain cancel <id...>, reschedule, fail (sql/0028) as a child process against a real PostgreSQL.
import { beforeEach, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;

const cli = (...args: string[]) => runCli(db.url, ...args);
const publish = async () => (await sql<{ id: string }>(`select jobs.publish('t')::text as id`))[0]!.id;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

it('cancel several ids, reschedule --at/--delay/--priority, fail --reason print how many', async () => {
  const [a, b, c, d] = [await publish(), await publish(), await publish(), await publish()];
  expect(await cli('cancel', a)).toMatchObject({ code: 0, stdout: 'cancelled\n' });
  expect(await cli('cancel', a, b, '--reason', 'dup')).toMatchObject({ code: 0, stdout: '1\n' });
  expect(await cli('reschedule', c, d, '--at', '2031-01-01T00:00:00Z', '--priority', '4')).toMatchObject({ code: 0, stdout: '2\n' });
  expect(await sql(`select job_id::text as id, scheduled_at = '2031-01-01T00:00:00Z' as moved, priority from jobs.job_queue order by job_id`))
    .toEqual([{ id: c, moved: true, priority: 4 }, { id: d, moved: true, priority: 4 }]);
  expect(await cli('reschedule', c, '--delay', '60')).toMatchObject({ code: 0, stdout: '1\n' });
  expect(await cli('fail', c, d, '--reason', 'tenant deleted')).toMatchObject({ code: 0, stdout: '2\n' });
  expect(await sql(`select status, error from jobs.job where job_id = $1`, [d])).toEqual([{ status: 'failure', error: 'failed: tenant deleted' }]);
});

it('redrive --include-cancelled puts back cancelled jobs among --ids; without it they stay ended', async () => {
  const [a, b] = [await publish(), await publish()];
  expect(await cli('cancel', a, b)).toMatchObject({ code: 0, stdout: '2\n' });
  // The database's notice says why, on stderr.
  expect(await cli('redrive', '--ids', `${a},${b},999999`)).toMatchObject({ code: 0, stdout: '0\n',
    stderr: `pgdrain: not redriven: ${a} (cancelled: give --include-cancelled), ${b} (cancelled: give --include-cancelled), `
      + '999999 (unknown, or deleted by retention)\n' });
  // An id given twice is one job: redriven, nothing said on stderr.
  expect(await cli('redrive', '--ids', `${a},${a}`, '--include-cancelled')).toEqual({ code: 0, stdout: '1\n', stderr: '' });
  expect(await sql(`select job_id::text as id from jobs.job_queue`)).toEqual([{ id: a }]);
  expect(await sql(`select job_id::text as id, status from jobs.job`)).toEqual([{ id: b, status: 'cancelled' }]);
  const r = await cli('redrive', '--include-cancelled');
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/--include-cancelled: needs ids/);
});

it('redrive --max-rows puts back at most that many failed jobs, the oldest first', async () => {
  const ids = [await publish(), await publish(), await publish()];
  expect(await cli('fail', ...ids)).toMatchObject({ code: 0, stdout: '3\n' });
  expect(await cli('redrive', '--max-rows', '2')).toEqual({ code: 0, stdout: '2\n', stderr: '' });
  expect(await sql(`select job_id::text as id from jobs.job_queue order by job_id`)).toEqual([{ id: ids[0] }, { id: ids[1] }]);
  const r = await cli('redrive', '--max-rows', '0');
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/--max-rows/);
  expect(await cli('redrive', '--max-rows', '2')).toMatchObject({ code: 0, stdout: '1\n' });
});

it('bad input is a usage error (exit 2) naming the argument or flag', async () => {
  for (const [args, message] of [
    [['cancel', '1', 'x'], /^pgdrain: id: must be a job id.*"x"/m],
    [['fail', '0'], /^pgdrain: id: must be a job id/m],
    [['reschedule', '1'], /^pgdrain: reschedule: give --at, --delay, --priority, --max-retries or --attempts$/m],
    [['reschedule', '1', '--at', '2031-01-01T00:00:00Z', '--delay', '5'], /give --at or --delay, not both/],
    [['reschedule', '1', '--priority', '2000000'], /--priority.*must be an integer from -1000000 to 1000000/],
    [['reschedule', '1', '--at', 'tomorrow'], /--at.*ISO 8601/],
    [['reschedule', '1', '--delay', '-1'], /--delay.*seconds from 0/],
  ] as const) {
    const r = await cli(...args);
    expect(r.code, args.join(' ')).toBe(2);
    expect(r.stderr, args.join(' ')).toMatch(message);
  }
});
