// Issue 7 in the `pgdrain` CLI: a child process against a real PostgreSQL.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { testDb } from '../support/db.js';

const CLI = resolve('dist/cli.mjs');
const db = await testDb();
const sql = db.sql;
const dir = mkdtempSync(join(tmpdir(), 'pgdrain-cli7-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const TASKS = join(dir, 'tasks.mjs');
writeFileSync(TASKS, `
export const ok = async (b) => ({ got: b });
export const bad = async () => { throw new Error('always fails'); };
`);

function cli(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: db.url };
  return new Promise((done) => {
    execFile(process.execPath, [CLI, ...args], { env, cwd: dir, timeout: 30_000 }, (error, stdout, stderr) =>
      done({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr }));
  });
}

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

describe('pgdrain and issue 7', () => {
  it('queue create --max-size, publish --queue --dedupe-key --attributes, drain --queue --filter --worker-id', async () => {
    expect((await cli('queue', 'create', 'mail', '--max-size', '2')).code).toBe(0);
    const a = await cli('publish', 'ok', '{"n":1}', '--queue', 'mail', '--dedupe-key', 'k1', '--attributes', '{"region":"eu"}');
    const b = await cli('publish', 'ok', '{"n":2}', '--queue', 'mail', '--dedupe-key', 'k1');
    expect(a.code).toBe(0);
    expect(b.stdout).toBe(a.stdout);
    await cli('publish', 'ok', '{"n":3}', '--queue', 'mail', '--attributes', '{"region":"us"}');
    const full = await cli('publish', 'ok', '--queue', 'mail');
    expect(full.code).toBe(1);
    expect(full.stderr).toMatch(/^pgdrain: --queue: queue 'mail' is full/);
    const drained = await cli('drain', '--tasks', TASKS, '--queue', 'mail', '--filter', '{"region":"eu"}',
                              '--worker-id', 'cli-1', '--json');
    expect(JSON.parse(drained.stdout)).toMatchObject({ succeeded: 1 });
    expect(await sql(`select body, worker_id from jobs.job`)).toEqual([{ body: { n: 1 }, worker_id: 'cli-1' }]);
    const badFilter = await cli('drain', '--tasks', TASKS, '--filter', '[1]');
    expect(badFilter.code).toBe(2);
    expect(badFilter.stderr).toMatch(/--filter.*must be a JSON object/);
  });

  it('cancel, dead-letters, redrive, wait; queue pause/resume', async () => {
    const later = (await cli('publish', 'ok', '--delay', '3600')).stdout.trim();
    expect((await cli('cancel', later, '--reason', 'no longer needed')).stdout).toBe('cancelled\n');
    const waited = await cli('wait', later);
    expect(JSON.parse(waited.stdout)).toMatchObject({ id: later, status: 'cancelled', error: 'cancelled: no longer needed' });

    const bad = (await cli('publish', 'bad', '--max-retries', '0')).stdout.trim();
    await cli('drain', '--tasks', TASKS);
    const letters = await cli('dead-letters', '--json');
    expect(JSON.parse(letters.stdout)).toMatchObject([{ id: bad, task: 'bad', attempts: 1 }]);
    expect((await cli('redrive', '--task', 'ba%')).stdout).toBe('1\n');
    expect(await sql(`select job_id::text as id, attempt from jobs.job_queue`)).toEqual([{ id: bad, attempt: 0 }]);

    expect((await cli('queue', 'pause', 'default')).code).toBe(0);
    const paused = await cli('drain', '--tasks', TASKS, '--json');
    expect(JSON.parse(paused.stdout)).toMatchObject({ claimed: 0 });
    expect((await cli('queue', 'resume', 'default')).code).toBe(0);
    const unknown = await cli('queue', 'pause', 'ghost');
    expect(unknown.code).toBe(2); // invalid_argument is a usage error
    expect(unknown.stderr).toMatch(/no queue named 'ghost'/);
  });

  it('publish --serial-key and --depends-on; migrate --roles', async () => {
    const first = (await cli('publish', 'ok', '1', '--serial-key', 's')).stdout.trim();
    await cli('publish', 'ok', '2', '--serial-key', 's');
    await cli('publish', 'ok', '3', '--depends-on', first);
    expect(await sql(`select body, state from jobs.all order by job_id`)).toEqual([
      { body: 1, state: 'pending' }, { body: 2, state: 'blocked' }, { body: 3, state: 'blocked' }]);
    const badIds = await cli('publish', 'ok', '--depends-on', '1,x');
    expect(badIds.code).toBe(2);
    const prefix = `c${Date.now().toString(36)}`;
    expect((await cli('migrate', '--roles', prefix)).code).toBe(0);
    expect(await sql(`select count(*)::int as n from pg_roles where rolname like $1`, [`${prefix}_%`])).toEqual([{ n: 3 }]);
  });
});
