// Drains side by side and crash-safe, shown with real processes: the built
// `pgdrain drain` spawned as child processes (settings in PGDRAIN_* variables,
// as in a container) against a real PostgreSQL, killed with -9, signalled as
// the kubelet does, and with the server restarted under them. Every handler
// records its run in fault_runs (test/fixtures/fault-tasks.mjs); the
// assertions count jobs and runs, never time, except the grace-period contract.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { migrate } from '../src/migrate.js';
import { testDb } from './support/db.js';
import { FAULT_TASKS, kubeletStop, reportOf, sleep, spawnCli, until, withAppName, type DrainProcess, type Exit }
  from './support/drain-process.js';
import { startServer } from './support/postgres.js';
import { tcpProxy } from './support/tcp-proxy.js';

type Sql = <R = Record<string, unknown>>(text: string, params?: unknown[]) => Promise<R[]>;

const RUNS_TABLE = 'create table if not exists fault_runs (key text not null, job_id bigint not null, attempt int not null, pid int not null)';
const db = await testDb();
const sql: Sql = db.sql;
await sql(RUNS_TABLE);
beforeEach(async () => void (await sql('truncate jobs.job_queue, jobs.job, fault_runs')));

/** A drain configured from the environment, as the Kubernetes manifests do it. */
function startDrain(url: string, name: string, args: string[] = [], env: Record<string, string> = {}): DrainProcess {
  return spawnCli(['drain', '--json', ...args], {
    DATABASE_URL: withAppName(url, name), PGDRAIN_TASKS: FAULT_TASKS, PGDRAIN_WORKER_ID: name,
    FAULT_RECORD_URL: withAppName(url, 'fault-recorder'), ...env,
  });
}

interface Batch { task?: string; ms?: number; timeout?: number; maxRetries?: number; priority?: number }

/** Publishes n jobs keyed `${prefix}${i}` in one statement. */
async function publish(q: Sql, prefix: string, n: number, o: Batch = {}): Promise<void> {
  await q(`select count(*) from jobs.publish_bulk(array(
             select row($1, jsonb_build_object('key', $2 || i, 'ms', $3::int), null, $4::numeric, $5::int, $6::int)::jobs.bulk_job
             from generate_series(1, $7::int) i))`,
          [o.task ?? 'fault.record', prefix, o.ms ?? 0, o.timeout ?? null, o.priority ?? null, o.maxRetries ?? null, n]);
}

const count = async (q: Sql, text: string, params?: unknown[]) => (await q<{ n: number }>(`select (${text})::int as n`, params))[0]!.n;
const running = (q: Sql, worker: string) =>
  count(q, 'select count(*) from jobs.job_queue where worker_id = $1 and lease_until > now()', [worker]);

/** Runs drains until the queue is empty, each after the leases and backoffs due so far have passed. */
async function finish(url: string, q: Sql, rounds = 8): Promise<Exit[]> {
  const exits: Exit[] = [];
  for (let i = 0; i < rounds; i++) {
    const [s] = await q<{ left: number; wait: number }>(`
      select count(*)::int as left,
             coalesce(extract(epoch from max(greatest(coalesce(lease_until, scheduled_at) - now(), interval '0'))), 0)::float8 as wait
      from jobs.job_queue`);
    if (s!.left === 0) return exits;
    await sleep(s!.wait * 1000 + 100);
    exits.push(await startDrain(url, `finisher-${i}`, ['--batch', '200']).exited);
  }
  throw new Error(`jobs still queued after ${rounds} drains`);
}

/** Nothing lost: every published job ended once, as a success, after at least one recorded run. */
async function expectAllDoneOnce(q: Sql, n: number): Promise<void> {
  expect(await count(q, 'select count(*) from jobs.job_queue')).toBe(0);
  expect(await q(`select count(*)::int as jobs, count(distinct job_id)::int as ids, count(distinct body->>'key')::int as keys,
                         count(*) filter (where status = 'success')::int as succeeded from jobs.job`))
    .toEqual([{ jobs: n, ids: n, keys: n, succeeded: n }]);
  expect(await count(q, `select count(*) from jobs.job j
                         where not exists (select 1 from fault_runs r where r.job_id = j.job_id)`)).toBe(0);
}

