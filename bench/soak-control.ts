// npm run bench -- --soak 600 --control floor | floor+history | graphile-worker:
// after pgdrain's soak, the same steady load on another queue for as long, as
// a control. A producer keeps about BACKLOG jobs pending (1,000 per
// statement); the consumers take them back to back: the floor's four loops
// claim 500 and delete them (floor) or move them to a history table
// (floor+history); graphile-worker runs one runner tuned as in the
// throughput rounds. It answers what the throughput rounds (a backlog drained
// from full) cannot: how fast each runs under steady load, with dead tuples
// and vacuum in play, and how steady.
import { Logger, makeWorkerUtils, run } from 'graphile-worker';
import pg from 'pg';
import type { BenchServer } from './server.js';
import { BACKLOG, cpuTimes, DRAINS, steadiness, WINDOW_S } from './soak.js';
import { fmtInt, now, table } from './stats.js';
import { CLAIM, DELETE, MOVE, SCHEMA } from './systems/floor.js';
import { GRAPHILE_CONCURRENCY } from './systems/graphile.js';
import { BATCH } from './systems/system.js';

export const CONTROLS = ['floor', 'floor+history', 'graphile-worker'] as const;
export type Control = (typeof CONTROLS)[number];

/** A queue under steady load: publish adds 1,000 jobs; start runs consumers that call done(n) as n jobs end, until stop. */
interface Load {
  publish(from: number): Promise<void>;
  start(done: (n: number) => void): Promise<void>;
  stop(): Promise<void>;
}

async function floorLoad(url: string, history: boolean): Promise<Load> {
  const pool = new pg.Pool({ connectionString: url, max: DRAINS + 2 });
  await pool.query(SCHEMA);
  let loops: Promise<void>[] = [];
  let stopping = false;
  return {
    async publish(from) {
      const bodies = Array.from({ length: 1000 }, (_, k) => JSON.stringify({ i: from + k }));
      await pool.query(`insert into floor.job (task, body) select 'noop', b from unnest($1::jsonb[]) as b`, [bodies]);
    },
    async start(done) {
      loops = Array.from({ length: DRAINS }, async () => {
        const client = await pool.connect();
        try {
          while (!stopping) {
            const { rows } = await client.query<{ id: string }>(CLAIM, [BATCH]);
            if (rows.length === 0) {
              await new Promise((r) => setTimeout(r, 10));
              continue;
            }
            await client.query(history ? MOVE : DELETE, [rows.map((r) => r.id)]);
            done(rows.length);
          }
        } finally {
          client.release();
        }
      });
    },
    async stop() {
      stopping = true;
      await Promise.all(loops);
      await pool.end();
    },
  };
}

async function graphileLoad(url: string): Promise<Load> {
  const logger = new Logger(() => () => {});
  const utils = await makeWorkerUtils({ connectionString: url, logger });
  await utils.migrate();
  let runner: Awaited<ReturnType<typeof run>> | undefined;
  return {
    async publish(from) {
      await utils.addJobs(Array.from({ length: 1000 }, (_, k) => ({ identifier: 'noop', payload: { i: from + k } })));
    },
    async start(done) {
      runner = await run({
        connectionString: url, concurrency: GRAPHILE_CONCURRENCY, maxPoolSize: GRAPHILE_CONCURRENCY + 2,
        noHandleSignals: true, pollInterval: 1000, logger,
        taskList: { noop: async () => { done(1); } },
        preset: { worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } },
      });
    },
    async stop() {
      await runner?.stop();
      await utils.release();
    },
  };
}

export async function soakControl(server: BenchServer, seconds: number, name: Control, progress: (line: string) => void): Promise<string> {
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  // pgdrain's soak left millions of rows: emptied, nothing of it is vacuumed meanwhile.
  await admin.query('truncate jobs.job_queue, jobs.job');
  const load = name === 'graphile-worker' ? await graphileLoad(server.url) : await floorLoad(server.url, name === 'floor+history');
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
      await load.publish(published);
      published += 1000;
    }
  })();
  const windows: { atS: number; jobs: number; jobsPerSec: number; serverUsPerJob: number; busyPct: number; stealPct: number }[] = [];
  try {
    await load.start((n) => { handled += n; });
    const started = now();
    let last = { at: started, handled: 0, cpu: cpuTimes(), serverMs: server.cpuMs() };
    while (Date.now() < endAt) {
      await new Promise((r) => setTimeout(r, Math.min(WINDOW_S * 1000, endAt - Date.now())));
      const cur = { at: now(), handled, cpu: cpuTimes(), serverMs: server.cpuMs() };
      const jobs = cur.handled - last.handled || 1;
      const jiffies = cur.cpu.all - last.cpu.all || 1;
      const w = { atS: (cur.at - started) / 1000, jobs, jobsPerSec: (cur.handled - last.handled) / ((cur.at - last.at) / 1000),
                  serverUsPerJob: (cur.serverMs - last.serverMs) * 1000 / jobs,
                  busyPct: 100 * (1 - (cur.cpu.idle - last.cpu.idle) / jiffies), stealPct: 100 * (cur.cpu.steal - last.cpu.steal) / jiffies };
      windows.push(w);
      progress(`  ${name} ${w.atS.toFixed(0)} s: ${fmtInt(w.jobsPerSec)} jobs/s, cpu busy ${w.busyPct.toFixed(0)}% `
        + `steal ${w.stealPct.toFixed(1)}%, server CPU per job ${w.serverUsPerJob.toFixed(1)} µs`);
      last = cur;
    }
  } finally {
    stop = true;
    await producer;
    await load.stop();
    await admin.end();
  }
  const full = windows.filter((w, i) => i < windows.length - 1 || windows.length === 1);
  return [
    `## Control soak: ${name}, ${seconds} s, backlog kept near ${fmtInt(BACKLOG)}`,
    '',
    table(['t (s)', 'jobs/s', 'CPU busy', 'CPU steal', 'server CPU µs per job'],
      windows.map((w) => [w.atS.toFixed(0), fmtInt(w.jobsPerSec), `${w.busyPct.toFixed(0)}%`, `${w.stealPct.toFixed(1)}%`, w.serverUsPerJob.toFixed(1)])),
    '',
    ...steadiness(full),
    `- published ${fmtInt(published)}, handled ${fmtInt(handled)}`,
  ].join('\n');
}
