// `pgdrain drain` as a container runtime runs it: a child process of the
// built CLI (run `npm run build` first), with its settings in the environment.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { expect } from 'vitest';
import type { DrainReport } from '../../src/types.js';

export const CLI = resolve('dist/cli.mjs');
export const FAULT_TASKS = resolve('test/fixtures/fault-tasks.mjs');

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface DrainProcess {
  child: ChildProcess;
  pid: number;
  /** Resolves once the process has exited and its output is read. */
  exited: Promise<Exit>;
  /** What it wrote on stderr so far. */
  stderr(): string;
}

/** Runs `pgdrain ARGS` against the database at url to its exit (at most 30 s): its code and output. */
export function runCli(url: string, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runCliWith({}, url, ...args);
}

/** runCli with `env` on top of this process's environment (and DATABASE_URL; a variable undefined: unset). */
export function runCliWith(env: Record<string, string | undefined>, url: string, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  env = { ...process.env, ...env, DATABASE_URL: url };
  return new Promise((done) => {
    execFile(process.execPath, [CLI, ...args], { env, timeout: 30_000 }, (error, stdout, stderr) =>
      done({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr }));
  });
}

/** The URL with an application_name, so pg_stat_activity tells whose backends are whose. */
export function withAppName(url: string, name: string): string {
  const u = new URL(url);
  u.searchParams.set('application_name', name);
  return u.href;
}

/**
 * Starts `pgdrain drain ARGS` with `env` on top of this process's
 * environment, minus any DATABASE_URL and PGDRAIN_* it has.
 */
export function spawnCli(args: string[], env: Record<string, string>): DrainProcess {
  const base = Object.fromEntries(Object.entries(process.env)
    .filter(([k]) => k !== 'DATABASE_URL' && !k.startsWith('PGDRAIN_')));
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = new Promise<Exit>((done, fail) => {
    child.once('error', fail);
    child.once('close', (code, signal) => done({ code, signal, stdout, stderr }));
  });
  return { child, pid: child.pid!, exited, stderr: () => stderr };
}

/**
 * A `pgdrain drain` of the fault tasks (its connections named `app`, as worker `workerId`) killed -9 once it
 * has started job `id` (a fault.record run in fault_runs), and its backends gone: no statement of it can still
 * commit. The job is left running, its lease to pass.
 */
export async function killDrainMidJob(sql: (text: string, params?: unknown[]) => Promise<unknown[]>, url: string,
                                      id: string, app: string, workerId: string): Promise<void> {
  const victim = spawnCli(['drain', '--json', '--deadline', '300'], {
    DATABASE_URL: withAppName(url, app), PGDRAIN_TASKS: FAULT_TASKS, PGDRAIN_WORKER_ID: workerId,
    FAULT_RECORD_URL: withAppName(url, 'fault-recorder'),
  });
  try {
    await until(async () => (await sql('select 1 from fault_runs where job_id = $1', [id])).length > 0, 'the job to start');
    victim.child.kill('SIGKILL');
    expect((await victim.exited).signal).toBe('SIGKILL');
  } finally {
    victim.child.kill('SIGKILL');
  }
  await until(async () => (await sql('select 1 from pg_stat_activity where application_name = $1', [app])).length === 0,
    "the killed drain's connections to close");
}

/** The --json report a drain printed as its last stdout line. */
export function reportOf(exit: Exit): DrainReport {
  const last = exit.stdout.trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(last) as DrainReport;
  } catch {
    throw new Error(`no JSON report on stdout (exit ${exit.code ?? exit.signal}): ${exit.stdout}\nstderr: ${exit.stderr}`);
  }
}

/** Polls probe until it returns a truthy value; fails naming `what` after timeoutMs. */
export async function until<T>(probe: () => Promise<T | false | null | undefined | 0>, what: string,
                               timeoutMs = 30_000, everyMs = 25): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Stops a drain as the kubelet stops a pod: SIGTERM, then SIGKILL if it is
 * still alive after terminationGraceSeconds. Resolves with how it exited.
 */
export async function kubeletStop(p: DrainProcess, terminationGraceSeconds: number): Promise<Exit> {
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), terminationGraceSeconds * 1000);
  try {
    return await p.exited;
  } finally {
    clearTimeout(timer);
  }
}
