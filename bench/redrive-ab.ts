// A/B of the server's CPU of one jobs.redrive_counts() call over a standing
// set of dead letters (a dashboard's "redrive all"): one durable cluster, two
// databases migrated by the same build, side b (and a, if given) patched by
// an SQL file after the migration (e.g. a `create or replace function
// jobs.redrive_counts` of a change). Per round and side: N jobs published
// (with --keyed, each with a dedupe key of its own, and one active job
// holding every tenth key), all failed for good, then one call redrives
// them; its backend's CPU (/proc) is read around that call alone. Sides
// alternate a/b then b/a; on a shared machine only paired differences mean
// much.
//
//   npx esbuild bench/redrive-ab.ts --bundle --platform=node --format=esm \
//     --packages=external --outfile=dist/ab/redrive-ab.mjs
//   node dist/ab/redrive-ab.mjs --b patch.sql [--a other.sql] [--rounds 6 --size 100000 --keyed --max-rows N]
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { abDatabases } from './ab-databases.js';
import { startBenchServer } from './server.js';
import { median } from './stats.js';
import { chunks } from './systems/system.js';

const { values } = parseArgs({ options: {
  a: { type: 'string' }, b: { type: 'string' }, rounds: { type: 'string', default: '6' },
  size: { type: 'string', default: '100000' }, keyed: { type: 'boolean', default: false },
  'max-rows': { type: 'string' },
} });
const size = Number(values.size);
const maxRows = values['max-rows'] ? Number(values['max-rows']) : null;

function backendTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);
}

/** size dead letters (keyed: one dedupe key each, every tenth key held by an active job). */
async function deadLetters(c: pg.Client): Promise<number> {
  await c.query('truncate jobs.job_queue, jobs.job, jobs.dependency');
  for (const [from, to] of chunks(size)) {
    const keys = values.keyed ? Array.from({ length: to - from }, (_, k) => `k${from + k}`) : null;
    const { rows } = await c.query<{ id: string }>(
      `select unnest(jobs.publish_arrays(array_fill('noop'::text, array[$1::int]), max_retries => array_fill(0, array[$1::int]),
                                         dedupe_keys => $2::text[]))::text as id`, [to - from, keys]);
    await c.query(`select jobs.fail($1::bigint[], 'boom')`, [rows.map((r) => r.id)]);
  }
  if (!values.keyed) return size;
  // Active jobs holding every tenth key: those dead letters stay.
  const { rows } = await c.query<{ n: number }>(
    `select count(jobs.publish('other', dedupe_key => 'k' || i))::int as n from generate_series(0, $1 - 1, 10) i`, [size]);
  return size - rows[0]!.n;
}

async function round(url: string): Promise<{ ms: number; wallMs: number }> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const expected = await deadLetters(c);
    await c.query('analyze');
    await c.query('checkpoint');
    const pid = (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
    const t0 = backendTicks(pid);
    const t = performance.now();
    const { rows } = await c.query<{ redriven: number }>('select redriven from jobs.redrive_counts(max_rows => $1)', [maxRows]);
    const wallMs = performance.now() - t;
    const ms = (backendTicks(pid) - t0) * 10;
    const want = maxRows === null ? expected : Math.min(maxRows, expected);
    if (rows[0]!.redriven !== want) throw new Error(`redrove ${rows[0]!.redriven} of ${want}`);
    return { ms, wallMs };
  } finally {
    await c.end();
  }
}

const server = await startBenchServer();
try {
  const urls = await abDatabases(server.url, { a: values.a, b: values.b });
  const ms: Record<'a' | 'b', number[]> = { a: [], b: [] };
  for (let r = 0; r < Number(values.rounds); r++) {
    for (const which of r % 2 === 0 ? (['a', 'b'] as const) : (['b', 'a'] as const)) {
      const m = await round(urls[which]);
      ms[which].push(m.ms);
      process.stderr.write(`round ${r} ${which}: ${m.ms} ms CPU, ${Math.round(m.wallMs)} ms; load ${loadavg()[0]!.toFixed(2)}\n`);
    }
  }
  const diffs = ms.a.map((a, i) => ms.b[i]! - a);
  console.log(`a ${values.a ?? '(as built)'}: median ${median(ms.a)} ms CPU (${ms.a.join(', ')})`);
  console.log(`b ${values.b ?? '(as built)'}: median ${median(ms.b)} ms CPU (${ms.b.join(', ')})`);
  console.log(`paired b - a: median ${median(diffs)} ms, ${diffs.filter((d) => d < 0).length} of ${diffs.length} lower (${diffs.join(', ')})`);
} finally {
  await server.stop();
}
