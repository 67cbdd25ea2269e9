// npm run bench -- --soak 600 --control floor | floor+history | graphile-worker:
// after pgdrain's soak, the same steady load on another queue for as long, as
// a control. Two producers keep about BACKLOG jobs pending (1,000 per
// statement); the consumers take them back to back: the floor's four loops
// claim 500 and delete them (floor) or move them to a history table
// (floor+history); graphile-worker runs one runner tuned as in the
// throughput rounds. It answers what the throughput rounds (a backlog drained
// from full) cannot: how fast each runs under steady load, with dead tuples
// and vacuum in play, and how steady.
import pg from 'pg';
import { openLoad, produce } from './loads.js';
import type { BenchServer } from './server.js';
import { BACKLOG, cpuTimes, leastBacklogLine, steadiness, WINDOW_S } from './soak.js';
import { fmtInt, now, table } from './stats.js';

export const CONTROLS = ['floor', 'floor+history', 'graphile-worker'] as const;
export type Control = (typeof CONTROLS)[number];

export async function soakControl(server: BenchServer, seconds: number, name: Control, progress: (line: string) => void): Promise<string> {
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  // pgdrain's soak left millions of rows: emptied, nothing of it is vacuumed meanwhile.
  await admin.query('truncate jobs.job_queue, jobs.job');
  const load = await openLoad(name, server.url);
  const counts = { published: 0, handled: 0 };
  const endAt = Date.now() + seconds * 1000;
  const producer = produce(load, counts, BACKLOG);
  const windows: { atS: number; jobs: number; jobsPerSec: number; serverUsPerJob: number; busyPct: number; stealPct: number;
                   leastBacklog: number }[] = [];
  try {
    await load.start((n) => { counts.handled += n; });
    const started = now();
    let last = { at: started, handled: 0, cpu: cpuTimes(), serverMs: server.cpuMs() };
    while (Date.now() < endAt) {
      await new Promise((r) => setTimeout(r, Math.min(WINDOW_S * 1000, endAt - Date.now())));
      const cur = { at: now(), handled: counts.handled, cpu: cpuTimes(), serverMs: server.cpuMs() };
      const jobs = cur.handled - last.handled || 1;
      const jiffies = cur.cpu.all - last.cpu.all || 1;
      const w = { atS: (cur.at - started) / 1000, jobs, jobsPerSec: (cur.handled - last.handled) / ((cur.at - last.at) / 1000),
                  serverUsPerJob: (cur.serverMs - last.serverMs) * 1000 / jobs,
                  busyPct: 100 * (1 - (cur.cpu.idle - last.cpu.idle) / jiffies), stealPct: 100 * (cur.cpu.steal - last.cpu.steal) / jiffies,
                  leastBacklog: producer.least() };
      windows.push(w);
      progress(`  ${name} ${w.atS.toFixed(0)} s: ${fmtInt(w.jobsPerSec)} jobs/s, least backlog ${fmtInt(w.leastBacklog)}, cpu busy ${w.busyPct.toFixed(0)}% `
        + `steal ${w.stealPct.toFixed(1)}%, server CPU per job ${w.serverUsPerJob.toFixed(1)} µs`);
      last = cur;
    }
  } finally {
    await producer.stop();
    await load.pause();
    await load.close();
    await admin.end();
  }
  const full = windows.filter((w, i) => i < windows.length - 1 || windows.length === 1);
  return [
    `## Control soak: ${name}, ${seconds} s, backlog kept near ${fmtInt(BACKLOG)}`,
    '',
    table(['t (s)', 'jobs/s', 'least backlog', 'CPU busy', 'CPU steal', 'server CPU µs per job'],
      windows.map((w) => [w.atS.toFixed(0), fmtInt(w.jobsPerSec), fmtInt(w.leastBacklog), `${w.busyPct.toFixed(0)}%`, `${w.stealPct.toFixed(1)}%`, w.serverUsPerJob.toFixed(1)])),
    '',
    ...steadiness(full),
    leastBacklogLine(windows),
    `- published ${fmtInt(counts.published)}, handled ${fmtInt(counts.handled)}`,
  ].join('\n');
}
