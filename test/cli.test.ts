// The `pgdrain` CLI as users run it: a child process against a real PostgreSQL.
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { pgliteDriver } from '../src/db/pglite.js';
import { migrate } from '../src/migrate.js';
import { emptyDb, testDb } from './support/db.js';
import { freePort } from './support/postgres.js';
import { silentServer } from './support/tcp-proxy.js';

const CLI = resolve('dist/cli.mjs');
const db = await testDb();
const sql = db.sql;

const dir = mkdtempSync(join(tmpdir(), 'pgdrain-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const TASKS = join(dir, 'tasks.mjs');
writeFileSync(TASKS, `
export const math = { sum: async (b) => ({ sum: b.a + b.b }) };
const fail = async () => { throw new Error('deliberate failure'); };
export { fail as 'util.fail' };
export const demo = { x: async () => 'embedded ok' };
`);

interface Run { code: number | null; stdout: string; stderr: string }

/**
 * Runs the CLI. `db` chooses the database: a URL goes into DATABASE_URL,
 * null removes DATABASE_URL from the child's environment.
 */
function cli(args: string[], opts: { db?: string | null; env?: Record<string, string>; timeout?: number } = {}): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.DATABASE_URL;
  const url = opts.db === undefined ? db.url : opts.db;
  if (url !== null) env.DATABASE_URL = url;
  Object.assign(env, opts.env);
  return new Promise((done) => {
    execFile(process.execPath, [CLI, ...args], { env, cwd: dir, timeout: opts.timeout ?? 30_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
        done({ code, stdout, stderr });
      });
  });
}

const lines = (text: string) => text.trim().split('\n');

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
});

describe('pgdrain migrate', () => {
  it('migrates the database given as DSN, then finds it up to date', async () => {
    const empty = await emptyDb();
    const first = await cli(['migrate', empty.url], { db: null });
    expect(first).toMatchObject({ code: 0, stdout: '' });
    expect(first.stderr).toMatch(/^pgdrain: applied migrations 1(, \d+)*\n$/);
    const second = await cli(['migrate', empty.url], { db: null });
    expect(second).toEqual({ code: 0, stdout: '', stderr: 'pgdrain: schema is up to date\n' });
  });

  it('takes the URL with --dsn too, as every command does, but not twice; --roles refuses a URL before connecting', async () => {
    const empty = await emptyDb();
    expect(await cli(['migrate', '--dsn', empty.url], { db: null })).toMatchObject({ code: 0, stdout: '' });
    expect(await sql(`select count(*)::int as n from pg_database where datname = $1`, [empty.name])).toEqual([{ n: 1 }]);
    const twice = await cli(['migrate', empty.url, '--dsn', empty.url], { db: null });
    expect(twice).toMatchObject({ code: 2, stderr: 'pgdrain: --dsn: give the URL once: as the argument or with --dsn\n' });
    // `--roles [prefix]` takes the next word: the URL would be the prefix, and no DSN would be left.
    const swallowed = await cli(['migrate', '--roles', empty.url], { db: null });
    expect(swallowed).toMatchObject({ code: 2, stdout: '',
      stderr: 'pgdrain: --roles: must be a lower-case identifier of at most 41 characters (a URL? give it before --roles, or with --dsn)\n' });
    expect(existsSync(join(dir, '.pgdrain'))).toBe(false); // no embedded database was opened
    expect((await cli(['migrate', empty.url, '--roles', ''], { db: null })).code).toBe(2);
  });

  it('--print writes the SQL and touches no database', async () => {
    const data = mkdtempSync(join(dir, 'print-'));
    const r = await cli(['migrate', '--print'], { db: null, env: { PGDRAIN_DATA_DIR: data } });
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain('create function jobs.publish');
    expect(r.stdout.trim()).toMatch(/^begin;[\s\S]*commit;$/);
    expect(readdirSync(data)).toEqual([]); // no embedded database was opened
  });

  it('--print into a reader that stops early (| head) ends quietly', () => {
    // `sh -c … | head -1`: head exits after one line, closing the pipe under the CLI's write.
    const r = spawnSync('sh', ['-c', `"${process.execPath}" "${CLI}" migrate --print | head -1`],
                        { encoding: 'utf8', env: { ...process.env, DATABASE_URL: '' } });
    expect(r.stdout).toBe('begin;\n');
    expect(r.stderr).toBe('');
  });
});