it('8 parallel drains run 50,000 jobs: each succeeds exactly once, none missing, none duplicated, none left', async () => {
  await publish(sql, 'p', 50_000);
  const drains = Array.from({ length: 8 }, (_, i) => startDrain(db.url, `parallel-${i}`, ['--batch', '250']));
  const exits = await Promise.all(drains.map((d) => d.exited));
  for (const e of exits) expect(e).toMatchObject({ code: 0, signal: null, stderr: '' });
  const reports = exits.map(reportOf);
  expect(reports.reduce((s, r) => s + r.succeeded, 0)).toBe(50_000);
  expect(reports.reduce((s, r) => s + r.claimed, 0)).toBe(50_000);
  expect(reports.filter((r) => r.claimed > 0).length).toBeGreaterThan(1); // they did run side by side
  expect(await sql('select count(*)::int as runs, count(distinct key)::int as keys from fault_runs'))
    .toEqual([{ runs: 50_000, keys: 50_000 }]);
  await expectAllDoneOnce(sql, 50_000);
}, 180_000);

it('kill -9 of a drain holding jobs, 10 times: all complete; only jobs a killed drain held ran twice', async () => {
  await publish(sql, 'k', 2000, { ms: 100, timeout: 3, maxRetries: 20 });
  const killedPids: number[] = [];
  const held = new Set<string>();
  for (let i = 0; i < 10; i++) {
    const name = `victim-${i}`;
    const victim = startDrain(db.url, name, ['--batch', '20']);
    await until(async () => (await running(sql, name)) > 0, `${name} to hold jobs`);
    await sleep(Math.random() * 200);
    victim.child.kill('SIGKILL');
    expect((await victim.exited).signal).toBe('SIGKILL');
    killedPids.push(victim.pid);
    // Once its backends are gone no statement of it can still commit: what it holds now is final.
    await until(async () => (await count(sql, 'select count(*) from pg_stat_activity where application_name = $1', [name])) === 0,
      `${name}'s connections to close`);
    const rows = await sql<{ id: string }>('select job_id::text as id from jobs.job_queue where worker_id = $1 and lease_until is not null', [name]);
    expect(rows.length, `${name} held jobs when killed`).toBeGreaterThan(0);
    for (const r of rows) held.add(r.id);
  }
  for (const e of await finish(db.url, sql)) expect(e).toMatchObject({ code: 0, stderr: '' });

  await expectAllDoneOnce(sql, 2000);
  // Held jobs came back after their lease, their killed delivery counted as an attempt.
  expect(await count(sql, `select count(*) from jobs.job where job_id = any($1::bigint[]) and (status <> 'success' or attempts < 2)`,
    [[...held]])).toBe(0);
  // A job ran more than once only if a killed drain held it, and at most once outside killed drains.
  const twice = await sql<{ id: string; survivors: number }>(`
    select job_id::text as id, count(*) filter (where pid <> all($1::int[]))::int as survivors
    from fault_runs group by job_id having count(*) > 1`, [killedPids]);
  expect(twice.length).toBeGreaterThan(0);
  for (const t of twice) {
    expect(held.has(t.id), `job ${t.id} ran twice but no killed drain held it`).toBe(true);
    expect(t.survivors).toBeLessThanOrEqual(1);
  }
}, 120_000);

