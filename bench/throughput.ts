// Interleaved rounds: in each round every system enqueues then drains n
// no-op jobs, in an order rotated per round, so slow drift in the machine's
// load hits all of them alike. Ratios to the floor are paired within a round.
import pg from 'pg';
import { fmtInt, fmtRatio, fmtSpread, median, now, spread, table } from './stats.js';
import type { System } from './systems/system.js';

export interface Sample {
  size: number;
  round: number;
  system: string;
  enqueuePerSec: number;
  drainPerSec: number;
  /** CPU the cluster's processes spent per job drained (µs). */
  serverUsPerJob: number;
  /** CPU this process (the bench, with every system's client) spent per job drained (µs). */
  clientUsPerJob: number;
}

/**
 * Runs `rounds` rounds for each size; calls progress after every sample.
 * serverCpuMs reads the cluster's CPU time so far (BenchServer.cpuMs): CPU
 * per job holds still while other guests' load moves the rates.
 */
export async function throughputRounds(url: string, systems: readonly System[], sizes: readonly number[],
                                       rounds: number, serverCpuMs: () => number,
                                       progress: (s: Sample) => void): Promise<Sample[]> {
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  const samples: Sample[] = [];
  try {
    for (const size of sizes) {
      for (let round = 0; round < rounds; round++) {
        const order = systems.map((_, i) => systems[(i + round) % systems.length]!);
        for (const system of order) {
          await system.reset();
          await admin.query('checkpoint');
          let t = now();
          await system.enqueue(size);
          const enqueueMs = now() - t;
          // Statistics for the jobs just enqueued, as autovacuum keeps them in
          // production: after reset()'s truncate the planner would think each
          // table empty (the floor then sorted its whole table on every claim).
          await admin.query('analyze');
          await admin.query('checkpoint');
          const server0 = serverCpuMs();
          const client0 = process.cpuUsage();
          t = now();
          await system.drain(size);
          const drainMs = now() - t;
          const client = process.cpuUsage(client0);
          const serverUsPerJob = ((serverCpuMs() - server0) * 1000) / size;
          await system.verify(size);
          const sample = { size, round, system: system.name,
                           enqueuePerSec: size / (enqueueMs / 1000), drainPerSec: size / (drainMs / 1000),
                           serverUsPerJob, clientUsPerJob: (client.user + client.system) / size };
          samples.push(sample);
          progress(sample);
        }
      }
    }
  } finally {
    await admin.end();
  }
  return samples;
}

type Rate = 'enqueuePerSec' | 'drainPerSec';

/** a's rate over b's, one ratio per round of this size (every round runs every system). */
function pairedRatios(samples: readonly Sample[], size: number, a: string, b: string, key: Rate): number[] {
  return samples.filter((s) => s.size === size && s.system === a).map((s) => {
    const other = samples.find((x) => x.size === size && x.round === s.round && x.system === b)!;
    return s[key] / other[key];
  });
}

/** The table: jobs/s (min / median / max over rounds) and the ratio to the floor paired within each round. */
export function throughputTable(samples: readonly Sample[], floor = 'floor'): string {
  const rows: string[][] = [];
  const sizes = [...new Set(samples.map((s) => s.size))];
  for (const size of sizes) {
    const names = [...new Set(samples.filter((s) => s.size === size).map((s) => s.system))];
    for (const name of names) {
      const mine = samples.filter((s) => s.size === size && s.system === name);
      const vsFloor = (key: Rate) => fmtSpread(spread(pairedRatios(samples, size, name, floor, key)), fmtRatio);
      rows.push([fmtInt(size), name,
        fmtSpread(spread(mine.map((s) => s.enqueuePerSec)), fmtInt), vsFloor('enqueuePerSec'),
        fmtSpread(spread(mine.map((s) => s.drainPerSec)), fmtInt), vsFloor('drainPerSec')]);
    }
  }
  return table(['jobs', 'system', 'enqueue jobs/s (min / median / max)', 'enqueue vs floor',
                'drain jobs/s (min / median / max)', 'drain vs floor'], rows);
}

/** CPU per job drained (min / median / max over rounds): the server's, and this process's. */
export function cpuTable(samples: readonly Sample[]): string {
  const fmt = (n: number) => n.toFixed(1);
  const rows: string[][] = [];
  for (const size of new Set(samples.map((s) => s.size))) {
    for (const name of new Set(samples.filter((s) => s.size === size).map((s) => s.system))) {
      const mine = samples.filter((s) => s.size === size && s.system === name);
      rows.push([fmtInt(size), name, fmtSpread(spread(mine.map((s) => s.serverUsPerJob)), fmt),
                 fmtSpread(spread(mine.map((s) => s.clientUsPerJob)), fmt),
                 fmt(median(mine.map((s) => s.serverUsPerJob + s.clientUsPerJob)))]);
    }
  }
  return table(['jobs', 'system', 'server CPU µs per job', 'bench process CPU µs per job', 'both, median'], rows);
}

/**
 * subject's drain against every other system, paired within each round
 * (min / median / max): the ratios issue 8's targets name. Empty without
 * the subject or a peer.
 */
export function subjectTable(samples: readonly Sample[], subject = 'pgdrain'): string {
  const others = [...new Set(samples.map((s) => s.system))].filter((n) => n !== subject);
  if (others.length === 0 || !samples.some((s) => s.system === subject)) return '';
  const sizes = [...new Set(samples.map((s) => s.size))];
  return table(['jobs', ...others.map((o) => `${subject} vs ${o}`)], sizes.map((size) => [fmtInt(size),
    ...others.map((o) => fmtSpread(spread(pairedRatios(samples, size, subject, o, 'drainPerSec')), fmtRatio))]));
}