describe('pgdrain publish', () => {
  it('prints the id of a job with the given options', async () => {
    const r = await cli(['publish', 'math.sum', '{"a":1,"b":2}', '--priority', '5', '--timeout', '10', '--max-retries', '1']);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toMatch(/^\d+\n$/);
    const rows = await sql(`select task, body, priority, timeout::float8 as timeout, max_retries, attempt,
                                   scheduled_at = created_at as due_now
                            from jobs.job_queue where job_id = $1`, [r.stdout.trim()]);
    expect(rows).toEqual([{ task: 'math.sum', body: { a: 1, b: 2 }, priority: 5, timeout: 10,
                            max_retries: 1, attempt: 0, due_now: true }]);
  });

  it('--delay 60 schedules a minute after publishing; --at schedules exactly then', async () => {
    // A minute from the publish's call (read between these two clocks), not its transaction's start.
    const clock = async () => (await sql<{ t: string }>('select clock_timestamp()::text as t'))[0]!.t;
    const before = await clock();
    const delayed = await cli(['publish', 'later.delay', '--delay', '60']);
    const after = await clock();
    expect(delayed.code).toBe(0);
    expect(await sql(`select scheduled_at between $2::timestamptz + interval '60 s' and $3::timestamptz + interval '60 s' as ahead, body
                      from jobs.job_queue where job_id = $1`, [delayed.stdout.trim(), before, after]))
      .toEqual([{ ahead: true, body: null }]);

    const at = '2031-05-06T07:08:09.123Z';
    const exact = await cli(['publish', 'later.at', '{}', '--at', at]);
    expect(exact.code).toBe(0);
    expect(await sql(`select scheduled_at from jobs.job_queue where job_id = $1`, [exact.stdout.trim()]))
      .toEqual([{ scheduled_at: new Date(at) }]);
  });

  it('an invalid task name is refused with a one-line message naming task; nothing is written', async () => {
    const r = await cli(['publish', 'bad task!', '{}']);
    expect(r.code).toBe(2); // a usage error, like a bad flag
    expect(r.stdout).toBe('');
    expect(lines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toMatch(/^pgdrain: task: /);
    expect(await sql('select count(*)::int as n from jobs.job_queue')).toEqual([{ n: 0 }]);
  });
});

describe('pgdrain drain', () => {
  it('--json drains nested and flat task names and reports on stdout', async () => {
    await sql(`select jobs.publish('math.sum', '{"a":1,"b":2}'), jobs.publish('math.sum', '{"a":40,"b":2}'),
                      jobs.publish('util.fail', '{}', null, null, null, 0)`);
    const r = await cli(['drain', '--tasks', TASKS, '--json']);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(report).toMatchObject({ claimed: 3, succeeded: 2, failed: 1, retried: 0, stoppedBy: 'empty' });
    expect(await sql(`select task, status, result, error is not null as has_error from jobs.job order by job_id`)).toEqual([
      { task: 'math.sum', status: 'success', result: { sum: 3 }, has_error: false },
      { task: 'math.sum', status: 'success', result: { sum: 42 }, has_error: false },
      { task: 'util.fail', status: 'failure', result: null, has_error: true },
    ]);
    expect(await sql(`select error from jobs.job where task = 'util.fail'`))
      .toEqual([{ error: expect.stringContaining('deliberate failure') }]);
    expect(await sql('select count(*)::int as n from jobs.job_queue')).toEqual([{ n: 0 }]);
  });

  it('finds tasks defined under another export name, and in a default export (CommonJS too)', async () => {
    const index = JSON.stringify(resolve('dist/src/index.js'));
    const defined = join(dir, 'defined.mjs');
    writeFileSync(defined, `import { defineTask } from ${index};
export const sendEmail = defineTask('email.send', async (b) => ({ sent: b.to }));
export const jobs = { report: defineTask('reports.daily', async () => 'daily') };`);
    const byDefault = join(dir, 'by-default.mjs');
    writeFileSync(byDefault, `export default { math: { sum: async (b) => b.a + b.b } };`);
    const commonJs = join(dir, 'common.cjs');
    writeFileSync(commonJs, `module.exports = { 'util.echo': async (b) => b };`);
    await sql(`select jobs.publish('email.send', '{"to":"ada"}'), jobs.publish('reports.daily')`);
    expect(JSON.parse((await cli(['drain', '--tasks', defined, '--json'])).stdout)).toMatchObject({ claimed: 2, succeeded: 2 });
    await sql(`select jobs.publish('math.sum', '{"a":1,"b":2}')`);
    expect(JSON.parse((await cli(['drain', '--tasks', byDefault, '--json'])).stdout)).toMatchObject({ claimed: 1, succeeded: 1 });
    await sql(`select jobs.publish('util.echo', '"hi"')`);
    expect(JSON.parse((await cli(['drain', '--tasks', commonJs, '--json'])).stdout)).toMatchObject({ claimed: 1, succeeded: 1 });
    expect(await sql(`select task, result from jobs.job order by job_id`)).toEqual([
      { task: 'email.send', result: { sent: 'ada' } }, { task: 'reports.daily', result: 'daily' },
      { task: 'math.sum', result: 3 }, { task: 'util.echo', result: 'hi' }]);
  });

  it('refuses a tasks module that serves no tasks, before claiming a job', async () => {
    const none = join(dir, 'none.mjs');
    writeFileSync(none, `export const config = { retries: 3 };`);
    await sql(`select jobs.publish('math.sum', '{"a":1,"b":2}')`);
    const r = await cli(['drain', '--tasks', none]);
    expect(r).toMatchObject({ code: 1, stdout: '' });
    expect(r.stderr).toBe(`pgdrain: tasks module ${none} serves no tasks (it exports config): `
      + 'export handler functions, objects of them, or defineTask() results\n');
    expect(await sql(`select attempt from jobs.job_queue`)).toEqual([{ attempt: 0 }]);
  });

  it('a failing handler still exits 0; the report shows the retry', async () => {
    await sql(`select jobs.publish('util.fail', '{}', null, null, null, 2)`);
    const json = await cli(['drain', '--tasks', TASKS, '--json']);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ claimed: 1, succeeded: 0, retried: 1, failed: 0, stoppedBy: 'empty',
                                                    failures: [expect.objectContaining({ task: 'util.fail', willRetry: true })] });
    expect(await sql(`select attempt, last_error like '%deliberate failure%' as kept from jobs.job_queue`))
      .toEqual([{ attempt: 1, kept: true }]);

    // The text report names the failure too.
    await sql(`update jobs.job_queue set scheduled_at = now()`);
    const text = await cli(['drain', '--tasks', TASKS, '--dsn', db.url], { db: null });
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/1 claimed, 0 succeeded, 1 retried, 0 failed/);
    expect(text.stdout).toMatch(/util\.fail attempt 2 will retry: Error: deliberate failure/);
  });

  it('a --deadline too short for a job leaves it alone and says why', async () => {
    await sql(`select jobs.publish('math.sum', '{"a":1,"b":1}')`); // default 60 s timeout
    const r = await cli(['drain', '--tasks', TASKS, '--deadline', '5']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/0 claimed.* 1 skipped; stopped by deadline/);
    // Why, and what would run it (before: "1 due job(s) were left alone: their timeout does not fit the remaining deadline").
    expect(r.stdout).toMatch(/\n  skipped 1 due job: its timeout 60 s exceeds the [\d.]+ s left of --deadline 5; raise --deadline past 60 or give it a shorter --timeout\n/);
    expect(await sql('select attempt from jobs.job_queue')).toEqual([{ attempt: 0 }]);
    await sql(`select jobs.publish('math.sum', '{"a":1,"b":1}', timeout_seconds => 300)`);
    expect((await cli(['drain', '--tasks', TASKS, '--deadline', '5'])).stdout).toMatch(
      /\n  skipped 2 due jobs: their timeouts, 60 s to 300 s, exceed the [\d.]+ s left of --deadline 5; raise --deadline past 300 or give them a shorter --timeout\n/);
  });

  it('connects to the database while the tasks module loads', async () => {
    // The module's top-level code waits (5 s at most) for a connection of the CLI, which names
    // itself by PGAPPNAME: without one opened ahead of the first claim, it throws and the drain fails.
    const slow = join(dir, 'slow-tasks.mjs');
    writeFileSync(slow, `
import { createRequire } from 'node:module';
const pg = createRequire(${JSON.stringify(resolve('package.json'))})('pg');
const c = new pg.Client({ connectionString: process.env.DATABASE_URL, application_name: 'fixture' });
await c.connect();
let seen = false;
for (let i = 0; i < 100 && !seen; i++) {
  seen = (await c.query("select 1 from pg_stat_activity where application_name = 'pgdrain-cli-test'")).rowCount > 0;
  if (!seen) await new Promise((r) => setTimeout(r, 50));
}
await c.end();
if (!seen) throw new Error('no connection from the CLI while its tasks module loaded');
export const noop = async () => null;
`);
    await sql(`select jobs.publish('noop')`);
    const r = await cli(['drain', '--tasks', slow, '--deadline', '120'], { env: { PGAPPNAME: 'pgdrain-cli-test' } });
    expect(r.stderr).toBe('');
    expect(r).toMatchObject({ code: 0 });
    expect(r.stdout).toMatch(/^drained: 1 claimed, 1 succeeded/);
  });

  it('the connection opened before the arguments are parsed is the one the drain uses', async () => {
    // bin.ts connects ahead for `--dsn=URL` as commander reads it: the handler sees one backend
    // named for that URL and none for DATABASE_URL (a wrong guess would have connected there).
    const counting = join(dir, 'counting-tasks.mjs');
    writeFileSync(counting, `
import { createRequire } from 'node:module';
const pg = createRequire(${JSON.stringify(resolve('package.json'))})('pg');
export const count = async () => {
  const c = new pg.Client({ connectionString: ${JSON.stringify(db.url)}, application_name: 'fixture' });
  await c.connect();
  const { rows } = await c.query("select application_name as name, count(*)::int as n from pg_stat_activity where application_name like 'early-%' group by 1");
  await c.end();
  return Object.fromEntries(rows.map((r) => [r.name, r.n]));
};
`);
    await sql(`select jobs.publish('count')`);
    const dsn = new URL(db.url);
    dsn.searchParams.set('application_name', 'early-dsn');
    const other = new URL(db.url);
    other.searchParams.set('application_name', 'early-env');
    const r = await cli(['drain', '--tasks', counting, '--concurrency', '1', `--dsn=${dsn.href}`], { db: other.href });
    expect(r).toMatchObject({ code: 0, stderr: '' });
    const [job] = await sql<{ result: unknown }>(`select result from jobs.job where task = 'count'`);
    expect(job!.result).toEqual({ 'early-dsn': 1 });
  });

  it('an unknown queue exits 2 naming the flag or the variable it came from, and claims nothing', async () => {
    await sql(`select jobs.publish('math.sum', '{"a":1,"b":1}')`);
    const flag = await cli(['drain', '--tasks', TASKS, '--queue', 'nosuch']);
    expect(flag).toMatchObject({ code: 2, stdout: '', stderr: "pgdrain: --queue: no queue named 'nosuch'\n" });
    const variable = await cli(['drain', '--tasks', TASKS], { env: { PGDRAIN_QUEUE: 'nosuch' } });
    expect(variable).toMatchObject({ code: 2, stdout: '', stderr: "pgdrain: PGDRAIN_QUEUE: no queue named 'nosuch'\n" });
    // a flag given wins over the variable, and is the one named
    const both = await cli(['drain', '--tasks', TASKS, '--queue', 'nosuch2'], { env: { PGDRAIN_QUEUE: 'default' } });
    expect(both.stderr).toBe("pgdrain: --queue: no queue named 'nosuch2'\n");
    expect(await sql('select count(*)::int as n from jobs.job_queue where lease_until is null')).toEqual([{ n: 1 }]);
  });

  it('a missing tasks module exits 1 naming its path', async () => {
    const r = await cli(['drain', '--tasks', './no/such/tasks.mjs']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(lines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toContain(join(dir, 'no/such/tasks.mjs'));
  });

  it('a TypeScript tasks module Node cannot import exits 1 saying what to do', async () => {
    writeFileSync(join(dir, 'typed.ts'), `export const t = async (body: unknown) => body;`);
    const r = await cli(['drain', '--tasks', './typed.ts']);
    expect(r).toMatchObject({ code: 1, stdout: '' });
    expect(lines(r.stderr)).toEqual([expect.stringMatching(/^pgdrain: cannot load tasks module \.\/typed\.ts: Unknown file extension ".ts" .*\(a TypeScript module: compile it to JavaScript first and give that, or load a TypeScript loader: NODE_OPTIONS='--import tsx'\)$/)]);
  });

  it('a tasks module that throws a non-Error, or never finishes loading, exits 1 saying so', async () => {
    writeFileSync(join(dir, 'throws-string.mjs'), `throw 'plain string';`);
    const thrown = await cli(['drain', '--tasks', './throws-string.mjs']);
    expect(thrown).toMatchObject({ code: 1, stdout: '',
      stderr: 'pgdrain: cannot load tasks module ./throws-string.mjs: it threw "plain string"\n' });
    // A top-level await that never settles: Node would end the process with code 13, saying nothing.
    writeFileSync(join(dir, 'never-loads.mjs'), `await new Promise(() => {});`);
    const never = await cli(['drain', '--tasks', './never-loads.mjs', '--deadline', '2']);
    expect(never).toMatchObject({ code: 1, stdout: '' });
    expect(never.stderr).toMatch(/^pgdrain: cannot load tasks module \.\/never-loads\.mjs: it had not finished loading after [\d.]+ s \(a top-level await that never settles\?\)\n$/);
  });

  it('…and with no database URL, creates no embedded database', async () => {
    const data = join(dir, 'never-created');
    const r = await cli(['drain', '--tasks', './no/such/tasks.mjs'], { db: null, env: { PGDRAIN_DATA_DIR: data } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(join(dir, 'no/such/tasks.mjs'));
    expect(existsSync(data)).toBe(false);
  });
});

describe('usage errors exit 2 with one line naming the flag', () => {
  it.each([
    [['drain', '--tasks', 'x', '--batch', '0'], '--batch'],
    [['drain', '--tasks', 'x', '--batch', 'abc'], '--batch'],
    [['drain', '--tasks', 'x', '--deadline', 'soon'], '--deadline'],
    [['drain', '--batch', '5'], '--tasks'],
    [['publish', 'math.sum', '{bad json'], 'json'],
    [['publish', 'math.sum', '--at', 'yesterday'], '--at'],
    [['publish', 'math.sum', '--delay', '5', '--at', '2030-01-01T00:00:00Z'], '--delay'],
    [['publish', 'math.sum', '--priority', '1.5'], '--priority'],
    // commands added with addCommand, and their subcommands
    [['serve', '--port', 'abc'], '--port'],
    [['cancel'], 'id'],
    [['cancel', '1', '--bogus'], '--bogus'],
    [['dead-letters', '--limit', '0'], '--limit'],
    [['queue', 'create'], 'name'],
    [['redrive', '--ids', 'abc'], '--ids'],
    // values past what PostgreSQL stores: named here, not as the database's range error
    [['cancel', '9223372036854775808'], 'id'],
    [['publish', 'math.sum', '--depends-on', '9999999999999999999'], '--depends-on'],
    [['dead-letters', '--limit', '99999999999999999999'], '--limit'],
    [['publish', 'math.sum', '--at', '+275760-09-13T00:00:00Z'], '--at: must be an ISO 8601 date-time with a time zone, such as 2030-01-01T09:00:00Z, got "+275760-09-13T00:00:00Z"'],
    [['publish', 'math.sum', '--at', '1969-12-31T23:59:59Z'], 'must be a valid Date from 1970 to 9999'],
    // new Date() would take these: '5' as May 2001, a time without a zone as the machine's local time
    [['publish', 'math.sum', '--at', '5'], "--at: must be an ISO 8601 date-time with a time zone"],
    [['publish', 'math.sum', '--at', '2030-01-01T10:00'], 'must be an ISO 8601 date-time with a time zone'],
    // the core's option names, told as the flags that set them
    [['publish', 'math.sum', '--dedupe-key', ''], '--dedupe-key: must be a non-empty text'],
    [['redrive', '--task', ''], '--task: must be a non-empty pattern'],
    [['cancel', 'abc'], 'pgdrain: id: must be a job id'],
    [['queue', 'create', 'big', '--max-size', '2147483647'], 'must be an integer from 1 to 100000000'],
    [['drain', '--tasks', 'x', '--topic', ''], "--topic: must be a non-empty pattern"],
    [['publish', 'math.sum', '--queue', 'bad q'], '--queue: '],
    // Number() reads these as 16, 3 and 7: seconds are decimal, as JSON spells them
    [['publish', 'math.sum', '--delay', '0x10'], 'pgdrain: --delay: must be a number of seconds from 0 to 315360000, got "0x10"'],
    [['drain', '--tasks', 'x', '--deadline', '0b11'], '--deadline: must be a number of seconds from 0.1 to 86400, got "0b11"'],
    [['publish', 'math.sum', '--dedupe-key', 'k', '--throttle', '0x10'], '--throttle: must be a number of seconds greater than 0 and at most 2592000 (30 days), got "0x10"'],
    [['serve', '--max-budget', '0o7'], '--max-budget: must be a number of seconds from 0.1 to 86400, got "0o7"'],
  ])('pgdrain %j', async (args, flag) => {
    // With DATABASE_URL set, drain and publish open a connection before parsing their flags
    // (bin.ts); left open, it would hold the process for pg's 10-s idle timeout.
    const r = await cli(args, { timeout: 8_000 });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(lines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toContain(flag);
  });
});

describe('usage errors with a database that never answers', () => {
  it('exit 2 at once: the connection opened before parsing is ended, not waited for', async () => {
    const silent = await silentServer();
    try {
      for (const args of [['drain', '--tasks', 'x', '--batch', '0'], ['publish', 'math.sum', '--priority', '1.5'],
                          ['drain', '--help']]) {
        const r = await cli(args, { db: silent.url, timeout: 8_000 });
        expect(r.code, args.join(' ')).toBe(args.includes('--help') ? 0 : 2);
      }
    } finally {
      await silent.close();
    }
  });
});

describe('runtime errors', () => {
  it('publish honours connect_timeout in the URL, as psql does: exit 1 after it, with one line', async () => {
    const silent = await silentServer();
    try {
      const r = await cli(['publish', 'a.b', '--dsn', `${silent.url}?connect_timeout=2`], { db: null, timeout: 20_000 });
      expect(r).toMatchObject({ code: 1, stdout: '', stderr: 'pgdrain: database unavailable: timeout expired\n' });
    } finally {
      await silent.close();
    }
  });

  it('PGCONNECT_TIMEOUT bounds the connection of a URL without connect_timeout; a bad one is a usage error', async () => {
    const silent = await silentServer();
    try {
      const r = await cli(['publish', 'a.b', '--dsn', silent.url], { db: null, env: { PGCONNECT_TIMEOUT: '2' }, timeout: 20_000 });
      expect(r).toMatchObject({ code: 1, stdout: '', stderr: 'pgdrain: database unavailable: timeout expired\n' });
      const bad = await cli(['publish', 'a.b', '--dsn', silent.url], { db: null, env: { PGCONNECT_TIMEOUT: 'ten' }, timeout: 20_000 });
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/^pgdrain: PGCONNECT_TIMEOUT: must be a whole number of seconds, got "ten"/);
    } finally {
      await silent.close();
    }
  });

  it('a drain whose database accepts and never answers exits 1 five seconds after its deadline, saying so', async () => {
    // The connection opened before parsing never completes: the first claim waits for it, within the deadline.
    const silent = await silentServer();
    try {
      const r = await cli(['drain', '--tasks', TASKS, '--deadline', '1'], { db: silent.url, timeout: 20_000 });
      expect(r).toMatchObject({ code: 1, stdout: '',
        stderr: "pgdrain: database unavailable: no reply within 5000 ms after the drain's deadline\n" });
    } finally {
      await silent.close();
    }
  });

  it('an empty or malformed --dsn or DATABASE_URL exits 2 naming it, and opens no embedded database', async () => {
    for (const [args, env, field] of [
      [['stats', '--dsn', ''], {}, '--dsn'],
      [['stats', '--dsn', 'notaurl'], {}, '--dsn'],
      [['drain', '--tasks', TASKS], { DATABASE_URL: '' }, 'DATABASE_URL'],
      [['publish', 'a.b'], { DATABASE_URL: 'host=localhost dbname=app' }, 'DATABASE_URL'],
    ] as const) {
      const r = await cli([...args], { db: null, env, timeout: 8_000 });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(new RegExp(`^pgdrain: ${field}: (is set but empty|must be a postgres:// or postgresql:// URL)`));
    }
    expect(existsSync(join(dir, '.pgdrain'))).toBe(false);
  });

  // The Worker refuses DRAIN_FILTER / DRAIN_EXCLUDE set blank the same way; the Lambda function takes every
  // variable set blank as unset (test/lambda-drain-selection.test.ts).
  // A blank --exclude or --filter says it is empty, as a blank variable does: it said
  // "exclude: must be an array of JSON objects" and "must be a JSON object".
  it('a blank PGDRAIN_FILTER, PGDRAIN_EXCLUDE, --exclude or --filter exits 2 naming it as empty, and claims nothing', async () => {
    await db.sql(`select jobs.publish('math.sum', '{"a":1,"b":2}'::jsonb)`);
    for (const [args, env, line] of [
      [[], { PGDRAIN_FILTER: '' }, 'pgdrain: PGDRAIN_FILTER: is set but empty: give a value or unset it'],
      [[], { PGDRAIN_EXCLUDE: ' ' }, 'pgdrain: PGDRAIN_EXCLUDE: is set but empty: give a value or unset it'],
      [['--exclude', ''], {}, 'pgdrain: --exclude: is empty: give a JSON array of objects, or leave the flag out, got ""'],
      [['--filter', ' '], {}, 'pgdrain: --filter: is empty: give a JSON object, or leave the flag out, got " "'],
    ] as const) {
      const r = await cli(['drain', '--tasks', TASKS, ...args], { env });
      expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }, line).toEqual({ code: 2, stdout: '', stderr: `${line}\n` });
    }
    expect(await db.sql('select attempt from jobs.job_queue')).toEqual([{ attempt: 0 }]);
  });

  it('a mistyped flag holding a connection string is echoed without its password', async () => {
    for (const args of [
      ['stats', '--dns=postgres://app:S3cret-pw@127.0.0.1:1/app'],
      ['publish', 'a.b', '--db=postgresql://app:S3cret-pw@db.example/app'],
      ['drain', '--tasks', TASKS, '--url=host=h password=S3cret-pw user=app'],
      // node-postgres reads a raw @ as part of the password (it splits at the last one).
      ['stats', '--dns=postgres://app:S3cret@-pw@db.example/app'],
      // …and a space (a password of words, which it reads whole).
      ['stats', '--dns=postgres://app:S3cret -pw@db.example/app'],
    ]) {
      const r = await cli(args, { db: null, timeout: 8_000 });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/^error: unknown option '--(dns|db|url)=/);
      expect(r.stderr).not.toContain('-pw');
    }
    expect((await cli(['stats', '--dns=postgres://app:S3cret-pw@127.0.0.1:1/app'], { db: null })).stderr)
      .toContain("'--dns=postgres://app:***@127.0.0.1:1/app'");
  });

  it('--overrun (or PGDRAIN_OVERRUN_SECONDS) sets how long past the deadline it waits; a bad one exits 2 naming the flag', async () => {
    const silent = await silentServer();
    try {
      const flag = await cli(['drain', '--tasks', TASKS, '--deadline', '1', '--overrun', '0.3'], { db: silent.url, timeout: 20_000 });
      expect(flag).toMatchObject({ code: 1, stdout: '',
        stderr: "pgdrain: database unavailable: no reply within 300 ms after the drain's deadline\n" });
      const env = await cli(['drain', '--tasks', TASKS, '--deadline', '1'],
                            { db: silent.url, env: { PGDRAIN_OVERRUN_SECONDS: '0.2' }, timeout: 20_000 });
      expect(env.stderr).toBe("pgdrain: database unavailable: no reply within 200 ms after the drain's deadline\n");
      const bad = await cli(['drain', '--tasks', TASKS, '--overrun', '-1'], { db: silent.url, timeout: 20_000 });
      expect(bad.code).toBe(2);
      expect(bad.stderr).toBe('pgdrain: --overrun: must be a number of seconds from 0 to 3600, got "-1"\n');
    } finally {
      await silent.close();
    }
  });

  it('a database with no connection slot left: drain exits 1 with one line, and the jobs stay pending', async () => {
    const role = `pgdrain_none_${Math.random().toString(36).slice(2, 10)}`;
    await sql(`create role ${role} login connection limit 0`); // as max_connections reached, for this role only
    try {
      await sql(`select jobs.publish('math.sum', '{"a":1,"b":2}')`);
      const url = new URL(db.url);
      url.username = role;
      const r = await cli(['drain', '--tasks', TASKS, '--dsn', url.href], { db: null });
      expect(r).toMatchObject({ code: 1, stdout: '',
        stderr: `pgdrain: database unavailable: too many connections for role "${role}"\n` });
      expect(await sql(`select attempt, lease_until from jobs.job_queue`)).toEqual([{ attempt: 0, lease_until: null }]);
    } finally {
      await sql(`drop role ${role}`);
    }
  });

  it('an unreachable database exits 1 with one line starting "pgdrain:"', async () => {
    const closed = `postgres://postgres@127.0.0.1:${await freePort()}/nothing`;
    for (const args of [['stats', '--dsn', closed], ['publish', 'a.b', '--dsn', closed], ['migrate', closed],
                        ['drain', '--tasks', TASKS, '--dsn', closed]]) {
      const r = await cli(args, { db: null });
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stdout).toBe('');
      expect(lines(r.stderr)).toHaveLength(1);
      expect(r.stderr).toMatch(/^pgdrain: .*unavailable/);
    }
  });
});

