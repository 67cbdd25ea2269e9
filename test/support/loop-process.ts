// deploy/worker-loop.sh under a given shell with test/fixtures/fake-bin's
// pgdrain first on PATH (worker-loop-stop.test.ts, worker-loop-faults.test.ts):
// the fake drain's log, marks and plan in a directory of its own.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type Exit, until } from './drain-process.js';

export const LOOP = resolve('deploy/worker-loop.sh');
export const FAKE_BIN = resolve('test/fixtures/fake-bin');
/** `date +%s` and `sleep` on a clock in $FAKE_DIR/clock (the loop's back-off, without waiting). */
export const FAKE_CLOCK = resolve('test/fixtures/fake-clock');
/** The shells the loop is run under: Debian's /bin/sh, bash, Alpine's /bin/sh (Debian's package busybox). */
export const SHELLS = ['dash', 'bash', 'busybox sh'];

/**
 * Throws, naming the package to install, when `command` is on no PATH directory: spawn would
 * only emit an uncaught ENOENT and leave the test waiting for an exit until its timeout.
 */
function requireShell(command: string) {
  if ((process.env.PATH ?? '').split(':').some((dir) => dir !== '' && existsSync(join(dir, command)))) return;
  throw new Error(`${command} is not installed: the worker-loop tests run deploy/worker-loop.sh under ` +
                  `${SHELLS.join(', ')} (apt-get install ${command}; .ci/run installs it)`);
}

/** Loops started and not yet exited: afterEach SIGKILLs them, so a failed test leaves none forking drains. */
export const running = new Set<ChildProcess>();

/**
 * The loop under `shell`, with `env` over this process's and `args` for each drain; no minimum
 * interval between drains (PGDRAIN_LOOP_MIN_SECONDS 0), unless `env` sets one: drains follow each other at once.
 */
export function loop(shell: string, env: Record<string, string> = {}, args: string[] = [],
                     { group = false, script = LOOP }: {
                       /** In a process group of its own (setsid), as a terminal's foreground job. */ group?: boolean;
                       /** The loop's file: deploy/worker-loop.sh, or a copy of it. */ script?: string } = {}) {
  const [command, ...shellArgs] = shell.split(' ');
  requireShell(command!);
  const dir = mkdtempSync(join(tmpdir(), 'pgdrain-loop-stop-'));
  const child = spawn(command!, [...shellArgs, script, ...args], {
    env: { ...process.env, PATH: `${FAKE_BIN}:${process.env.PATH}`, FAKE_DIR: dir, PGDRAIN_LOOP_MIN_SECONDS: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'], detached: group });
  running.add(child);
  child.once('exit', () => running.delete(child));
  let stderr = '';
  child.stdout.resume();
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = new Promise<Exit>((done) => child.once('close', (code, signal) => done({ code, signal, stdout: '', stderr })));
  const log = () => (existsSync(join(dir, 'log')) ? readFileSync(join(dir, 'log'), 'utf8').split('\n').filter(Boolean) : []);
  const ran = () => existsSync(join(dir, 'ran'));
  return { child, dir, exited, log, ran, stderr: () => stderr, arm: () => writeFileSync(join(dir, 'armed'), ''),
           done: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Runs `trial(run)` for runs 0 to count - 1, `together` at a time: the stops of a race test, each of a loop
 * of its own, so each is as likely to hit a window as one at a time, in less time (the loop's start-up,
 * most of a run, waits on forks).
 */
export async function trials(count: number, together: number, trial: (run: number) => Promise<void>) {
  let next = 0;
  await Promise.all(Array.from({ length: together }, async () => { while (next < count) await trial(next++); }));
}

/** A test's bound for `ms` of fixed work on a quiet machine, stretched by the load per core (at least 1 x). */
export const underLoad = (ms: number) => Math.round(ms * Math.max(1, loadavg()[0]! / cpus().length));

/**
 * The loop's exit once stopped, or null as soon as its drain logs `lost` (armed, it got no SIGTERM in 10 s):
 * a stop that never reached the drain, which a loop whose trap never ran would never end.
 */
export async function exitOrLost(p: ReturnType<typeof loop>): Promise<Exit | null> {
  let exit: Exit | null = null;
  void p.exited.then((e) => (exit = e));
  await until(async () => exit !== null || p.log().includes('lost'), 'the loop to end, or its drain to log lost', 3_600_000, 10);
  return exit;
}
