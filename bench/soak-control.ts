// npm run bench -- --soak 600 --control floor+history (or floor): after
// pgdrain's soak, the same load on the floor for as long, as a control. A
// producer keeps about BACKLOG jobs pending (INSERT ... unnest of 1,000);
// four loops claim 500 and delete them (floor) or move them to the history
// table (floor+history), back to back. It answers two questions the
// throughput rounds (a backlog drained from full) cannot: how fast the least
// a SKIP LOCKED queue does runs under steady load, with dead tuples and
// vacuum in play, and how steady.
import pg from 'pg';
import type { BenchServer } from './server.js';
import { BACKLOG, cpuTimes, DRAINS, steadiness, WINDOW_S } from './soak.js';
import { fmtInt, now, table } from './stats.js';
import { CLAIM, DELETE, MOVE, SCHEMA } from './systems/floor.js';
import { BATCH } from './systems/system.js';

export async function soakControl(server: BenchServer, seconds: number, history: boolean, progress: (line: string) => void): Promise<string> {
  const name = history ? 'floor+history' : 'floor';
  const pool = new pg.Pool({ connectionString: server.url, max: DRAINS + 2 });
  await pool.query(SCHEMA);
  // pgdrain's soak left millions of rows: emptied, nothing of it is vacuumed meanwhile.
  await pool.query('truncate floor.job, floor.job_done, jobs.job_queue, jobs.job');
  let handled = 0;
  let published = 0;
  let stop = false;
  const endAt = Date.now() + seconds * 1000;
  const producer = (async () => {
    while (!stop) {
      if (published - handled >= BACKLOG) {
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      const bodies = Array.from({ length: 1000 }, (_, k) => JSON.stringify({ i: published + k }));
      await pool.query(`insert into floor.job (task, body) select 'noop', b from unnest($1::jsonb[]) as b`, [bodies]);
      published += 1000;
    }
  })();
  const loops = Array.from({ length: DRAINS }, async () => {
    const client = await pool.connect();
    try {
      while (!stop && Date.now() < endAt - 1000) {
        const { rows } = await client.query<{ id: string }>(CLAIM, [BATCH]);
        if (rows.length === 0) {
          await new Promise((r) => setTimeout(r, 10));
          continue;
        }
        await client.query(history ? MOVE : DELETE, [rows.map((r) => r.id)]);
        handled += rows.length;
      }
    } finally {
      client.release();
    }
  });

  const windows: { atS: number; jobs: number; jobsPerSec: number; serverUsPerJob: number; busyPct: number; stealPct: number; dead: number }[] = [];
  const started = now();
  let last = { at: started, handled: 0, cpu: cpuTimes(), serverMs: server.cpuMs() };
  try {
    while (Date.now() < endAt) {
      await new Promise((r) => setTimeout(r, Math.min(WINDOW_S * 1000, endAt - Date.now())));
      const cur = { at: now(), handled, cpu: cpuTimes(), serverMs: server.cpuMs() };
      const { rows } = await pool.query<{ dead: string }>(`select n_dead_tup as dead from pg_stat_user_tables where relid = 'floor.job'::regclass`);
      const jobs = cur.handled - last.handled || 1;
      const jiffies = cur.cpu.all - last.cpu.all || 1;
      const w = { atS: (cur.at - started) / 1000, jobs, jobsPerSec: (cur.handled - last.handled) / ((cur.at - last.at) / 1000),
                  serverUsPerJob: (cur.serverMs - last.serverMs) * 1000 / jobs, dead: Number(rows[0]!.dead),
                  busyPct: 100 * (1 - (cur.cpu.idle - last.cpu.idle) / jiffies), stealPct: 100 * (cur.cpu.steal - last.cpu.steal) / jiffies };
      windows.push(w);
      progress(`  ${name} ${w.atS.toFixed(0)} s: ${fmtInt(w.jobsPerSec)} jobs/s, floor.job dead ${fmtInt(w.dead)}, cpu busy ${w.busyPct.toFixed(0)}% `
        + `steal ${w.stealPct.toFixed(1)}%, server CPU per job ${w.serverUsPerJob.toFixed(1)} µs`);
      last = cur;
    }
  } finally {
    stop = true;
    await producer;
    await Promise.all(loops);
    await pool.end();
  }
  const full = windows.filter((w, i) => i < windows.length - 1 || windows.length === 1);
  return [
    `## Control soak: ${name}, ${seconds} s, ${DRAINS} loops of batch ${BATCH}, backlog kept near ${fmtInt(BACKLOG)}`,
    '',
    table(['t (s)', 'jobs/s', 'floor.job dead tuples', 'CPU busy', 'CPU steal', 'server CPU µs per job'],
      windows.map((w) => [w.atS.toFixed(0), fmtInt(w.jobsPerSec), fmtInt(w.dead), `${w.busyPct.toFixed(0)}%`, `${w.stealPct.toFixed(1)}%`,
        w.serverUsPerJob.toFixed(1)])),
    '',
    ...steadiness(full),
    `- published ${fmtInt(published)}, handled ${fmtInt(handled)}`,
  ].join('\n');
}