describe('help and stats', () => {
  it.each(['drain', 'publish', 'migrate', 'stats'])('pgdrain %s --help exits 0', async (command) => {
    const r = await cli([command, '--help'], { db: null });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Usage: pgdrain ${command}`);
    expect(r.stdout).toContain('--help');
  });

  it("--help of the commands that publish says a queue's own defaults win over the global ones", async () => {
    for (const command of [['publish'], ['schedule', 'add'], ['event', 'publish']]) {
      const help = (await cli([...command, '--help'], { db: null })).stdout.replace(/\s+/g, ' ');
      for (const [flag, global] of [['--timeout <seconds>', 60], ['--max-retries <n>', 3], ['--priority <n>', 0]]) {
        expect(help).toMatch(new RegExp(`${flag} [^-]*\\(default: (the|each) queue's, else ${global}\\)`));
      }
    }
  });

  it('stats prints a table by queue, task and state', async () => {
    expect((await cli(['stats'])).stdout).toBe('no jobs\n');
    expect((await cli(['queue', 'create', 'statsq'])).code).toBe(0);
    for (const args of [['publish', 'stats.a'], ['publish', 'stats.a'], ['publish', 'stats.b', '--delay', '3600'],
                        ['publish', 'stats.a', '--queue', 'statsq']]) {
      expect((await cli(args)).code).toBe(0);
    }
    const r = await cli(['stats']);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    const [header, rule, ...rows] = lines(r.stdout);
    expect(header!.split(/\s+/)).toEqual(['queue', 'task', 'state', 'jobs', 'oldest_due_s']);
    expect(rule).toMatch(/^[- ]+$/);
    expect(rows.map((row) => row.split(/\s+/).slice(0, 4))).toEqual([
      ['default', 'stats.a', 'pending', '2'],
      ['default', 'stats.b', 'scheduled', '1'],
      ['statsq', 'stats.a', 'pending', '1'],
    ]);
  });
});

