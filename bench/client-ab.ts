// A/B of the drain's Node-side CPU per job (bench/RESULTS.md, "The drain's
// Node-side CPU"): two bundles of src/index.ts (a baseline commit's and the
// working tree's), each drained by a process of its own, alternating A/B
// then B/A, each on a durable bench cluster of its own migrated by its own
// bundle (their SQL may differ). Per round a child publishes and drains a
// warm-up backlog, then the measured one (4 drain(500) calls side by side,
// no-op jobs, as the throughput rounds), and reports its process.cpuUsage()
// and its cluster's CPU (/proc) per job drained, and its main thread's GC
// pauses. On a shared machine only paired differences mean much.
//
//   git worktree add /tmp/base BASE && (cd /tmp/base && npm run build:sql)
//   npx esbuild /tmp/base/src/index.ts --bundle --platform=node --format=esm --packages=external --outfile=dist/ab/base.mjs
//   npx esbuild src/index.ts --bundle --platform=node --format=esm --packages=external --outfile=dist/ab/new.mjs
//   npx esbuild bench/client-ab.ts --bundle --platform=node --format=esm --packages=external --outfile=dist/ab/client-ab.mjs
//   node dist/ab/client-ab.mjs --a dist/ab/base.mjs --b dist/ab/new.mjs [--rounds 8 --size 100000 --warm 20000]
//
// Where the time goes: --profile FILE (a V8 CPU profile of the measured drain
// alone), --heap-profile FILE (what it allocates that a scavenge keeps;
// AB_HEAP_ALL=1: all of it), or perf with JIT symbols, recording the measured
// drain alone through a control FIFO:
//   mkfifo ctl; AB_PERF_CTL=ctl node dist/ab/client-ab.mjs … --node-args=--perf-basic-prof \
//     "--wrap=perf record -g -D -1 --control fifo:ctl -o perf.{}.data --"
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { clusterCpuMs, startBenchServer } from './server.js';
import { median } from './stats.js';
import { chunks } from './systems/system.js';

interface Measured {
  size: number; clientUs: number; userUs: number; serverUs: number; jobsPerSec: number;
  /** Main-thread GC pauses in the drain: count and ms per kind (minor, major, incremental, weakcb). */
  gc: Record<string, [number, number]>;
}

const GC_KINDS: Record<number, string> = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'minor', [constants.NODE_PERFORMANCE_GC_MAJOR]: 'major',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental', [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weakcb',
};

const { values } = parseArgs({ options: {
  a: { type: 'string' }, b: { type: 'string' }, rounds: { type: 'string', default: '6' },
  size: { type: 'string', default: '100000' }, warm: { type: 'string', default: '20000' },
  'node-args': { type: 'string', default: '' }, wrap: { type: 'string', default: '' }, profile: { type: 'string' }, 'heap-profile': { type: 'string' },
  child: { type: 'string' }, url: { type: 'string' }, pid: { type: 'string' },
} });

if (values.child) await child(values.child, values.url!, Number(values.pid), [Number(values.warm), Number(values.size)]);
else await parent();

async function child(lib: string, url: string, postmaster: number, sizes: number[]): Promise<void> {
  const { createQueue } = await import(pathToFileURL(resolve(lib)).href);
  const queue = createQueue({ connectionString: url, tasks: { noop: async () => null } });
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  const out: Measured[] = [];
  for (const size of sizes.filter((s) => s > 0)) {
    await admin.query('truncate jobs.job_queue, jobs.job');
    for (const [from, to] of chunks(size)) {
      await queue.publishBulk(Array.from({ length: to - from }, (_, k) => ({ task: 'noop', body: { i: from + k } })));
    }
    await admin.query('analyze');
    await admin.query('checkpoint');
    const last = size === sizes[sizes.length - 1];
    const session = values.profile && last ? await startProfile() : undefined;
    const heap = values['heap-profile'] && last ? await startHeapProfile() : undefined;
    // perf record -D -1 --control fifo:CTL: recording the measured drain alone (AB_PERF_CTL=CTL).
    if (last && process.env.AB_PERF_CTL) writeFileSync(process.env.AB_PERF_CTL, 'enable\n');
    const gc: Measured['gc'] = {};
    const observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        const kind = GC_KINDS[(e as unknown as { detail: { kind: number } }).detail.kind] ?? 'other';
        const k = (gc[kind] ??= [0, 0]);
        k[0]++;
        k[1] += e.duration;
      }
    });
    observer.observe({ entryTypes: ['gc'] });
    const server0 = clusterCpuMs(postmaster);
    const client0 = process.cpuUsage();
    const t = performance.now();
    const deadline = Date.now() + 30 * 60_000;
    const reports = await Promise.all(Array.from({ length: 4 }, () => queue.drain(500, deadline)));
    const ms = performance.now() - t;
    const cpu = process.cpuUsage(client0);
    await new Promise((r) => setImmediate(r)); // the observer's last entries
    observer.disconnect();
    if (last && process.env.AB_PERF_CTL) writeFileSync(process.env.AB_PERF_CTL, 'disable\n');
    if (session) await stopProfile(session, values.profile!);
    if (heap) await heap(values['heap-profile']!);
    const serverUs = ((clusterCpuMs(postmaster) - server0) * 1000) / size;
    const ok = reports.reduce((s: number, r: { succeeded: number }) => s + r.succeeded, 0);
    if (ok !== size) throw new Error(`drained ${ok} of ${size}`);
    out.push({ size, clientUs: (cpu.user + cpu.system) / size, userUs: cpu.user / size, serverUs, jobsPerSec: size / (ms / 1000), gc });
  }
  await admin.end();
  await queue.close();
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