it('SIGTERM mid-batch: exit 0 within the grace; jobs finished, or retried when they outlive it; none running; all claimable at once', async () => {
  // Claimed first: 5 jobs that finish within the grace and 5 that outlive it, ignoring their AbortSignal.
  await publish(sql, 'quick', 5, { ms: 2500, timeout: 120, priority: 2 });
  await publish(sql, 'stuck', 5, { ms: 120_000, timeout: 200, priority: 1 });
  await publish(sql, 'later', 10, { timeout: 120 });
  const grace = 6;
  const d = startDrain(db.url, 'term', ['--batch', '10', '--grace', String(grace)]);
  await until(async () => (await running(sql, 'term')) === 10, 'ten jobs running');
  const exit = await kubeletStop(d, grace + 4); // SIGKILL (a failed test) if it outlives terminationGracePeriodSeconds
  expect(exit).toMatchObject({ code: 0, signal: null });
  expect(exit.stderr).toContain('SIGTERM: claiming no more jobs');
  expect(reportOf(exit)).toMatchObject({ stoppedBy: 'signal', claimed: 10, succeeded: 5, released: 0, retried: 5, failed: 0 });

  expect(await count(sql, 'select count(*) from jobs.job_queue where lease_until is not null')).toBe(0);
  expect(await sql(`select body->>'key' as key, attempts from jobs.job order by 1`))
    .toEqual([1, 2, 3, 4, 5].map((i) => ({ key: `quick${i}`, attempts: 1 })));
  const back = await sql<{ key: string; attempt: number }>(`select body->>'key' as key, attempt from jobs.consume(100)`);
  expect(back.map((r) => r.key).sort()).toEqual([
    ...Array.from({ length: 10 }, (_, i) => `later${i + 1}`), ...Array.from({ length: 5 }, (_, i) => `stuck${i + 1}`)].sort());
  // The five that outlived the grace spent their attempt (retried at once); the unclaimed ones none.
  expect(back.filter((r) => r.attempt === 2).map((r) => r.key).sort()).toEqual(Array.from({ length: 5 }, (_, i) => `stuck${i + 1}`));
});

it("a handler's stray rejected promise ends neither the drain nor its other jobs: one line on stderr", async () => {
  await publish(sql, 'stray', 3, { task: 'fault.stray', timeout: 30 });
  await publish(sql, 'plain', 5, { timeout: 30 });
  const exit = await startDrain(db.url, 'stray', ['--deadline', '60']).exited;
  expect(exit).toMatchObject({ code: 0, signal: null });
  expect(reportOf(exit)).toMatchObject({ stoppedBy: 'empty', claimed: 8, succeeded: 8, failed: 0 });
  expect(exit.stderr.split('\n').filter((l) => l.includes('a promise nobody awaited (in a handler?) failed: stray'))).toHaveLength(3);
  expect(await count(sql, 'select count(*) from jobs.job_queue')).toBe(0);
});

it('a drain whose handler ignores its signal past its timeout exits once it has reported, without waiting for the handler', async () => {
  await publish(sql, 'deaf', 1, { ms: 120_000, timeout: 1, maxRetries: 0 });
  const d = startDrain(db.url, 'deaf', ['--deadline', '60']);
  // The job is nacked at its 1-s timeout and the queue is empty: the handler's two-minute timer
  // must not hold the process (SIGTERM would no longer end it, its drain being over).
  const exit = await Promise.race([d.exited, sleep(30_000).then(() => null)]);
  if (exit === null) d.child.kill('SIGKILL');
  expect(exit, 'still running 30 s after its only job timed out').not.toBeNull();
  expect(exit).toMatchObject({ code: 0, signal: null });
  expect(reportOf(exit!)).toMatchObject({ stoppedBy: 'empty', claimed: 1, failed: 1 });
});

