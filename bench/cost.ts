// What a drain costs a serverless caller: statements per batch (client side,
// and for every system from pg_stat_statements), the statements of a drain
// on an empty queue, the CLI's cold start to its first claim, and the peak
// memory of a CLI drain of 100k jobs.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createQueue } from '../src/index.js';
import { pgDriver } from '../src/db/pg.js';
import { recordingDriver, statementName, type Sent } from './recording-driver.js';
import { fill } from './fill.js';
import type { BenchServer } from './server.js';
import { fmtInt, fmtMs, median, now, table } from './stats.js';
import type { System } from './systems/system.js';

const root = fileURLToPath(new URL('../..', import.meta.url)); // dist/bench/run.mjs → the repository
const CLI = `${root}dist/cli.mjs`;
const TASKS = `${root}bench/noop-tasks.mjs`;

function countBy(sent: readonly Sent[]): string {
  const counts = new Map<string, number>();
  for (const s of sent) counts.set(statementName(s.text), (counts.get(statementName(s.text)) ?? 0) + 1);
  return [...counts].map(([k, v]) => `${v} x ${k}`).join(', ');
}

/** pgdrain's statements per batch, counted on the client: 1 drain and 4 drains, batch 500. */
export async function roundTrips(url: string, jobs = 20_000): Promise<string> {
  const rows: string[][] = [];
  for (const drains of [1, 4]) {
    const driver = recordingDriver(pgDriver(url, { max: 10 }));
    const queue = createQueue({ driver, tasks: { noop: async () => null } });
    await queue.migrate(); // --only cost: no throughput round has migrated the database
    await queue.publishBulk(Array.from({ length: jobs }, (_, i) => ({ task: 'noop', body: { i } })));
    driver.sent.length = 0;
    const reports = await Promise.all(Array.from({ length: drains }, () => queue.drain(500, Date.now() + 600_000)));
    const batches = reports.reduce((s, r) => s + r.batches, 0);
    const succeeded = reports.reduce((s, r) => s + r.succeeded, 0);
    rows.push([String(drains), fmtInt(succeeded), String(batches), String(driver.sent.length),
      (driver.sent.length / (succeeded / 500)).toFixed(2), countBy(driver.sent)]);
    await queue.close();
  }
  return table(['drains', 'jobs', 'claims (report.batches)', 'statements', 'statements per 500 jobs', 'which'], rows);
}

/** Top-level statements each system sends per 1,000 jobs drained (pg_stat_statements, track = top). */
export async function statementsPerJob(server: BenchServer, systems: readonly System[], jobs = 20_000): Promise<string> {
  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  const rows: string[][] = [];
  try {
    await server.setTracking('top');
    for (const system of systems) {
      await system.reset();
      await system.enqueue(jobs);
      await admin.query('select pg_stat_statements_reset()');
      await system.drain(jobs);
      const { rows: stats } = await admin.query<{ calls: string; query: string }>(
        `select calls, query from pg_stat_statements
         where dbid = (select oid from pg_database where datname = current_database())
           and query not like '%pg_stat_statements%' and query not like 'select count(*)::int as n from %'
           and query not like '%state::text = any%'`);
      const total = stats.reduce((s, r) => s + Number(r.calls), 0);
      const top = stats.sort((a, b) => Number(b.calls) - Number(a.calls)).slice(0, 3)
        .map((r) => `${r.calls} x ${r.query.replace(/\s+/g, ' ').slice(0, 48)}`).join('; ');
      rows.push([system.name, fmtInt(total), (total / (jobs / 1000)).toFixed(1), top]);
      await system.verify(jobs);
    }
  } finally {
    await server.setTracking('none');
    await admin.end();
  }
  return table(['system', `statements for ${fmtInt(jobs)} jobs`, 'per 1,000 jobs', 'most frequent'], rows);
}

/**
 * The statements of a drain() that finds nothing due, and their server-side
 * time: on an empty queue, and on one holding `later` jobs scheduled an hour
 * ahead (a backlog of delayed jobs must not make every wake-up read it).
 */