async function parent(): Promise<void> {
  // A cluster per side, each migrated by its own bundle: the two may differ in their SQL.
  const servers = { a: await startBenchServer(), b: await startBenchServer() };
  try {
    const pids = { a: 0, b: 0 };
    for (const which of ['a', 'b'] as const) {
      const { createQueue } = await import(`${pathToFileURL(resolve(values[which]!)).href}?${which}`);
      const q = createQueue({ connectionString: servers[which].url, tasks: {} });
      await q.migrate();
      await q.close();
      pids[which] = await postmasterPid(servers[which].url);
    }
    const results: Record<'a' | 'b', Measured[][]> = { a: [], b: [] };
    const rounds = Number(values.rounds);
    for (let round = 0; round < rounds; round++) {
      const order: ('a' | 'b')[] = round % 2 === 0 ? ['a', 'b'] : ['b', 'a'];
      for (const which of order) {
        const args = [...values['node-args'].split(' ').filter(Boolean), process.argv[1]!, '--child', values[which]!,
          ...(values.profile ? ['--profile', `${values.profile}.${round}.${which}.cpuprofile`] : []),
          ...(values['heap-profile'] ? ['--heap-profile', `${values['heap-profile']}.${round}.${which}.heapprofile`] : []),
          '--url', servers[which].url, '--pid', String(pids[which]), '--warm', values.warm, '--size', values.size];
        // --wrap 'perf record -g -o FILE --': the child under another command (its output's last line is read).
        const [cmd, ...pre] = [...values.wrap.split(' ').filter(Boolean).map((w) => w.replace('{}', `${round}.${which}`)), process.execPath];
        const text = execFileSync(cmd!, [...pre, ...args], { encoding: 'utf8' }).trim().split('\n');
        if (process.env.AB_CHILD_LOG) writeFileSync(`${process.env.AB_CHILD_LOG}.${round}.${which}`, text.join('\n'));
        const m = JSON.parse(text[text.length - 1]!) as Measured[];
        results[which].push(m);
        const last = m[m.length - 1]!;
        process.stderr.write(`round ${round} ${which}: client ${last.clientUs.toFixed(2)} µs/job (user ${last.userUs.toFixed(2)}), `
          + `server ${last.serverUs.toFixed(1)}, ${Math.round(last.jobsPerSec)} jobs/s; warm-up client `
          + `${m.length > 1 ? m[0]!.clientUs.toFixed(2) : '-'}; load ${loadavg()[0]!.toFixed(2)}; gc `
          + `${Object.entries(last.gc).map(([k, [n, ms]]) => `${k} ${n} (${ms.toFixed(0)} ms)`).join(', ')}\n`);
      }
    }
    const col = (w: 'a' | 'b', k: 'clientUs' | 'serverUs', i: number) => results[w].map((m) => m[m.length - 1 - i]![k]);
    const diffs = results.a.map((m, r) => results.b[r]![m.length - 1]!.clientUs - m[m.length - 1]!.clientUs);
    console.log(`a ${values.a}: client median ${median(col('a', 'clientUs', 0)).toFixed(2)} µs/job, server ${median(col('a', 'serverUs', 0)).toFixed(1)}`);
    console.log(`b ${values.b}: client median ${median(col('b', 'clientUs', 0)).toFixed(2)} µs/job, server ${median(col('b', 'serverUs', 0)).toFixed(1)}`);
    console.log(`paired b - a client: median ${median(diffs).toFixed(2)} µs/job (${diffs.map((d) => d.toFixed(2)).join(', ')})`);
  } finally {
    await servers.a.stop();
    await servers.b.stop();
  }
}

/** The CPU profile of the measured drain alone (--profile FILE: FILE.ROUND.a|b.cpuprofile). */
async function startProfile(): Promise<Session> {
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object) => new Promise<unknown>((ok, fail) =>
    session.post(method, params, (error, result) => (error ? fail(error) : ok(result))));
  await post('Profiler.enable');
  await post('Profiler.setSamplingInterval', { interval: 100 });
  await post('Profiler.start');
  return session;
}

/**
 * A sampling heap profile of what the measured drain allocates and a
 * scavenge does not free (promoted, or live at its end): what the
 * garbage collector copies. AB_HEAP_ALL=1 counts every allocation.
 */
async function startHeapProfile(): Promise<(file: string) => Promise<void>> {
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object) => new Promise<unknown>((ok, fail) =>
    session.post(method, params, (error, result) => (error ? fail(error) : ok(result))));
  await post('HeapProfiler.enable');
  const all = process.env.AB_HEAP_ALL === '1';
  await post('HeapProfiler.startSampling', { samplingInterval: 1024, includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: all });
  return async (file) => {
    const { profile } = await post('HeapProfiler.stopSampling') as { profile: unknown };
    writeFileSync(file, JSON.stringify(profile));
    session.disconnect();
  };
}

async function stopProfile(session: Session, file: string): Promise<void> {
  const { profile } = await new Promise<{ profile: unknown }>((ok, fail) =>
    session.post('Profiler.stop', (error, result) => (error ? fail(error) : ok(result as { profile: unknown }))));
  writeFileSync(file, JSON.stringify(profile));
  session.disconnect();
}

/** The postmaster's pid: a backend's parent (/proc/PID/stat's field 4). */
async function postmasterPid(url: string): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const { rows } = await c.query<{ pid: number }>('select pg_backend_pid() as pid');
    const stat = readFileSync(`/proc/${rows[0]!.pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(') ') + 2).split(' ')[1]);
  } finally {
    await c.end();
  }
}
