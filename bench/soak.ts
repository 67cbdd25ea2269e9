// npm run bench -- --soak SECONDS: pgdrain under steady load for a long time.
// Two producers keep about BACKLOG jobs pending (publishBulk of 1,000); four
// consumers call drain(500, now + 10 s) back to back, as a cron or a fleet of
// short-lived functions would. Every WINDOW_S seconds it samples throughput,
// dead tuples and sizes; the summary says whether throughput per minute held
// within 10% of its median after the first minute, and whether dead tuples
// stayed bounded. Each window also records what else moves throughput:
// checkpoints, WAL written, vacuums of either table, job_queue's blocks read
// from outside shared_buffers and buffers written by backends (cache
// pressure as the table grows), the seconds a vacuum or analyze of either
// table ran (sampled every second), and the machine's CPU (busy, and stolen
// by other guests). The CPU time the server and this process spend per job
// says whether a swing is the job getting dearer or the machine giving less:
// the soak keeps the CPU busy, so throughput is what that CPU buys.
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { openLoad, produce } from './loads.js';
import { pinLines, pinVacuum, type PinSpan } from './pin.js';
import type { BenchServer } from './server.js';
import { fmtInt, median, now, table } from './stats.js';
import { DRAINERS } from './systems/system.js';

export const BACKLOG = 20_000;
export const WINDOW_S = 30;
const WARMUP_WINDOWS = 2; // the first minute


interface Window {
  atS: number;
  jobs: number;
  jobsPerSec: number;
  deadQueue: number;
  liveQueue: number;
  heapMiB: number;
  indexMiB: number;
  blocksRead: number;
  backendWrites: number;
  historyRows: number;
  autovacuums: number;
  historyVacuums: number;
  checkpoints: number;
  walMiB: number;
  busyPct: number;
  stealPct: number;
  /** The fewest pending jobs the producers saw: near 0, the drains waited for them. */
  leastBacklog: number;
  /** Seconds of the window in which a vacuum (or analyze) of jobs.job_queue, of jobs.job, was running. */
  queueVacuumS: number;
  historyVacuumS: number;
  /** CPU µs per job handled: the cluster's processes, and this process (producer and drains). */
  serverUsPerJob: number;
  nodeUsPerJob: number;
}

interface CpuTimes { all: number; idle: number; steal: number }
type Counter = 'dead' | 'live' | 'heap' | 'idx' | 'history' | 'av' | 'hv' | 'ck' | 'wal' | 'rd' | 'bw';

/** The machine's CPU counters (jiffies): all, idle (with iowait), steal. */
export function cpuTimes(): CpuTimes {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return { all: f.reduce((a, b) => a + b, 0), idle: (f[3] ?? 0) + (f[4] ?? 0), steal: f[7] ?? 0 };
}

/** The server's state and running counters, the machine's CPU counters and the CPU the cluster and this process used, at one moment. */
async function sample(server: BenchServer, admin: pg.Client): Promise<Record<Counter, number> & { cpu: CpuTimes; serverMs: number; nodeMs: number }> {
  const cpu = cpuTimes();
  const serverMs = server.cpuMs();
  const own = process.cpuUsage();
  const nodeMs = (own.user + own.system) / 1000;
  const { rows } = await admin.query<Record<Counter, string>>(
    `select q.n_dead_tup as dead, q.n_live_tup as live, pg_table_size('jobs.job_queue') as heap, pg_indexes_size('jobs.job_queue') as idx,
            (select reltuples::bigint from pg_class where oid = 'jobs.job'::regclass) as history,
            q.autovacuum_count as av,
            (select h.autovacuum_count + h.vacuum_count from pg_stat_user_tables h where h.relid = 'jobs.job'::regclass) as hv,
            (select checkpoints_timed + checkpoints_req from pg_stat_bgwriter) as ck,
            (select wal_bytes from pg_stat_wal) as wal,
            (select buffers_backend from pg_stat_bgwriter) as bw,
            (select heap_blks_read + coalesce(idx_blks_read, 0) from pg_statio_user_tables s where s.relid = q.relid) as rd
     from pg_stat_user_tables q where q.relid = 'jobs.job_queue'::regclass`);
  const numbers = Object.fromEntries(Object.entries(rows[0]!).map(([k, v]) => [k, Number(v)])) as Record<Counter, number>;
  return { ...numbers, cpu, serverMs, nodeMs };
}

/**
 * The least backlog the producers saw after the first window (which starts
 * from an empty queue): near 0, the drains waited for the producers.
 */
