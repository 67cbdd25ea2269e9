// `pgdrain maintain` stopped by SIGTERM or SIGINT, as a CronJob's pod or a
// systemd timer's unit is stopped: no pass starts after the signal, the
// running one commits, and the report of the passes done is printed, exit 0,
// as `pgdrain drain` does (src/cli/signals.ts listenForMaintainStop). A
// second signal exits at once. Unfixed, the first signal killed the process
// (exit 143, nothing printed). Run `npm run build` first.
//
// Mid-way, deterministically: the test holds jobs.tick_miss ACCESS EXCLUSIVE,
// so the first pass (which has deleted its --max-rows ended jobs by then)
// waits on it; the signal comes while it waits, and the lock is let go only
// once the CLI has said it took the signal.
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeEach, expect, it, onTestFinished } from 'vitest';
import { testDb, withClient } from './support/db.js';
import { spawnCli, until, withAppName } from './support/drain-process.js';
import { maintain } from '../src/maintain.js';
import type { Queryable } from '../src/db/driver.js';

const db = await testDb();
const sql = db.sql;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.job_archive, jobs.tick_miss');
  // 50 ended jobs, ended 8 days ago: five passes of --max-rows 10.
  await sql(`insert into jobs.job (job_id, task, status, attempts, priority, max_retries, timeout, scheduled_at, created_at, ended_at)
             select g, 'x.y', 'success', 1, 0, 3, 60, now(), now(), now() - interval '8 days' from generate_series(1, 50) g`);
});

const endedLeft = async () => (await sql<{ n: number }>('select count(*)::int as n from jobs.job'))[0]!.n;

/** `pgdrain maintain --max-rows 10 ARGS`, signalled with each of `signals` while its first pass waits on a lock. */
async function signalledMidway(signals: NodeJS.Signals[], ...args: string[]) {
  return withClient(db.url, async (holder) => {
    await holder.query('begin');
    await holder.query('lock table jobs.tick_miss in access exclusive mode');
    const app = `maintain-signal-${process.pid}-${Math.random().toString(36).slice(2)}`;
    const p = spawnCli(['maintain', '--max-rows', '10', ...args], { DATABASE_URL: withAppName(db.url, app) });
    onTestFinished(() => void p.child.kill('SIGKILL'));
    await until(async () => (await sql<{ n: number }>(`select count(*)::int as n from pg_stat_activity
      where application_name = $1 and wait_event_type = 'Lock' and query like '%jobs.maintain(%'`, [app]))[0]!.n === 1,
    'the first pass to wait on jobs.tick_miss');
    for (const [i, signal] of signals.entries()) {
      p.child.kill(signal);
      if (i === 0) await until(async () => p.stderr().includes(`pgdrain: ${signal}: starting no more`) || p.child.exitCode !== null
                                 || p.child.signalCode !== null, 'the CLI to take the signal');
    }
    if (signals.length > 1) await p.exited;  // it exits while its pass still waits
    await holder.query('commit');
    return p.exited;
  });
}

it.each(['SIGTERM', 'SIGINT'] as const)('a %s mid-way: the running pass commits, no other starts, its report printed, exit 0',
  async (signal) => {
    const exit = await signalledMidway([signal]);
    expect(exit).toMatchObject({ code: 0, signal: null,
      stdout: 'maintained in 1 pass: 10 deleted, 0 archived, 0 leases expired, 0 schedule ticks, 0 throttle windows, 0 tick misses\n'
        + '  not caught up: stopped by a signal before the next pass; run it again\n' });
    expect(exit.stderr).toBe(`pgdrain: ${signal}: starting no more maintenance passes; the running one ends first `
      + '(a second SIGTERM or SIGINT exits now, that pass committed or rolled back on the server)\n');
    // The report is what the database holds: one whole pass, nothing of a second.
    expect(await endedLeft()).toBe(40);
  });

it('--json: the report has stopped: true, and counts what the database shows done', async () => {
  const exit = await signalledMidway(['SIGTERM'], '--json');
  expect(exit.code).toBe(0);
  expect(JSON.parse(exit.stdout)).toEqual({ expired: 0, ticks: 0, deleted: 10, archived: 0, windows: 0, misses: 0, left: 0,
                                            passes: 1, caughtUp: false, stopped: true });
  expect(await endedLeft()).toBe(50 - 10);
});

it('a second signal exits at once, by the signal, nothing printed; the pass it left is the server\'s', async () => {
  const exit = await signalledMidway(['SIGTERM', 'SIGTERM']);
  expect(exit).toMatchObject({ code: null, signal: 'SIGTERM', stdout: '' });
  // The backend, waiting on the lock when its client went, ran the pass on and committed it, or rolled it back:
  // whole passes either way.
  await until(async () => (await sql<{ n: number }>(`select count(*)::int as n from pg_stat_activity
    where query like '%jobs.maintain(%' and pid <> pg_backend_pid() and state = 'active'`))[0]!.n === 0, 'the pass to end');
  expect([40, 50]).toContain(await endedLeft());
});

