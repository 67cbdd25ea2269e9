// `pgdrain schedule add | list | rm` as users run them: dist/cli.mjs as a
// child process (npm run build first) against a real PostgreSQL without
// pg_cron in this database, so schedules go to the drains.
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;

const cli = (...args: string[]) => runCli(db.url, ...args);

beforeEach(async () => {
  await sql('truncate jobs.recurring, jobs.job_queue');
});

describe('pgdrain schedule', () => {
  it('add, list (table and JSON), add again to change it, rm', async () => {
    const add = await cli('schedule', 'add', 'office', '--cron', '0 9 * * mon-fri', '--task', 'office.open', '--body', '{"door":"front"}',
                          '--priority', '5', '--timeout', '30', '--max-retries', '1', '--overlap', 'skip', '--tz', 'Europe/Paris');
    expect(add).toEqual({ code: 0, stdout: 'drains\n', stderr: '' });
    expect(await sql(`select name, cron, task, body, timeout::float8 as timeout, priority, max_retries, queue, runner, overlap, tz
                      from jobs.recurring`)).toEqual([{ name: 'office', cron: '0 9 * * mon-fri', task: 'office.open',
      body: { door: 'front' }, timeout: 30, priority: 5, max_retries: 1, queue: null, runner: 'drains', overlap: 'skip', tz: 'Europe/Paris' }]);
    expect((await cli('schedule', 'add', 'hourly', '--cron', '@hourly', '--task', 'a.b', '--runner', 'drains')).code).toBe(0);

    const table = await cli('schedule', 'list');
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^name\s+cron\s+tz\s+task\s+runner\s+overlap\s+next_run_at\s+last_run_at\s+skipped\s+last_error$/);
    expect(lines.slice(2).map((l) => l.split(/\s{2,}/).slice(0, 6))).toEqual([
      ['hourly', '@hourly', 'UTC', 'a.b', 'drains', 'allow'],
      ['office', '0 9 * * mon-fri', 'Europe/Paris', 'office.open', 'drains', 'skip']]);
    const listed = JSON.parse((await cli('schedule', 'list', '--json')).stdout) as Record<string, unknown>[];
    const [next] = await sql<{ next_run_at: Date }>(`select next_run_at from jobs.recurring where name = 'office'`);
    expect(listed[1]).toMatchObject({ name: 'office', tz: 'Europe/Paris', overlap: 'skip', skippedTicks: 0, lastSkippedAt: null,
                                      nextRunAt: next!.next_run_at.toISOString(), body: { door: 'front' } });

    // Added again: the definition changes, in place.
    expect((await cli('schedule', 'add', 'office', '--cron', '0 8 * * mon-fri', '--task', 'office.open')).code).toBe(0);
    expect(await sql(`select cron, body, overlap, tz from jobs.recurring where name = 'office'`))
      .toEqual([{ cron: '0 8 * * mon-fri', body: null, overlap: 'allow', tz: null }]);

    expect(await cli('schedule', 'rm', 'office')).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(await cli('schedule', 'rm', 'office')).toEqual({ code: 2, stdout: '', stderr: "pgdrain: name: no schedule named 'office'\n" });
    expect(await sql(`select name from jobs.recurring`)).toEqual([{ name: 'hourly' }]);
    expect((await cli('schedule', 'rm', 'hourly')).code).toBe(0);
    expect(await cli('schedule', 'list')).toEqual({ code: 0, stdout: 'no schedules\n', stderr: '' });
  });

  it('bad flags exit 2 naming the flag and the rule, and add nothing', async () => {
    const add = (...flags: string[]) => cli('schedule', 'add', 'n', '--task', 'a.b', ...flags);
    const bad: [Promise<{ code: number | null; stdout: string; stderr: string }>, RegExp][] = [
      [add('--cron', '* * * *'), /^pgdrain: --cron: must have 5 fields/],
      [add('--cron', '0 0 31 2 *'), /^pgdrain: --cron: '0 0 31 2 \*' never fires/],
      [add('--cron', '0 9 * * *', '--tz', 'Mars/Olympus'), /^pgdrain: --tz: must be an IANA time zone name/],
      [add('--cron', '0 9 * * *', '--tz', 'CET'), /^pgdrain: --tz: 'CET' is an abbreviation/],
      [add('--cron', '0 9 * * *', '--tz', 'Europe/Paris', '--runner', 'pg_cron'), /^pgdrain: --tz: pg_cron 1\.4 reads schedules in UTC only/],
      [add('--cron', '0 9 * * *', '--overlap', 'never'), /^pgdrain: --overlap: must be one of allow, skip/],
      [add('--cron', '0 9 * * *', '--timeout', '0'), /^pgdrain: --timeout: must be a number of seconds/],
      [add('--cron', '0 9 * * *', '--body', '{x'), /^pgdrain: --body: must be JSON/],
      [add('--cron', '0 9 * * *', '--queue', 'nope'), /^pgdrain: --queue: no queue named 'nope'/],
      [add(), /^error: required option '--cron <expr>' not specified/],
      [cli('schedule', 'add', 'has space', '--cron', '@daily', '--task', 'a.b'), /^pgdrain: name: must be 1 to 46 letters/],
      [cli('schedule', 'add', 'n', '--cron', '@daily', '--task', 'bad task'), /^pgdrain: --task: /],
    ];
    for (const [run, rule] of bad) {
      const r = await run;
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(rule);
      expect(r.stdout).toBe('');
    }
    expect(await sql(`select count(*)::int as n from jobs.recurring`)).toEqual([{ n: 0 }]);
  });
});