export async function emptyDrain(url: string, later = [0, 100_000]): Promise<string> {
  const driver = recordingDriver(pgDriver(url, { max: 2 }));
  const queue = createQueue({ driver, tasks: { noop: async () => null } });
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  const rows: string[][] = [];
  try {
    for (const n of later) {
      await admin.query('truncate jobs.job_queue, jobs.job');
      await fill(admin, n, { laterSeconds: 3600 });
      await admin.query('vacuum analyze jobs.job_queue');
      const counts: number[] = [];
      const ms: number[] = [];
      for (let i = 0; i < 15; i++) {
        const before = driver.sent.length;
        const report = await queue.drain(500, Date.now() + 60_000);
        if (report.stoppedBy !== 'empty' || report.claimed !== 0) throw new Error(`empty drain: ${JSON.stringify(report)}`);
        counts.push(driver.sent.length - before);
        ms.push(driver.sent.slice(before).reduce((s, x) => s + x.ms, 0));
      }
      const last = driver.sent.slice(-counts.at(-1)!);
      rows.push([fmtInt(n), String(median(counts)), countBy(last), fmtMs(median(ms)), fmtMs(Math.max(...ms))]);
    }
  } finally {
    await admin.end();
    await queue.close();
  }
  return table(['jobs scheduled later (none due)', 'statements per drain()', 'which', 'round trip ms, median', 'max'], rows);
}

interface CliRun {
  /** spawn → the server logged the first claim statement. */
  firstClaimMs: number;
  /** spawn → exit. */
  exitMs: number;
  maxRssKb: number;
  stdout: string;
}

/** Runs `pgdrain drain` under /usr/bin/time; finds its first claim in the server log by application_name. */
async function runCli(server: BenchServer, tag: string, args: string[]): Promise<CliRun> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  const dsn = new URL(server.url);
  dsn.searchParams.set('application_name', tag);
  dsn.searchParams.set('options', '-c log_statement=all');
  const spawnedAt = Date.now();
  const child = spawn('/usr/bin/time', ['-f', 'maxrss_kb=%M', process.execPath, CLI, 'drain', '--tasks', TASKS,
                                         '--dsn', dsn.href, '--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const exitMs = Date.now() - spawnedAt;
  if (code !== 0) throw new Error(`pgdrain drain exited ${code}: ${stderr}`);
  const line = server.log().split('\n').find((l) => l.includes(` ${tag} `) && /(statement|execute [^:]*): .*claim/.test(l));
  if (!line) throw new Error(`no claim statement from ${tag} in the server log`);
  const at = Date.parse(line.slice(0, 23).replace(' ', 'T') + 'Z'); // "2026-11-23 02:31:18.123 UTC"
  return { firstClaimMs: at - spawnedAt, exitMs, maxRssKb: Number(/maxrss_kb=(\d+)/.exec(stderr)?.[1]), stdout };
}

/** CLI cold start to first claim (empty queue, 7 runs) and peak memory of a CLI drain of 100k jobs. */
export async function cliCosts(server: BenchServer, jobs = 100_000): Promise<string> {
  const nodeOnly: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = now();
    execFileSync(process.execPath, ['-e', '0']);
    nodeOnly.push(now() - t);
  }
  const cold: CliRun[] = [];
  for (let i = 0; i < 7; i++) cold.push(await runCli(server, `bench-cold-${i}`, ['--batch', '500', '--deadline', '30']));

  const admin = new pg.Client({ connectionString: server.url });
  await admin.connect();
  let big: CliRun;
  try {
    await admin.query('truncate jobs.job_queue, jobs.job');
    await fill(admin, jobs);
    await admin.query('vacuum analyze jobs.job_queue');
    big = await runCli(server, 'bench-100k', ['--batch', '500', '--deadline', '600']);
    const report = JSON.parse(big.stdout) as { succeeded: number; durationMs: number };
    if (report.succeeded !== jobs) throw new Error(`CLI drain succeeded ${report.succeeded} of ${jobs}`);
    return [
      `- CLI cold start to first claim (\`pgdrain drain --dsn ...\`, empty queue, spawn → claim statement logged by the server): `
        + `median ${fmtMs(median(cold.map((r) => r.firstClaimMs)))} ms (min ${fmtMs(Math.min(...cold.map((r) => r.firstClaimMs)))}, `
        + `max ${fmtMs(Math.max(...cold.map((r) => r.firstClaimMs)))}); to exit: median ${fmtMs(median(cold.map((r) => r.exitMs)))} ms; `
        + `\`node -e 0\` alone: ${fmtMs(median(nodeOnly))} ms`,
      `- peak memory (max RSS): empty drain ${fmtInt(median(cold.map((r) => r.maxRssKb)) / 1024)} MiB; `
        + `one CLI drain of ${fmtInt(jobs)} jobs (batch 500) ${fmtInt(big.maxRssKb / 1024)} MiB, `
        + `${fmtInt(jobs / (report.durationMs / 1000))} jobs/s`,
    ].join('\n');
  } finally {
    await admin.end();
  }
}
