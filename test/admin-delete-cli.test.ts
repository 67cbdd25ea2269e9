// pgdrain delete <id...> and pgdrain queue delete-ended (sql/0036) as a child process against a real PostgreSQL
// (dist/cli.mjs: `npm run build` first).
import { beforeEach, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;

const cli = (...args: string[]) => runCli(db.url, ...args);
const publish = async (args = '') =>
  (await sql<{ id: string }>(`select jobs.publish('t', scheduled_at => now() + interval '1 hour'${args})::text as id`))[0]!.id;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.job_archive, jobs.dependency');
});

it('delete prints what it deleted and the running jobs it left; --json as queue.deleteJobs answers', async () => {
  const [waiting, ended] = [await publish(), await publish()];
  await sql(`select jobs.complete(array[$1::bigint])`, [ended]);
  const run = (await sql<{ id: string }>(`select jobs.publish('t')::text as id`))[0]!.id;
  expect(await sql(`select job_id::text as id from jobs.consume(1)`)).toEqual([{ id: run }]);
  expect(await cli('delete', waiting, ended, run, '999999')).toEqual({ code: 0, stderr: '',
    stdout: `deleted 1 waiting, 1 ended\nleft running: ${run} (cancel them, then delete them once ended)\n` });
  expect(await sql(`select job_id::text as id from jobs.all`)).toEqual([{ id: run }]);
  expect(await cli('delete', run, '--json')).toEqual({ code: 0, stderr: '', stdout: `{"waiting":0,"ended":0,"running":["${run}"]}\n` });
  await sql(`select jobs.ack($1::bigint)`, [run]);
  expect(await cli('delete', run)).toEqual({ code: 0, stderr: '', stdout: 'deleted 0 waiting, 1 ended\n' });
});

it('queue delete-ended prints how many it deleted: --before, --max-rows', async () => {
  const ids = [await publish(), await publish(), await publish()];
  await sql(`select jobs.complete($1::bigint[])`, [ids]);
  await sql(`update jobs.job set ended_at = '2020-01-01T00:00:00Z' where job_id = $1`, [ids[0]]);
  expect(await cli('queue', 'delete-ended', 'default', '--before', '2020-01-02T00:00:00Z')).toEqual({ code: 0, stderr: '', stdout: '1\n' });
  expect(await cli('queue', 'delete-ended', 'default', '--max-rows', '1')).toMatchObject({ code: 0, stdout: '1\n' });
  expect(await cli('queue', 'delete-ended', 'default')).toMatchObject({ code: 0, stdout: '1\n' });
  expect(await sql(`select count(*)::int as n from jobs.job`)).toEqual([{ n: 0 }]);
});

it('bad input is a usage error (exit 2) naming the argument or flag; nothing changes', async () => {
  const a = await publish();
  for (const [args, message] of [
    [['delete', a, 'x'], /^pgdrain: id: must be a job id.*"x"/m],
    [['delete'], /missing required argument 'id'/],
    [['queue', 'delete-ended', 'a b'], /^pgdrain: name: must be dot-separated words/m],
    [['queue', 'delete-ended', 'default', '--max-rows', '0'], /--max-rows.*must be an integer from 1 to 10000000/],
    [['queue', 'delete-ended', 'default', '--before', 'yesterday'], /--before.*ISO 8601/],
  ] as const) {
    const r = await cli(...args);
    expect(r.code, args.join(' ')).toBe(2);
    expect(r.stderr, args.join(' ')).toMatch(message);
  }
  expect(await sql(`select job_id::text as id from jobs.job_queue`)).toEqual([{ id: a }]);
});