export function leastBacklogLine(windows: readonly Pick<Window, 'leastBacklog'>[]): string {
  return windows.length > 1 ? `- least backlog after the first window: ${fmtInt(Math.min(...windows.slice(1).map((w) => w.leastBacklog)))}`
    : '- least backlog: the soak was too short for a window after the first';
}

/**
 * The summary lines on how steady a soak ran, from its full windows: the
 * target's measure, jobs per minute after the first minute (the backlog fills
 * from nothing and the caches warm up; a 30 s window can hold one vacuum or a
 * checkpoint's burst of full-page writes or not, a minute about the same
 * share of each), the server's CPU per job in those minutes, and the spread
 * of the windows themselves.
 */
export function steadiness(full: readonly Pick<Window, 'jobs' | 'jobsPerSec' | 'serverUsPerJob'>[]): string[] {
  const rates = full.map((w) => w.jobsPerSec);
  const mid = median(rates);
  const worst = Math.max(...rates.map((x) => Math.abs(x - mid) / mid));
  const pairs = full.slice(WARMUP_WINDOWS).flatMap((w, i, ws) => i % 2 === 1 ? [[ws[i - 1]!, w] as const] : []);
  const minutes = pairs.map(([a, b]) => (a.jobsPerSec + b.jobsPerSec) / 2);
  const costs = pairs.map(([a, b]) => (a.serverUsPerJob * a.jobs + b.serverUsPerJob * b.jobs) / (a.jobs + b.jobs));
  const costMid = median(costs);
  const perMinute = minutes.length ? minutes : rates;
  const minuteMid = median(perMinute);
  const below = (minuteMid - Math.min(...perMinute)) / minuteMid;
  const above = (Math.max(...perMinute) - minuteMid) / minuteMid;
  return [
    `- throughput per minute after the first: median ${fmtInt(minuteMid)} jobs/s over ${perMinute.length} ${minutes.length ? 'minutes' : `${WINDOW_S} s windows (too short for whole minutes)`}; `
      + `min ${fmtInt(Math.min(...perMinute))} (-${(below * 100).toFixed(1)}%), max ${fmtInt(Math.max(...perMinute))} (+${(above * 100).toFixed(1)}%) `
      + `(target: within 10%)`,
    costs.length
      ? `- server CPU per job per minute after the first: median ${costMid.toFixed(1)} µs; min ${Math.min(...costs).toFixed(1)} `
        + `(-${((costMid - Math.min(...costs)) / costMid * 100).toFixed(1)}%), max ${Math.max(...costs).toFixed(1)} `
        + `(+${((Math.max(...costs) - costMid) / costMid * 100).toFixed(1)}%)`
      : '- server CPU per job: the soak was too short for a minute after the first',
    `- throughput per ${WINDOW_S} s window, all of them: median ${fmtInt(mid)} jobs/s over ${rates.length} windows; min ${fmtInt(Math.min(...rates))}, `
      + `max ${fmtInt(Math.max(...rates))}; largest deviation from the median ${(worst * 100).toFixed(1)}%`,
  ];
}

