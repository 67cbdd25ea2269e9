// A/B of the server's CPU per job of drain()'s claim statement alone
// (bench/RESULTS.md, "The server's CPU per claimed job"): one durable
// cluster, two databases migrated by the same build, side b (and a, if
// given) patched by an SQL file after the migration. Per round and side,
// D connections (--drains, 1 by default) each loop drain()'s exact
// jobs.claim_json statement (500 per claim, each claim acking the previous
// one's jobs, no-op results) over a fresh backlog, after a warm-up backlog
// on the same connections; the backends' CPU (/proc) per job drained is
// read around the measured loop. Sides alternate a/b then b/a. No Node
// handler runs, so only the server's side of a change shows.
//
//   npm run build && npx esbuild bench/claim-ab.ts --bundle --platform=node --format=esm \
//     --packages=external --outfile=dist/ab/claim-ab.mjs
//   node dist/ab/claim-ab.mjs --b patch.sql [--a other.sql] [--rounds 6 --size 100000 --warm 20000 --drains 1]
//   AB_STATS=1 BENCH_PG_OPTIONS='-c pg_stat_statements.track=all' …: also each side's statements.
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createQueue } from '../src/index.js';
import { abDatabases } from './ab-databases.js';
import { startBenchServer } from './server.js';
import { median } from './stats.js';
import { chunks } from './systems/system.js';

const { values } = parseArgs({ options: {
  a: { type: 'string' }, b: { type: 'string' }, rounds: { type: 'string', default: '6' },
  size: { type: 'string', default: '100000' }, warm: { type: 'string', default: '20000' },
  drains: { type: 'string', default: '1' },
} });

const CLAIM = `select jobs.claim_json($1, null, $2, null, null, null, $3, $4::bigint[], $5::integer[], $6::text[],
                                     null, null, null, $7::float8[], null) as r`;

function backendTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

/** Drains the queue on one connection, as drain() claims; returns the jobs it acked. */
async function loop(c: pg.Client, worker: string): Promise<number> {
  let acked = 0;
  let ids: string[] = [];
  let attempts: number[] = [];
  for (;;) {
    const args = ids.length === 0 ? [null, null, null, null]
      : [`{${ids.join(',')}}`, `{${attempts.join(',')}}`, `{${ids.map(() => 'ack').join(',')}}`, `{${ids.map(() => 0.01).join(',')}}`];
    const { rows } = await c.query<{ r: { count: number; jobs: { id: string; attempt: number[] } | null; settled: { succeeded: number } | null } }>(
      CLAIM, [500, 60, worker, ...args]);
    const r = rows[0]!.r;
    acked += r.settled?.succeeded ?? 0;
    if (r.count === 0) return acked;
    ids = r.jobs!.id.split(',');
    attempts = r.jobs!.attempt;
  }
}

async function fill(url: string, n: number): Promise<void> {
  const q = createQueue({ connectionString: url, tasks: {} });
  for (const [from, to] of chunks(n)) {
    await q.publishBulk(Array.from({ length: to - from }, (_, k) => ({ task: 'noop', body: { i: from + k } })));
  }
  await q.close();
}

async function round(url: string, drains: number): Promise<{ us: number; jobsPerSec: number }> {
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  const clients = await Promise.all(Array.from({ length: drains }, async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    const { rows } = await c.query<{ pid: number }>('select pg_backend_pid() as pid');
    return { c, pid: rows[0]!.pid };
  }));
  try {
    const measured = async (n: number) => {
      await admin.query('truncate jobs.job_queue, jobs.job');
      await fill(url, n);
      await admin.query('analyze');
      await admin.query('checkpoint');
      const t0 = clients.map((x) => backendTicks(x.pid));
      const t = performance.now();
      const done = await Promise.all(clients.map((x, i) => loop(x.c, `drain-${i}abcdef012345`)));
      const ms = performance.now() - t;
      const ticks = clients.reduce((s, x, i) => s + backendTicks(x.pid) - t0[i]!, 0);
      const total = done.reduce((s, d) => s + d, 0);
      if (total !== n) throw new Error(`acked ${total} of ${n}`);
      return { us: (ticks * 10_000) / n, jobsPerSec: n / (ms / 1000) };
    };
    if (Number(values.warm) > 0) await measured(Number(values.warm));
    return await measured(Number(values.size));
  } finally {
    await Promise.all(clients.map((x) => x.c.end()));
    await admin.end();
  }
}

const server = await startBenchServer();
try {
  const urls = await abDatabases(server.url, { a: values.a, b: values.b });
  const us: Record<'a' | 'b', number[]> = { a: [], b: [] };
  const rate: Record<'a' | 'b', number[]> = { a: [], b: [] };
  for (let r = 0; r < Number(values.rounds); r++) {
    for (const which of r % 2 === 0 ? (['a', 'b'] as const) : (['b', 'a'] as const)) {
      const m = await round(urls[which], Number(values.drains));
      us[which].push(m.us);
      rate[which].push(m.jobsPerSec);
      process.stderr.write(`round ${r} ${which}: ${m.us.toFixed(2)} µs/job, ${Math.round(m.jobsPerSec)} jobs/s; load ${loadavg()[0]!.toFixed(2)}\n`);
    }
  }
  if (process.env.AB_STATS) {
    // BENCH_PG_OPTIONS='-c pg_stat_statements.track=all': each side's statements, summed over its rounds.
    const c = new pg.Client({ connectionString: server.url });
    await c.connect();
    const { rows } = await c.query(`select d.datname, s.calls, round(s.total_exec_time) as ms, s.shared_blks_hit as hit,
      left(regexp_replace(s.query, '[[:space:]]+', ' ', 'g'), 90) as q from pg_stat_statements s join pg_database d on d.oid = s.dbid
      where d.datname in ('a', 'b') order by s.total_exec_time desc limit 40`);
    for (const r of rows) console.log(Object.values(r).join(' | '));
    await c.end();
  }
  const diffs = us.a.map((a, i) => us.b[i]! - a);
  console.log(`a ${values.a ?? '(as built)'}: median ${median(us.a).toFixed(2)} µs/job, ${Math.round(median(rate.a))} jobs/s`);
  console.log(`b ${values.b ?? '(as built)'}: median ${median(us.b).toFixed(2)} µs/job, ${Math.round(median(rate.b))} jobs/s`);
  console.log(`paired b - a: median ${median(diffs).toFixed(2)} µs/job, ${diffs.filter((d) => d < 0).length} of ${diffs.length} lower `
    + `(${diffs.map((d) => d.toFixed(2)).join(', ')})`);
} finally {
  await server.stop();
}
