// npm run bench -- --steady SECONDS [--rounds N] [--systems pgdrain,floor,graphile-worker]:
// the systems under steady load, interleaved. Each system keeps about
// BACKLOG jobs pending (two producers publishing 1,000 at a time while its
// consumers take them, as in the soak); in each round each runs for SECONDS,
// in an order rotated per round, and its queue (with its dead tuples) stays
// as it left it for its next turn. A first round of 20 s turns warms up.
// Ratios are paired within a round, so the machine's swings, which moved
// the back-to-back control soaks by ±20-30%, hit every system alike. The
// turns are shorter than a soak: what they compare is speed under load; the
// soak is what says how steady one runs.
import pg from 'pg';
import { openLoad, produce, type Load, type LoadName } from './loads.js';
import type { BenchServer } from './server.js';
import { BACKLOG } from './soak.js';
import { fmtInt, fmtRatio, fmtSpread, now, spread, table } from './stats.js';

const WARMUP_S = 20;

interface Turn {
  round: number;
  system: LoadName;
  jobsPerSec: number;
  /** The cluster's CPU per job handled in the turn (its processes, from /proc). */
  serverUsPerJob: number;
  deadTuples: number;
  /** The smallest backlog the producers saw: near 0, the turn measured them, not the consumers. */
  leastBacklog: number;
}

/** Each system's queue table, whose dead tuples a turn reports. */
const QUEUE_TABLE: Record<LoadName, string> = {
  pgdrain: 'jobs.job_queue', floor: 'floor.job', 'floor+history': 'floor.job', 'graphile-worker': 'graphile_worker._private_jobs',
  'graphile-worker-2': 'graphile_worker._private_jobs',
};

/** Refuses two loads that share one table (their turns would drain each other's jobs). */
export function checkSteadyNames(names: readonly LoadName[]): void {
  for (const [a, b] of [['floor', 'floor+history'], ['graphile-worker', 'graphile-worker-2']] as const) {
    if (names.includes(a) && names.includes(b)) throw new Error(`--steady: ${a} and ${b} share one table; run one of them`);
  }
}

export async function steadyRounds(server: BenchServer, names: readonly LoadName[], rounds: number, seconds: number,
                                   progress: (line: string) => void): Promise<string> {
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  const loads = new Map<LoadName, { load: Load; counts: { published: number; handled: number } }>();
  const turns: Turn[] = [];
  try {
    for (const name of names) {
      const load = await openLoad(name, server.url);
      const counts = { published: 0, handled: 0 };
      loads.set(name, { load, counts });
      while (counts.published < BACKLOG) { // the backlog is there before the first turn
        await load.publish(counts.published);
        counts.published += 1000;
      }
    }
    await admin.query('analyze');
    // Round -1 warms up (caches, plans, the first autovacuum of each new table) and is not reported.
    for (let round = -1; round < rounds; round++) {
      for (let i = 0; i < names.length; i++) {
        const name = names[(i + Math.max(round, 0)) % names.length]!;
        const { load, counts } = loads.get(name)!;
        await admin.query('checkpoint');
        const producer = produce(load, counts, BACKLOG);
        const before = { at: now(), handled: counts.handled, serverMs: server.cpuMs() };
        let after = before;
        let least = 0;
        try {
          await load.start((n) => { counts.handled += n; });
          await new Promise((r) => setTimeout(r, (round < 0 ? Math.min(seconds, WARMUP_S) : seconds) * 1000));
          after = { at: now(), handled: counts.handled, serverMs: server.cpuMs() }; // what ends while they stop is not counted
          least = producer.least();
        } finally {
          await load.pause();
          await producer.stop();
        }
        if (round < 0) {
          progress(`  steady warm-up ${name}: ${fmtInt(after.handled - before.handled)} jobs`);
          continue;
        }
        const jobs = after.handled - before.handled || 1;
        const { rows } = await admin.query<{ dead: string }>(
          'select n_dead_tup as dead from pg_stat_user_tables where relid = $1::regclass', [QUEUE_TABLE[name]]);
        const turn = { round, system: name, jobsPerSec: jobs / ((after.at - before.at) / 1000),
                       serverUsPerJob: (after.serverMs - before.serverMs) * 1000 / jobs, deadTuples: Number(rows[0]?.dead ?? 0),
                       leastBacklog: least };
        turns.push(turn);
        progress(`  steady round ${round + 1} ${name}: ${fmtInt(turn.jobsPerSec)} jobs/s, server CPU per job ${turn.serverUsPerJob.toFixed(1)} µs, `
          + `dead tuples ${fmtInt(turn.deadTuples)}, least backlog ${fmtInt(turn.leastBacklog)}`);
      }
    }
  } finally {
    for (const { load } of loads.values()) await load.close();
    await admin.end();
  }
  return steadyTable(turns, names, rounds, seconds);
}

function steadyTable(turns: readonly Turn[], names: readonly LoadName[], rounds: number, seconds: number): string {
  const floor = names.find((n) => n === 'floor' || n === 'floor+history');
  const paired = (name: LoadName, to: LoadName) => turns.filter((t) => t.system === name).map((t) =>
    t.jobsPerSec / turns.find((x) => x.system === to && x.round === t.round)!.jobsPerSec);
  const rows = names.map((name) => {
    const mine = turns.filter((t) => t.system === name);
    return [name, fmtSpread(spread(mine.map((t) => t.jobsPerSec)), fmtInt),
      floor ? fmtSpread(spread(paired(name, floor)), fmtRatio) : '',
      name === 'pgdrain' || !names.includes('pgdrain') ? '' : fmtSpread(spread(paired('pgdrain', name)), fmtRatio),
      fmtSpread(spread(mine.map((t) => t.serverUsPerJob)), (x) => x.toFixed(1)),
      fmtInt(Math.max(...mine.map((t) => t.deadTuples))), fmtInt(Math.min(...mine.map((t) => t.leastBacklog)))];
  });
  return [
    `## Under steady load: ${rounds} interleaved rounds of ${seconds} s per system, backlog kept near ${fmtInt(BACKLOG)}`,
    '',
    `After a warm-up round of ${WARMUP_S} s turns, each system's two producers publish 1,000 jobs per statement while its consumers run: pgdrain 4 x drain(500) back to back, `
      + 'the floor 4 loops of batch 500, graphile-worker one runner as in the throughput rounds (graphile-worker-2: two). Min / median / max over rounds; '
      + 'ratios paired within each round. Least backlog: the fewest pending jobs the producers saw in any turn; near 0, '
      + 'the consumers waited for them.',
    '',
    table(['system', 'jobs/s', floor ? `vs ${floor}` : '', 'pgdrain vs it', 'server CPU µs per job', 'max dead tuples in its queue table', 'least backlog'], rows),
  ].join('\n');
}
