// deploy/worker-loop.sh, the always-on worker for platforms that restart
// nothing (README "An always-on worker"), run by sh over the real CLI: it
// starts the next drain as one ends at its deadline, backs off after exit 1,
// stops on exit 2, and passes SIGTERM on to the running drain (stopped at
// random moments: worker-loop-stop.test.ts). Then the systemd unit, which
// runs the loop (no systemd runs here: read, not started; checked by hand
// with systemd-analyze verify).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { BACKOFF_RESET_S, SETTLE_MARGIN_S } from './support/k8s-checks.js';
import { CLI, FAULT_TASKS, type DrainProcess, type Exit, until } from './support/drain-process.js';

const db = await testDb();
const bin = mkdtempSync(join(tmpdir(), 'pgdrain-loop-'));
symlinkSync(CLI, join(bin, 'pgdrain')); // `pgdrain` on PATH, as npm's node_modules/.bin gives it
afterAll(() => rmSync(bin, { recursive: true, force: true }));

/** The loop under sh, with `env` (and `pgdrain` on PATH) instead of this process's DATABASE_URL and PGDRAIN_*. */
function loop(env: Record<string, string>, args: string[] = []): DrainProcess & { stdout(): string } {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'DATABASE_URL' && !k.startsWith('PGDRAIN_')));
  const child = spawn('sh', [resolve('deploy/worker-loop.sh'), ...args], {
    env: { ...base, PATH: `${bin}:${process.env.PATH}`, DATABASE_URL: db.url, PGDRAIN_TASKS: FAULT_TASKS, FAULT_RECORD_URL: db.url, ...env },
    stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = new Promise<Exit>((done) => child.once('close', (code, signal) => done({ code, signal, stdout, stderr })));
  return { child, pid: child.pid!, exited, stderr: () => stderr, stdout: () => stdout };
}
const reports = (stdout: string) => stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
const listening = async () => (await db.sql(
  `select 1 from pg_stat_activity where datname = current_database() and query ilike 'listen %'`)).length;
await db.sql('create table fault_runs (key text, job_id bigint, attempt int, pid int)');

it('a configuration error (exit 2) stops the loop: exit 2, the drain run once', async () => {
  const exit = await loop({ PGDRAIN_BATCH_SIZE: 'lots' }).exited;
  expect(exit).toMatchObject({ code: 2, stdout: '',
    stderr: 'pgdrain: PGDRAIN_BATCH_SIZE: must be an integer from 1 to 10000, got "lots"\n' });
});

it('an infrastructure error (exit 1) is followed by a back-off, which SIGTERM ends: exit 1, the last drain\'s', async () => {
  const p = loop({ DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' });
  await until(async () => p.stderr().includes('next drain in 10 s'), 'the back-off');
  p.child.kill('SIGTERM');
  const exit = await p.exited;
  expect(exit.code).toBe(1); // a supervisor sees the failure, not a success
  expect(exit.stderr.match(/^pgdrain: database unavailable: .+$/gm)).toHaveLength(1);
  expect(exit.stderr).toMatch(/^worker-loop: drain exited 1; next drain in 10 s$/m);
});

it('a drain that ends at its deadline is followed at once by the next', async () => {
  const p = loop({ PGDRAIN_DEADLINE_SECONDS: '1', PGDRAIN_LOOP_MIN_SECONDS: '0' }, ['--json']); // no minimum interval
  await until(async () => reports(p.stdout()).length >= 2, 'two drains, one after the other');
  p.child.kill('SIGTERM');
  const exit = await p.exited;
  // Drains start back to back here: the stop lands in one that listens (it reports: 0) or in the next one's
  // start-up, before the CLI listens (the signal ends it: 143, docs/fast-pickup.md's table). Never 1: no failure.
  expect([0, 143]).toContain(exit.code);
  expect(exit.stderr).not.toContain('next drain in'); // no back-off after exit 0
});

it('lingers a day by default, runs a job published meanwhile, and passes SIGTERM on: the drain reports, the loop exits 0', async () => {
  const p = loop({}, ['--json']);
  await until(listening, 'the drain to listen on the empty queue');
  await db.sql(`select jobs.publish('fault.record', '{"key": "loop"}')`);
  await until(async () => (await db.sql(`select 1 from jobs.job where body->>'key' = 'loop' and status = 'success'`)).length,
    'the job to run and be acked');
  p.child.kill('SIGTERM');
  const exit = await p.exited;
  expect(exit).toMatchObject({ code: 0, stderr: expect.stringMatching(/^pgdrain: SIGTERM: claiming no more jobs/) });
  expect(reports(exit.stdout)).toMatchObject([{ stoppedBy: 'signal', claimed: 1, succeeded: 1 }]);
  expect(await listening()).toBe(0); // the drain has ended too, not left running behind the loop
});

describe('deploy/systemd/pgdrain-worker.service', () => {
  const unit = Object.fromEntries(readFileSync('deploy/systemd/pgdrain-worker.service', 'utf8').split('\n')
    .filter((l) => /^\w+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  const args = unit.ExecStart!.split(' ');

  it('gives the loop a /tmp of its own, so a SIGKILLed loop leaves no temp directory behind', () => {
    expect(unit.PrivateTmp).toBe('yes');
  });

  it('restarts every end but a configuration error, and never gives up', () => {
    expect(unit).toMatchObject({ Restart: 'always', RestartPreventExitStatus: '2', StartLimitIntervalSec: '0', KillMode: 'mixed' });
    expect(Number(unit.RestartSec)).toBeGreaterThan(0);
  });

  it('runs the loop, so a drain\'s planned end starts the next at once and a failure backs off (not RestartSec after each)', () => {
    // The loop from the installed package, with the package's pgdrain on its PATH.
    const [app, loopPath] = unit.ExecStart!.match(/^\/bin\/sh (\S+)\/node_modules\/pgdrain\/(\S+) /)!.slice(1);
    expect(loopPath).toBe('deploy/worker-loop.sh');
    expect(JSON.parse(readFileSync('package.json', 'utf8')).files).toContain(loopPath);
    expect(unit.Environment!.match(/^PATH=([^:]+):/)?.[1]).toBe(`${app}/node_modules/.bin`);
    // A stop's 143 (its drain ended by the SIGTERM before it listened) is no failure.
    expect(unit.SuccessExitStatus!.split(' ')).toContain('143');
  });

  it('runs drains that linger until a deadline over 10 minutes, stopped after their grace, or by the loop', () => {
    const flag = (name: string, absent: number) => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : absent);
    expect(flag('--deadline', 0)).toBeGreaterThan(BACKOFF_RESET_S);
    expect(flag('--linger', 0)).toBe(flag('--deadline', 0));
    // The loop SIGKILLs a drain still running --grace + --overrun + 5 s after its SIGTERM (the CLI's defaults 10
    // and 5) and ends: systemd's own SIGKILL comes later.
    expect(Number(unit.TimeoutStopSec)).toBeGreaterThanOrEqual(flag('--grace', 10) + flag('--overrun', 5) + 5 + SETTLE_MARGIN_S);
  });
});
