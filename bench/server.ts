// A fresh PostgreSQL cluster for the benchmark, with the durability defaults
// (fsync, synchronous_commit and full_page_writes on) that the tests turn off.
// pg_stat_statements is preloaded but tracks nothing until a measurement asks
// (setTracking), so it costs the throughput rounds nothing measurable.
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { findPgBin, freePort } from '../test/support/postgres.js';

export interface BenchServer {
  /** URL of the `bench` database. */
  url: string;
  /** `postgres --version`. */
  version: string;
  /** Settings that matter for the numbers, as the server reports them. */
  settings: Record<string, string>;
  /** The server log so far (statements logged with log_statement, auto_explain output). */
  log(): string;
  /**
   * CPU time (ms) the cluster's processes have used so far: the postmaster,
   * its live children and the children it has reaped (Linux /proc).
   */
  cpuMs(): number;
  /** pg_stat_statements.track: 'none' during throughput rounds, 'top' to count round trips. */
  setTracking(track: 'none' | 'top'): Promise<void>;
  stop(): Promise<void>;
}

const REPORTED = ['fsync', 'synchronous_commit', 'full_page_writes', 'wal_level', 'shared_buffers',
  'max_wal_size', 'checkpoint_timeout', 'autovacuum', 'jit', 'max_connections'];

export async function startBenchServer(): Promise<BenchServer> {
  if (process.env.BENCH_DATABASE_URL) {
    throw new Error('BENCH_DATABASE_URL is not supported: the benchmark needs a fresh cluster it owns');
  }
  const bin = findPgBin();
  if (!bin) throw new Error('no PostgreSQL server binaries found (initdb, pg_ctl, postgres)');
  const root = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), 'pgdrain-bench-'));
  chmodSync(dir, 0o755);
  if (root) {
    const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres']).toString());
    chownSync(dir, id('-u'), id('-g'));
  }
  const run = (cmd: string, args: string[]) => {
    const [file, argv] = root ? ['runuser', ['-u', 'postgres', '--', join(bin, cmd), ...args]] : [join(bin, cmd), args];
    return execFileSync(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  };
  const data = join(dir, 'data');
  const logFile = join(dir, 'log');
  run('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-sync', '--locale=C.UTF-8']);
  const port = await freePort();
  const options = [
    `-p ${port}`, `-k ${dir}`, '-c listen_addresses=127.0.0.1',
    '-c shared_preload_libraries=pg_stat_statements',
    // Extra server options for an experiment, e.g. BENCH_PG_OPTIONS='-c autovacuum_naptime=10'.
    ...(process.env.BENCH_PG_OPTIONS ? [process.env.BENCH_PG_OPTIONS] : []),
    "-c log_line_prefix='%m [%p] %a '", '-c log_timezone=UTC',
  ].join(' ');
  const pgCtl = (...args: string[]) => run('pg_ctl', ['-D', data, '-w', '-l', logFile, '-o', options, ...args]);
  pgCtl('start');
  const admin = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const client = new pg.Client({ connectionString: admin });
  await client.connect();
  let settings: Record<string, string>;
  try {
    await client.query('create database bench');
    const { rows } = await client.query<{ name: string; setting: string; unit: string | null }>(
      'select name, setting, unit from pg_settings where name = any($1)', [REPORTED]);
    settings = Object.fromEntries(rows.map((r) => [r.name, r.unit ? `${r.setting} (${r.unit})` : r.setting]));
  } finally {
    await client.end();
  }
  const url = `postgres://postgres@127.0.0.1:${port}/bench`;
  const setup = new pg.Client({ connectionString: url });
  await setup.connect();
  await setup.query('create extension pg_stat_statements');
  await setup.end();

  const server: BenchServer = {
    url,
    version: execFileSync(join(bin, 'postgres'), ['--version']).toString().trim(),
    settings,
    log: () => readFileSync(logFile, 'utf8'),
    cpuMs: () => clusterCpuMs(Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0])),
    async setTracking(track) {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        await c.query(`alter system set pg_stat_statements.track = '${track}'`);
        await c.query('select pg_reload_conf()');
        await new Promise((r) => setTimeout(r, 200)); // backends pick up SIGHUP between statements
        await c.query('select pg_stat_statements_reset()');
      } finally {
        await c.end();
      }
    },
    async stop() {
      try {
        pgCtl('stop', '-m', 'fast');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
  // Set with ALTER SYSTEM, not -c: a command-line setting would win over later ALTER SYSTEMs.
  await server.setTracking('none');
  return server;
}

/** /proc/PID/stat's fields after the command name: [0] is field 3 (state). */
function statFields(pid: number | string): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
  } catch {
    return undefined; // the process ended meanwhile: its parent's reaped-children times have it
  }
}

// Clock ticks (USER_HZ) are 100 per second on Linux. A child that exits
// between the two reads is missed or counted twice: rare, and one process.
export function clusterCpuMs(postmaster: number): number {
  const own = statFields(postmaster);
  if (!own) throw new Error(`postmaster ${postmaster} is not running`);
  // utime, stime, cutime, cstime: fields 14-17
  let ticks = Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14]);
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const f = statFields(pid);
    if (f && Number(f[1]) === postmaster) ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks * 10;
}
