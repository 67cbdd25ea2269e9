// npm run bench [-- --rounds 3 --sizes 20000,100000 --only throughput,scale,cost]
// npm run bench -- --soak 600 [--control floor|floor+history|graphile-worker]   (soaks after pgdrain, as long)
// npm run bench -- --soak 300 --pin 60:180   (a transaction holds back vacuum from 60 s to 180 s: bench/pin.ts)
// npm run bench -- --steady 60 [--rounds 5 --systems pgdrain,floor,graphile-worker]   (steady load, interleaved turns)
//
// Starts a fresh, durable PostgreSQL (fsync and synchronous_commit on), then
// measures. It is a benchmark, not a test: it prints numbers and asserts
// nothing about time (it does fail when a queue loses or leaves a job).
// Knobs for experiments (the defaults are what RESULTS.md reports):
// BENCH_PG_OPTIONS='-c autovacuum_naptime=10' (server options),
// BENCH_PGDRAIN_DRAINS=4 (drain() calls side by side), BENCH_PGDRAIN_BATCH=500 (their batch size),
// BENCH_GRAPHILE_CONCURRENCY=100.
import { mkdirSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import { cliCosts, emptyDrain, roundTrips, statementsPerJob } from './cost.js';
import { LOADS } from './loads.js';
import { parsePin } from './pin.js';
import { scale, scaleTable, writePlans } from './scale.js';
import { startBenchServer } from './server.js';
import { CONTROLS, soakControl } from './soak-control.js';
import { soak } from './soak.js';
import { checkSteadyNames, steadyRounds } from './steady.js';
import { fmtInt, positiveInt } from './stats.js';
import { batchLeaseSystem } from './systems/batch-lease.js';
import { floorSystem } from './systems/floor.js';
import { graphileSystem, GRAPHILE_CONCURRENCY } from './systems/graphile.js';
import { pgbossSystem } from './systems/pgboss.js';
import { pgdrainSystem } from './systems/pgdrain.js';
import { pgdrainBatchLeaseSystem } from './systems/pgdrain-batch-lease.js';
import type { System } from './systems/system.js';
import { cpuTable, subjectTable, throughputRounds, throughputTable } from './throughput.js';

const SECTIONS = ['throughput', 'scale', 'cost'] as const;
type Section = (typeof SECTIONS)[number];

const FACTORIES: Record<string, (url: string) => Promise<System>> = {
  floor: floorSystem, 'floor+history': (url) => floorSystem(url, { history: true }),
  pgdrain: pgdrainSystem, 'graphile-worker': graphileSystem, 'pg-boss': pgbossSystem,
  // Not in the default run: graphile-worker with two runners.
  'graphile-worker-2': (url) => graphileSystem(url, { runners: 2 }),
  // Not in the default run: prototypes of another storage for running jobs (bench/RESULTS.md).
  'batch-lease': batchLeaseSystem,
  'pgdrain-batch-lease': pgdrainBatchLeaseSystem,
  'pgdrain-batch-lease-lean': (url) => pgdrainBatchLeaseSystem(url, { lean: true }),
};
const DEFAULT_SYSTEMS = ['floor', 'floor+history', 'pgdrain', 'graphile-worker', 'pg-boss'];

const USAGE = `usage: npm run bench [-- options]
  --rounds N            interleaved rounds (default 3)
  --sizes A,B           job counts of the throughput rounds (default 20000,100000)
  --only S,...          sections: ${SECTIONS.join(', ')} (default all)
  --systems S,...       systems: ${Object.keys(FACTORIES).join(', ')}
                        (default ${DEFAULT_SYSTEMS.join(',')}; must include floor outside --soak)
  --steady SECONDS      steady load in interleaved turns instead of backlog drains
  --soak SECONDS        a soak of pgdrain; --control SYSTEM then soaks it for as long
  --pin FROM:TO         with --soak: a transaction holds back vacuum from FROM to TO seconds
  --help                this text`;

function parseCommandLine() {
  try {
    return parseArgs({ options: OPTIONS, strict: true }).values;
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    process.exit(2);
  }
}

const OPTIONS = {
  rounds: { type: 'string', default: '3' },
  sizes: { type: 'string', default: '20000,100000' },
  only: { type: 'string', default: SECTIONS.join(',') },
  systems: { type: 'string', default: DEFAULT_SYSTEMS.join(',') },
  soak: { type: 'string' },
  control: { type: 'string' },
  pin: { type: 'string' },
  steady: { type: 'string' },
  help: { type: 'boolean', default: false },
} as const;
const values = parseCommandLine();
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}

function oneOf<T extends string>(name: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) throw new Error(`--${name}: unknown ${JSON.stringify(value)} (one of ${allowed.join(', ')})`);
  return value as T;
}

