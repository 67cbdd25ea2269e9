// Lingering drains at the edges: `pgdrain drain --linger` (the built CLI, run
// `npm run build` first) and POST /drain's lingerMs, against a real PostgreSQL.
import { serve, type ServerType } from '@hono/node-server';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { CLI, reportOf, spawnCli, until, withAppName } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const TOKEN = 'test-token-0123456789abcdef';
const FITS = { timeoutSeconds: 5 };

const dir = mkdtempSync(join(tmpdir(), 'pgdrain-linger-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const TASKS = join(dir, 'tasks.mjs');
writeFileSync(TASKS, 'export const note = async (b) => b.n;\n');

const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: { note: async (b: { n: string }) => b.n } });

const servers: ServerType[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});
const base = await new Promise<string>((done) => {
  const app = createApp({ queue, token: TOKEN, limits: { maxBudgetSeconds: 60 } });
  servers.push(serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => done(`http://127.0.0.1:${info.port}`)));
});

async function postDrain(body: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}/drain`, {
    method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

/** LISTEN sessions of this database (a lingering drain's). */
const listening = async () => (await sql(
  `select 1 from pg_stat_activity where datname = current_database() and query ilike 'listen %'`)).length;
const succeeded = async (n: string) =>
  (await sql(`select 1 from jobs.job where status = 'success' and body->>'n' = $1`, [n])).length > 0;

function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, DATABASE_URL: db.url }, cwd: dir, timeout: 15_000 },
      (error, stdout, stderr) => done({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr }));
  });
}

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
});

describe('pgdrain drain --linger', () => {
  it('lingers on an empty queue, runs a job published meanwhile, and SIGTERM ends the wait (exit 0, stoppedBy signal)', async () => {
    const p = spawnCli(['drain', '--tasks', TASKS, '--deadline', '120', '--linger', '100', '--poll', '3600', '--json'],
                       { DATABASE_URL: withAppName(db.url, 'linger-cli') });
    try {
      await until(async () => (await listening()) === 1, 'the CLI drain to LISTEN');
      await queue.publish('note', { n: 'cli' }, FITS);
      await until(() => succeeded('cli'), 'the job to run');
      p.child.kill('SIGTERM');
      const exit = await p.exited;
      expect(exit.code).toBe(0);
      expect(reportOf(exit)).toMatchObject({ claimed: 1, succeeded: 1, stoppedBy: 'signal' });
    } finally {
      p.child.kill('SIGKILL');
    }
  });

  it.each([
    [['--linger', '-1'], "--linger: must be a number of seconds from 0 to 86400"],
    [['--linger', 'soon'], '--linger: must be a number of seconds from 0 to 86400, got "soon"'],
    [['--poll', '0.01'], "--poll: must be a number of seconds from 0.05 to 3600"],
  ])('%j exits 2 with one line naming the flag', async (flags, message) => {
    const r = await cli(['drain', '--tasks', TASKS, ...flags]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(message);
  });
});

describe('POST /drain lingerMs', () => {
  it('holds the request while it lingers, runs a job published meanwhile, and answers once idle for lingerMs', async () => {
    const answer = postDrain({ budgetSeconds: 50, lingerMs: 1500, pollMs: 3_600_000 });
    await until(async () => (await listening()) === 1, 'the HTTP drain to LISTEN');
    await queue.publish('note', { n: 'http' }, FITS);
    const a = await answer;
    expect(a.status).toBe(200);
    expect(a.body).toMatchObject({ claimed: 1, succeeded: 1, stoppedBy: 'empty' });
  });

  it('stops lingering when its caller goes away, freeing its drain slot', async () => {
    const gone = new AbortController();
    const answer = fetch(`${base}/drain`, {
      method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ budgetSeconds: 50, lingerMs: 50_000 }), signal: gone.signal,
    }).catch(() => 'aborted');
    await until(async () => (await listening()) === 1, 'the HTTP drain to LISTEN');
    gone.abort();
    expect(await answer).toBe('aborted');
    // The drain returned: its LISTEN session closed, long before its 50 s linger.
    await until(async () => (await listening()) === 0, 'the abandoned drain to stop');
  });

  it.each([
    [{ lingerMs: -5 }, 'lingerMs', 'lingerMs: must be 0 or more'],
    [{ lingerMs: '1s' }, 'lingerMs', 'lingerMs: must be a number of milliseconds'],
    [{ lingerMs: 1000, pollMs: 1 }, 'pollMs', 'pollMs: must be at least 50'],
  ])('%j is 400 naming the field', async (body, field, message) => {
    await queue.publish('note', { n: 'untouched' }, FITS);
    const a = await postDrain(body);
    expect(a).toEqual({ status: 400, body: { error: { code: 'invalid_argument', field, message } } });
    expect(await succeeded('untouched')).toBe(false);
  });
});