it.each([['a second SIGTERM', ['SIGTERM', 'SIGTERM']], ['SIGINT', ['SIGINT']]] as const)(
  '%s stops every running job now (nacked, its attempt spent: retried at once) and exits 0', async (what, signals) => {
    await publish(sql, 'stuck', 4, { ms: 120_000, timeout: 200 });
    const d = startDrain(db.url, 'hard', ['--batch', '4', '--grace', '3600']);
    await until(async () => (await running(sql, 'hard')) === 4, 'four jobs running');
    for (const [i, signal] of signals.entries()) {
      d.child.kill(signal);
      if (i < signals.length - 1) await until(async () => d.stderr().includes('SIGTERM: claiming no more jobs'), 'the first SIGTERM');
    }
    if (signals.length > 1) {
      expect(d.stderr()).toContain('(SIGTERM again or SIGINT stops them now: nacked, their attempt spent: retried, or failed with no retries left; '
        + 'those still waiting for a connection released, no attempt spent)');
    }
    // Its grace is an hour and its handlers take two minutes: only the hard stop lets it exit before this SIGKILL.
    const timer = setTimeout(() => d.child.kill('SIGKILL'), 20_000);
    const exit = await d.exited;
    clearTimeout(timer);
    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(exit.stderr).toContain('stopping every running job now (nacked, its attempt spent: retried, or failed with no retries left; '
      + 'one still waiting for a connection released, no attempt spent; the report counts each)');
    expect(reportOf(exit)).toMatchObject({ stoppedBy: 'signal', claimed: 4, retried: 4, released: 0, succeeded: 0,
                                           interrupted: { nacked: 4, released: 0 } });
    expect(await sql('select attempt, lease_until, last_error from jobs.job_queue'))
      .toEqual(Array.from({ length: 4 }, () => ({ attempt: 1, lease_until: null, last_error: `did not stop before the drain's signal (${what})` })));
  });

describe('a connection lost between handler success and ack', () => {
  const jobsWithRuns = () => sql<{ key: string; attempts: number; result: Record<string, unknown>; runs: number }>(`
    select j.body->>'key' as key, j.attempts, j.result, (select count(*) from fault_runs r where r.job_id = j.job_id)::int as runs
    from jobs.job j order by 1`);

  it('cut by the server (pg_terminate_backend): the drain acks on a new connection, once; jobs.job holds it once', async () => {
    // fault.cut terminates the drain's own connections after its first run succeeded, before the ack is sent.
    await publish(sql, 'cut', 6, { task: 'fault.cut', timeout: 2, maxRetries: 5 });
    const exits: Exit[] = [];
    for (let round = 0; round < 12 && (await count(sql, 'select count(*) from jobs.job_queue')) > 0; round++) {
      await until(async () => (await count(sql, 'select count(*) from jobs.job_queue where lease_until > now()')) === 0,
        'leases of a failed drain to pass', 10_000);
      exits.push(await startDrain(db.url, 'cutter', ['--batch', '1'], { FAULT_CUT_APP: 'cutter' }).exited);
    }
    for (const e of exits) {
      expect(e.signal).toBeNull();
      if (e.code === 0) expect(reportOf(e).stoppedBy).toBe('empty');
      else expect(e).toMatchObject({ code: 1, stderr: expect.stringMatching(/^pgdrain: database unavailable: [^\n]+\n$/) });
    }
    await expectAllDoneOnce(sql, 6);
    // Acked on the first attempt although that attempt's connections were cut: the drain's settle
    // retried the ack on a fresh connection (the lost-ack branch is the next test's).
    expect(await jobsWithRuns()).toEqual(Array.from({ length: 6 }, (_, i) => ({ key: `cut${i + 1}`, attempts: 1, result: { cut: expect.any(Number) }, runs: 1 })));
    expect(await count(sql, `select count(*) from jobs.job where (result->>'cut')::int < 1`)).toBe(0);
  });

  it('cut in the network (a proxy drops every socket): the ack is lost, the job is redelivered once, jobs.job holds it once', async () => {
    await sql('create table if not exists fault_gate (key text primary key)');
    await publish(sql, 'gate', 1, { task: 'fault.gate', timeout: 5, maxRetries: 5 });
    const target = new URL(db.url);
    const proxy = await tcpProxy(target.hostname, Number(target.port));
    try {
      const viaProxy = new URL(db.url);
      viaProxy.port = String(proxy.port);
      const d = startDrain(viaProxy.href, 'gated', ['--batch', '1']);
      await until(async () => (await count(sql, 'select count(*) from fault_runs')) === 1, 'the handler to run');
      proxy.cut();
      await sql(`insert into fault_gate values ('gate1')`); // the handler now succeeds into a drain without a network
      const exit = await d.exited;
      expect(exit).toMatchObject({ code: 1, signal: null, stderr: expect.stringMatching(/^pgdrain: database unavailable: [^\n]+\n$/) });
    } finally {
      await proxy.close();
    }
    expect(await count(sql, 'select count(*) from jobs.job')).toBe(0); // not acked: still running until its lease ends
    for (const e of await finish(db.url, sql)) expect(e).toMatchObject({ code: 0, stderr: '' });
    await expectAllDoneOnce(sql, 1);
    expect(await jobsWithRuns()).toEqual([{ key: 'gate1', attempts: 2, result: { gated: false }, runs: 2 }]);
  });
});