const rounds = positiveInt('--rounds', values.rounds);
const sizes = values.sizes.split(',').map((s) => positiveInt('--sizes', s));
const only = new Set(values.only.split(',').map((s) => oneOf<Section>('only', s, SECTIONS)));
const systemNames = values.systems.split(',').map((s) => oneOf('systems', s, Object.keys(FACTORIES)));
const soakSeconds = values.soak === undefined ? undefined : positiveInt('--soak', values.soak);
const control = values.control === undefined ? undefined : oneOf('control', values.control, CONTROLS);
if (control && soakSeconds === undefined) throw new Error('--control: only with --soak (it follows the soak, for as long)');
if (values.pin !== undefined && soakSeconds === undefined) throw new Error('--pin: only with --soak');
const pin = values.pin === undefined ? undefined : parsePin(values.pin, soakSeconds!);
const steadySeconds = values.steady === undefined ? undefined : positiveInt('--steady', values.steady);
if (steadySeconds !== undefined && soakSeconds !== undefined) throw new Error('--steady: not with --soak (run them one at a time)');
if (steadySeconds === undefined && !systemNames.includes('floor')) throw new Error('--systems: must include floor (ratios are to the floor)');
// Steady rounds run the systems that have a steady load: by default pgdrain, the floor and graphile-worker.
const steadyNames = values.systems === DEFAULT_SYSTEMS.join(',') || steadySeconds === undefined
  ? (['pgdrain', 'floor', 'graphile-worker'] as const) : systemNames.map((s) => oneOf('systems', s, LOADS));
if (steadySeconds !== undefined) checkSteadyNames(steadyNames);

const out = (line = '') => process.stdout.write(`${line}\n`);
const note = (line: string) => process.stderr.write(`${line}\n`);
const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');

const server = await startBenchServer();
// Ctrl-C or a kill: stop the cluster this run started instead of leaving it behind.
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    void server.stop().finally(() => process.exit(130));
  });
}
const outDir = new URL('./', import.meta.url); // dist/bench/
mkdirSync(outDir, { recursive: true });
try {
  out(`# pgdrain benchmark, ${new Date().toISOString()}`);
  out();
  out(`- machine: ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, ${fmtInt(totalmem() / 2 ** 20)} MiB; load average at start ${load()}`);
  out(`- node ${process.version}; ${server.version}`);
  out(`- settings: ${Object.entries(server.settings).map(([k, v]) => `${k}=${v}`).join(', ')}`);
  out();

  if (steadySeconds !== undefined) {
    out(await steadyRounds(server, steadyNames, rounds, steadySeconds, note));
    out();
  } else if (soakSeconds !== undefined) {
    out(await soak(server, soakSeconds, note, pin));
    out();
    if (control) {
      out(await soakControl(server, soakSeconds, control, note));
      out();
    }
  } else {
    const systems: System[] = [];
    try {
      for (const name of systemNames) systems.push(await FACTORIES[name]!(server.url));
      if (only.has('throughput')) {
        const samples = await throughputRounds(server.url, systems, sizes, rounds, () => server.cpuMs(), (s) =>
          note(`  ${s.system} ${fmtInt(s.size)} round ${s.round + 1}: enqueue ${fmtInt(s.enqueuePerSec)}/s, drain ${fmtInt(s.drainPerSec)}/s, `
            + `CPU ${s.serverUsPerJob.toFixed(1)} + ${s.clientUsPerJob.toFixed(1)} µs per job (load ${load()})`));
        out(`## Throughput: ${rounds} interleaved rounds of no-op jobs`);
        out();
        out(`Enqueue: chunks of 10,000 jobs, one statement each. Drain: pgdrain 4 x drain(500), floor 4 loops of batch 500, `
          + `pg-boss 4 workers (batchSize 500, burstWhenBatchFull), graphile-worker one runner (concurrency ${GRAPHILE_CONCURRENCY}, `
          + `localQueue 500, completeJobBatchDelay 0). Ratios are paired within each round, then min / median / max.`);
        out();
        out(throughputTable(samples));
        out();
        const vs = subjectTable(samples);
        if (vs) {
          out("pgdrain's drain against each, paired within each round (min / median / max):");
          out();
          out(vs);
          out();
        }
        out('CPU per job drained: the cluster\'s processes, and this process (every system\'s client runs in it). '
          + 'On 2 cores the drain is CPU-bound, so the rates follow the sum; it moves less than they do with the load of other guests.');
        out();
        out(cpuTable(samples));
        out();
      }
      if (only.has('cost')) {
        note('  cost: statements per batch');
        out('## Serverless cost');
        out();
        out(await roundTrips(server.url));
        out();
        out(await statementsPerJob(server, systems));
        out();
        out(await emptyDrain(server.url));
        out();
        note('  cost: CLI cold start and memory');
        out(await cliCosts(server));
        out();
      }
    } finally {
      for (const s of systems) await s.close();
    }
    if (only.has('scale')) {
      const rows = await scale(server.url, undefined, note);
      const plansFile = new URL('plans.txt', outDir);
      writePlans(plansFile.pathname, rows);
      out('## Scale: one session, consume(500) then ack of those 500, backlog topped up to N after each batch; 3 rounds of 20 batches, the backlogs taking turns');
      out();
      out(scaleTable(rows));
      out();
      out(`(plans of each statement, after the switch to generic plans: ${plansFile.pathname})`);
      out();
    }
  }
  out(`load average at end: ${load()}`);
} finally {
  // graphile-worker's release calls pool.end() without awaiting it and then
  // drops the pool's error handler: an idle client still closing when the
  // server stops gets 57P01, which with no handler would crash the run after
  // its tables are printed. Only that error is let go here.
  process.on('uncaughtException', (error) => {
    if ((error as { code?: string }).code !== '57P01') throw error;
  });
  await server.stop();
}