describe('embedded database (no DSN, no DATABASE_URL)', () => {
  it('publish then drain use PGlite in PGDRAIN_DATA_DIR', async () => {
    const data = mkdtempSync(join(dir, 'embedded-'));
    const env = { PGDRAIN_DATA_DIR: data };
    const published = await cli(['publish', 'demo.x', '{}'], { db: null, env, timeout: 120_000 });
    expect(published.code, published.stderr).toBe(0);
    expect(published.stdout).toMatch(/^\d+\n$/);
    expect(published.stderr).toContain('using the embedded PostgreSQL');
    expect(published.stderr).toContain(data);
    expect(readdirSync(data).length).toBeGreaterThan(0);

    const drained = await cli(['drain', '--tasks', TASKS, '--json'], { db: null, env, timeout: 120_000 });
    expect(drained.code, drained.stderr).toBe(0);
    expect(drained.stderr).toContain('using the embedded PostgreSQL');
    expect(JSON.parse(drained.stdout)).toMatchObject({ claimed: 1, succeeded: 1, failed: 0, stoppedBy: 'empty' });
    // The test database saw none of it.
    expect(await sql('select (select count(*) from jobs.job_queue) + (select count(*) from jobs.job) as n'))
      .toEqual([{ n: '0' }]);
  }, 180_000);

  it('one process at a time: a second is refused while the first holds it, naming it; a lock left by a dead process is taken over', async () => {
    const data = mkdtempSync(join(dir, 'embedded-'));
    const env = { PGDRAIN_DATA_DIR: data };
    // Held by a live process (this one): refused before anything is opened or written.
    writeFileSync(join(data, 'pgdrain.lock'), String(process.pid));
    const refused = await cli(['publish', 'demo.x', '{}'], { db: null, env, timeout: 120_000 });
    expect(refused.code).toBe(1);
    expect(lines(refused.stderr).at(-1)).toBe(`pgdrain: the embedded database in ${data} is in use by ` +
      `process ${process.pid}: it serves one process at a time (for several, give them a PostgreSQL with DATABASE_URL)`);
    expect(readdirSync(data)).toEqual(['pgdrain.lock']);
    // So is a lock naming this process and its start time, as a live holder writes it.
    const started = readFileSync(`/proc/${process.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[19];
    writeFileSync(join(data, 'pgdrain.lock'), `${process.pid} ${started}`);
    expect((await cli(['publish', 'demo.x', '{}'], { db: null, env, timeout: 120_000 })).code).toBe(1);
    // Its pid now another process's (a container's pid 1 after a kill -9): taken over.
    writeFileSync(join(data, 'pgdrain.lock'), `${process.pid} 1`);
    const reused = await cli(['publish', 'demo.x', '{}'], { db: null, env, timeout: 120_000 });
    expect(reused.code, reused.stderr).toBe(0);
    expect(readdirSync(data)).not.toContain('pgdrain.lock');
    // Left by a process that has exited: taken over, and released at the end.
    const gone = spawnSync(process.execPath, ['-e', '0']).pid;
    writeFileSync(join(data, 'pgdrain.lock'), String(gone));
    const published = await cli(['publish', 'demo.x', '{}'], { db: null, env, timeout: 120_000 });
    expect(published.code, published.stderr).toBe(0);
    expect(readdirSync(data)).not.toContain('pgdrain.lock');
  }, 180_000);

  it('an embedded database migrated by another build is refused, naming the directory to remove', async () => {
    const data = mkdtempSync(join(dir, 'embedded-'));
    const driver = await pgliteDriver(data);
    try {
      await migrate(driver);
      await driver.query(`update jobs.migration set checksum = repeat('0', 64) where version = 1`);
    } finally {
      await driver.close();
    }
    const r = await cli(['publish', 'demo.x', '{}'], { db: null, env: { PGDRAIN_DATA_DIR: data }, timeout: 120_000 });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('database has migration 1 with checksum 000000000000');
    expect(r.stderr).toContain(`the embedded database is ${data}: remove that directory to start over`);
  }, 180_000);
});
