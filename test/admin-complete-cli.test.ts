// pgdrain complete <id...> and pgdrain cancel --key (sql/0036) as a child process against a real PostgreSQL.
import { beforeEach, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;

const cli = (...args: string[]) => runCli(db.url, ...args);
const publish = async (args = '') =>
  (await sql<{ id: string }>(`select jobs.publish('t', scheduled_at => now() + interval '1 hour'${args})::text as id`))[0]!.id;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

it('complete prints how many ended, with --result recorded; cancel --key prints the state', async () => {
  const [a, b] = [await publish(), await publish()];
  expect(await cli('complete', a, b, '999999', '--result', '{"by":"cli"}')).toEqual({ code: 0, stdout: '2\n', stderr: '' });
  expect(await sql(`select job_id::text as id, status, result from jobs.job order by job_id`)).toEqual([
    { id: a, status: 'success', result: { by: 'cli' } }, { id: b, status: 'success', result: { by: 'cli' } }]);
  expect(await cli('complete', a)).toMatchObject({ code: 0, stdout: '0\n' });
  const k = await publish(`, dedupe_key => 'welcome:42'`);
  expect(await cli('cancel', '--key', 'welcome:42', '--reason', 'sent by hand')).toEqual({ code: 0, stdout: 'cancelled\n', stderr: '' });
  expect(await sql(`select status, error from jobs.job where job_id = $1`, [k])).toEqual([{ status: 'cancelled', error: 'cancelled: sent by hand' }]);
  expect(await cli('cancel', '--key', 'welcome:42')).toMatchObject({ code: 0, stdout: 'not active\n' });
  // Ids as before.
  expect(await cli('cancel', await publish())).toMatchObject({ code: 0, stdout: 'cancelled\n' });
});

it('bad input is a usage error (exit 2) naming the argument or flag; nothing changes', async () => {
  const a = await publish(`, dedupe_key => 'k'`);
  for (const [args, message] of [
    [['complete', a, 'x'], /^pgdrain: id: must be a job id.*"x"/m],
    [['complete', a, '--result', '{oops'], /--result.*must be JSON/],
    [['cancel'], /^pgdrain: id: give job ids or --key$/m],
    [['cancel', a, '--key', 'k'], /^pgdrain: --key: give job ids or --key, not both$/m],
    [['cancel', '--key', ''], /--key.*must be a non-empty text/],
  ] as const) {
    const r = await cli(...args);
    expect(r.code, args.join(' ')).toBe(2);
    expect(r.stderr, args.join(' ')).toMatch(message);
  }
  expect(await sql(`select count(*)::int as n from jobs.job`)).toEqual([{ n: 0 }]);
});