describe('a network that freezes: a proxy stops forwarding, so no error ever comes', () => {
  const frozenDrain = async (args: string[], whileFrozen: (d: DrainProcess) => Promise<void> = async () => {},
                             task = 'fault.record') => {
    await publish(sql, 'frozen', 20, { task, ms: 100, timeout: 2 });
    const target = new URL(db.url);
    const proxy = await tcpProxy(target.hostname, Number(target.port));
    try {
      const viaProxy = new URL(db.url);
      viaProxy.port = String(proxy.port);
      // --deadline 6 for jobs of timeout 2: a CLI slow to start on a loaded machine (3 s) still has the
      // budget to claim them (with 4, one taking over 1.5 s claimed nothing and no handler ever ran).
      const d = startDrain(viaProxy.href, 'frozen', ['--batch', '5', ...args]);
      await until(async () => (await count(sql, 'select count(*) from fault_runs')) > 0, 'a handler to run');
      proxy.freeze();
      await whileFrozen(d);
      return await d.exited; // without a limit on its round trips, it never exits: the test times out
    } finally {
      await proxy.close();
    }
  };

  // One line: the limit, then what the drain could not record, if anything (src/unrecorded.ts).
  const UNAVAILABLE_AFTER_DEADLINE = /^pgdrain: database unavailable: no reply within 5000 ms after the drain's deadline(; .+ not recorded .+)?\n$/;

  it('the drain exits 1 five seconds after its deadline, with one line saying why; none lost', async () => {
    const exit = await frozenDrain(['--deadline', '6']);
    expect(exit).toMatchObject({ code: 1, signal: null, stderr: expect.stringMatching(UNAVAILABLE_AFTER_DEADLINE) });
    for (const e of await finish(db.url, sql)) expect(e).toMatchObject({ code: 0, stderr: '' });
    await expectAllDoneOnce(sql, 20);
  });

  it('…and exits although handlers still wait on the pool for statements of their own', async () => {
    // fault.follow publishes a follow-up through the drain's pool: frozen, that statement never ends.
    const exit = await frozenDrain(['--deadline', '6'], async () => {}, 'fault.follow');
    expect(exit).toMatchObject({ code: 1, signal: null, stderr: expect.stringMatching(UNAVAILABLE_AFTER_DEADLINE) });
    for (const e of await finish(db.url, sql)) expect(e).toMatchObject({ code: 0, stderr: '' });
    expect(await count(sql, 'select count(*) from jobs.job_queue')).toBe(0);
    expect(await sql(`select count(*)::int as n, count(distinct body->>'key')::int as keys from jobs.job
                      where task = 'fault.follow' and status = 'success'`)).toEqual([{ n: 20, keys: 20 }]);
  });

  it('SIGTERM ends it five seconds after its grace, long before its deadline; none lost', async () => {
    const exit = await frozenDrain(['--deadline', '600', '--grace', '1'], async (d) => void d.child.kill('SIGTERM'));
    expect(exit).toMatchObject({ code: 1, signal: null });
    expect(exit.stderr).toContain('SIGTERM: claiming no more jobs');
    expect(exit.stderr).toMatch(/\npgdrain: database unavailable: no reply within 5000 ms after the drain's grace period(; .+ not recorded .+)?\n$/);
    for (const e of await finish(db.url, sql)) expect(e).toMatchObject({ code: 0, stderr: '' });
    await expectAllDoneOnce(sql, 20);
  });

  it('SIGTERM then SIGINT end it five seconds after the SIGINT, long before its deadline; none lost', async () => {
    const exit = await frozenDrain(['--deadline', '600'], async (d) => {
      d.child.kill('SIGTERM');
      await until(async () => d.stderr().includes('SIGTERM: claiming no more jobs'), 'the SIGTERM');
      d.child.kill('SIGINT');
    });
    expect(exit).toMatchObject({ code: 1, signal: null });
    expect(exit.stderr).toContain('stopping every running job now (nacked, its attempt spent: retried, or failed with no retries left; '
      + 'one still waiting for a connection released, no attempt spent; the report counts each)');
    expect(exit.stderr)
      .toMatch(/\npgdrain: database unavailable: no reply within 5000 ms after the drain was told to stop at once(; .+ not recorded .+)?\n$/);
    for (const e of await finish(db.url, sql)) expect(e).toMatchObject({ code: 0, stderr: '' });
    await expectAllDoneOnce(sql, 20);
  });
});

it('PostgreSQL restarted under running drains: each recovers or exits with one clear line; none lost; the next drain completes', async () => {
  // Its own cluster: a restart of the shared server would break the test files running beside this one.
  const server = await startServer();
  const pool = new pg.Pool({ connectionString: server.url.replace(/\/postgres$/, '/faults'), max: 2 });
  pool.on('error', () => {});
  try {
    if (server.kind !== 'cluster' || !server.pgCtl) {
      throw new Error(`this test restarts PostgreSQL with pg_ctl and needs a cluster it started itself, got a '${server.kind}' ` +
        'server: unset TEST_DATABASE_URL and PGDRAIN_TEST_POSTGRES and install the PostgreSQL server binaries');
    }
    const admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
    await admin.query('create database faults');
    await admin.end();
    const url = server.url.replace(/\/postgres$/, '/faults');
    const driver = pgDriver(url);
    await migrate(driver);
    await driver.close();
    const q: Sql = async (text, params) => (await pool.query(text, params)).rows;
    await q(RUNS_TABLE);
    await publish(q, 'r', 8000, { ms: 20, timeout: 2, maxRetries: 10 });

    const drains = Array.from({ length: 4 }, (_, i) => startDrain(url, `restart-${i}`, ['--batch', '10']));
    await until(async () => (await count(q, 'select count(*) from jobs.job')) >= 500, 'the drains to be under way');
    expect(await count(q, 'select count(*) from jobs.job_queue')).toBeGreaterThan(1000);
    server.pgCtl('restart', '-m', 'fast');
    for (const e of await Promise.all(drains.map((d) => d.exited))) {
      expect(e.signal).toBeNull();
      if (e.code === 0) expect(e.stderr).toBe('');
      else expect({ code: e.code, stderr: e.stderr }).toMatchObject({ code: 1, stderr: expect.stringMatching(/^pgdrain: database unavailable: [^\n]+\n$/) });
    }
    for (const e of await finish(url, q)) expect(e).toMatchObject({ code: 0, stderr: '' });
    await expectAllDoneOnce(q, 8000);
  } finally {
    await pool.end();
    await server.stop();
  }
}, 120_000);