/** With pin, a transaction holds back vacuum over that span of the soak (bench/pin.ts). */
export async function soak(server: BenchServer, seconds: number, progress: (line: string) => void,
                           pin?: PinSpan): Promise<string> {
  const load = await openLoad('pgdrain', server.url);
  const counts = { published: 0, handled: 0 };
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  const endAt = Date.now() + seconds * 1000;
  let stop = false;
  const producer = produce(load, counts, BACKLOG);
  await load.start((n) => { counts.handled += n; });

  // Which maintenance runs, once a second: its CPU is part of what a job costs.
  const running = { queue: 0, history: 0 };
  const watcher = (async () => {
    while (!stop && Date.now() < endAt) {
      const { rows } = await admin.query<{ queue: boolean; history: boolean }>(
        `select coalesce(bool_or(relid = 'jobs.job_queue'::regclass), false) as queue, coalesce(bool_or(relid = 'jobs.job'::regclass), false) as history
         from (select relid from pg_stat_progress_vacuum union all select relid from pg_stat_progress_analyze) p`);
      running.queue += Number(rows[0]!.queue);
      running.history += Number(rows[0]!.history);
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();

  const pinning = pin ? pinVacuum(server.url, pin, Date.now(), () => stop) : undefined;
  const windows: Window[] = [];
  const started = now();
  let lastHandled = 0;
  let lastAt = started;
  let last = await sample(server, admin); // counters before the first window, so it has its own differences
  try {
    while (Date.now() < endAt) {
      await new Promise((r) => setTimeout(r, Math.min(WINDOW_S * 1000, endAt - Date.now())));
      const t = now();
      const cur = await sample(server, admin);
      const jobs = counts.handled - lastHandled || 1;
      const jiffies = cur.cpu.all - last.cpu.all || 1;
      const w = { atS: (t - started) / 1000, jobs, jobsPerSec: (counts.handled - lastHandled) / ((t - lastAt) / 1000),
                  queueVacuumS: running.queue, historyVacuumS: running.history,
                  serverUsPerJob: (cur.serverMs - last.serverMs) * 1000 / jobs, nodeUsPerJob: (cur.nodeMs - last.nodeMs) * 1000 / jobs,
                  deadQueue: cur.dead, liveQueue: cur.live, heapMiB: cur.heap / 2 ** 20, indexMiB: cur.idx / 2 ** 20,
                  blocksRead: cur.rd - last.rd, backendWrites: cur.bw - last.bw,
                  historyRows: cur.history, autovacuums: cur.av,
                  historyVacuums: cur.hv - last.hv, checkpoints: cur.ck - last.ck, walMiB: (cur.wal - last.wal) / 2 ** 20,
                  busyPct: 100 * (1 - (cur.cpu.idle - last.cpu.idle) / jiffies),
                  stealPct: 100 * (cur.cpu.steal - last.cpu.steal) / jiffies, leastBacklog: producer.least() };
      windows.push(w);
      progress(`  soak ${w.atS.toFixed(0)} s: ${fmtInt(w.jobsPerSec)} jobs/s, least backlog ${fmtInt(w.leastBacklog)}, job_queue dead ${fmtInt(w.deadQueue)}, ${w.heapMiB.toFixed(0)}+${w.indexMiB.toFixed(0)} MiB, read ${fmtInt(w.blocksRead)} blocks, `
        + `backend writes ${fmtInt(w.backendWrites)}, checkpoints ${w.checkpoints}, WAL ${w.walMiB.toFixed(0)} MiB, jobs.job vacuums ${w.historyVacuums}, cpu busy ${w.busyPct.toFixed(0)}% steal ${w.stealPct.toFixed(1)}%, `
        + `vacuuming job_queue ${w.queueVacuumS} s jobs.job ${w.historyVacuumS} s, `
        + `CPU per job: server ${w.serverUsPerJob.toFixed(1)} µs, node ${w.nodeUsPerJob.toFixed(1)} µs`);
      running.queue = running.history = 0;
      last = cur;
      lastHandled = counts.handled;
      lastAt = t;
    }
  } finally {
    stop = true;
    await watcher;
    await pinning;
    await producer.stop();
    await load.pause();
    await load.close();
    await admin.end();
  }
  const full = windows.filter((w, i) => i < windows.length - 1 || windows.length === 1); // the last window may be short
  const half = Math.floor(full.length / 2);
  const deadFirst = Math.max(...full.slice(0, half || 1).map((w) => w.deadQueue));
  const deadSecond = Math.max(...full.slice(half).map((w) => w.deadQueue));
  return [
    `## Soak: ${seconds} s, ${DRAINERS} drains of batch 500, backlog kept near ${fmtInt(BACKLOG)}`,
    '',
    table(['t (s)', 'jobs/s', 'least backlog', 'job_queue dead tuples', 'job_queue live', 'job_queue MiB (heap + indexes)', 'job_queue blocks read', 'backend writes', 'jobs.job rows', 'autovacuums',
      'jobs.job vacuums', 'checkpoints', 'WAL MiB', 'vacuum/analyze running (s): job_queue, jobs.job', 'CPU busy', 'CPU steal', 'server CPU µs per job', 'node CPU µs per job'],
      windows.map((w) => [w.atS.toFixed(0), fmtInt(w.jobsPerSec), fmtInt(w.leastBacklog), fmtInt(w.deadQueue), fmtInt(w.liveQueue),
        `${w.heapMiB.toFixed(0)} + ${w.indexMiB.toFixed(0)}`, fmtInt(w.blocksRead), fmtInt(w.backendWrites), fmtInt(w.historyRows), String(w.autovacuums), String(w.historyVacuums), String(w.checkpoints),
        w.walMiB.toFixed(0), `${w.queueVacuumS}, ${w.historyVacuumS}`, `${w.busyPct.toFixed(0)}%`, `${w.stealPct.toFixed(1)}%`,
        w.serverUsPerJob.toFixed(1), w.nodeUsPerJob.toFixed(1)])),
    '',
    ...steadiness(full),
    `- dead tuples in jobs.job_queue: max ${fmtInt(deadFirst)} in the first half, ${fmtInt(deadSecond)} in the second half`,
    leastBacklogLine(windows),
    `- published ${fmtInt(counts.published)}, handled ${fmtInt(counts.handled)}`,
    ...(pin ? pinLines(windows, pin, WINDOW_S) : []),
  ].join('\n');
}