it('maintain() with a signal fired: no pass after it; already fired, none at all', async () => {
  const stop = new AbortController();
  // The database's driver, the signal fired once the first pass has answered.
  const firing: Queryable = { query: (async (text: string, params?: readonly unknown[]) => {
    const r = await db.driver.query(text, params);
    stop.abort();
    return r;
  }) as Queryable['query'] };
  const none = { expired: 0, ticks: 0, deleted: 0, archived: 0, windows: 0, misses: 0, left: 0 };
  expect(await maintain(firing, { maxRows: 10, signal: stop.signal }))
    .toEqual({ ...none, deleted: 10, passes: 1, caughtUp: false, stopped: true });
  expect(await maintain(db.driver, { maxRows: 10, signal: stop.signal })).toEqual({ ...none, passes: 0, caughtUp: false, stopped: true });
  expect(await endedLeft()).toBe(40);
  // Not stopped: caught up, and no `stopped` in its report.
  expect(await maintain(db.driver, { maxRows: 10, signal: new AbortController().signal }))
    .toEqual({ ...none, deleted: 40, passes: 5, caughtUp: true });
});

it('maintain() with a signal fired during a pass that also spent the budget (or left only rows): stopped, as docs say', async () => {
  const stop = new AbortController();
  // The signal fired once the pass has answered, and the budget (1 ms) spent by then too: the loop's other exit.
  const firing: Queryable = { query: (async (text: string, params?: readonly unknown[]) => {
    const r = await db.driver.query(text, params);
    await new Promise((done) => setTimeout(done, 5));
    stop.abort();
    return r;
  }) as Queryable['query'] };
  // Unfixed: no `stopped` (the budget's return came first), so a caller looping until caughtUp or stopped ran on,
  // and the CLI said the budget ran out.
  expect(await maintain(firing, { maxRows: 10, budgetMs: 1, signal: stop.signal })).toEqual({
    expired: 0, ticks: 0, deleted: 10, archived: 0, windows: 0, misses: 0, left: 0, passes: 1, caughtUp: false, stopped: true });
  // Caught up in that pass: no `stopped`, whatever the budget.
  const late = new AbortController();
  const caughtUp: Queryable = { query: (async (text: string, params?: readonly unknown[]) => {
    const r = await db.driver.query(text, params);
    late.abort();
    return r;
  }) as Queryable['query'] };
  expect(await maintain(caughtUp, { maxRows: 100, budgetMs: 1, signal: late.signal })).toEqual({
    expired: 0, ticks: 0, deleted: 40, archived: 0, windows: 0, misses: 0, left: 0, passes: 1, caughtUp: true });
});

it('options.signal that is not an AbortSignal is refused, naming it', async () => {
  await expect(maintain(db.driver, { signal: 'stop' as never })).rejects.toThrow('options.signal: must be an AbortSignal');
  expect(await endedLeft()).toBe(50);
});

it('signals after done() (the report printed) do nothing: no "starting no more" line, no re-raised second one', async () => {
  // The CLI exits right after done(), too soon to hit through it: a child of the built module, with a listener of its
  // own after listenForMaintainStop's that says which signal it took, so the test knows each has been handled.
  // (That listener also keeps Node's default away: unfixed, the second signal's kill of itself did not end this child,
  // but the first's line on stderr shows the stop acted after done().)
  const signals = JSON.stringify(pathToFileURL(resolve('dist/src/cli/signals.js')).href);
  const child = spawn(process.execPath, ['--input-type=module', '-e', `
    import { listenForMaintainStop } from ${signals};
    const stop = listenForMaintainStop((line) => process.stderr.write(line + '\\n'));
    stop.done();
    const took = (name) => process.stdout.write('took ' + name + '\\n');
    process.on('SIGTERM', took).on('SIGINT', took);
    process.stdin.on('data', () => {}).on('end', () => process.exit(0));
    process.stdout.write('ready\\n');
  `], { stdio: ['pipe', 'pipe', 'pipe'] });
  onTestFinished(() => void child.kill('SIGKILL'));
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
    child.once('close', (code, signal) => done({ code, signal })));
  const alive = () => child.exitCode === null && child.signalCode === null;
  await until(async () => stdout.includes('ready\n') || !alive(), 'the child to listen');
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    child.kill(signal);
    await until(async () => stdout.includes(`took ${signal}\n`) || !alive(), `the child to take ${signal}`);
  }
  child.stdin.end();
  expect(await exited).toEqual({ code: 0, signal: null });
  expect({ stdout, stderr }).toEqual({ stdout: 'ready\ntook SIGTERM\ntook SIGINT\n', stderr: '' });
});
