// Paired A/B of one backend's server CPU per job, the two sides' claims
// interleaved (bench/RESULTS.md, "The settle checks' gap found" and
// 2026-12-06 07:30): one durable cluster, databases a and b migrated by this
// build and patched per side (--a / --b SQL files, as bench/claim-ab.ts), one
// connection each, kept for all rounds (as a drain's pool). Per round both
// queues get the same backlog; then the two connections claim in turn (a,b
// then b,a per claim), so both see the same moment of a shared machine. Each
// backend's CPU and minor page faults (/proc/<pid>/stat) are read around the
// measured loop. --mode json: drain()'s exact jobs.claim_json (holder, 500 a
// claim, acking the previous claim's jobs); --mode consume: what a psql or
// PL/pgSQL user does, jobs.consume(500) then jobs.ack(ids) of them, two
// statements. --init-a / --init-b: a statement each side's session runs once
// first (e.g. 'select jobs.keep_heap()'). Run an A/A first: on 2026-12-06
// b read a few tenths of a µs per job high in its first rounds (its faults
// too), so 8 pairs of it do not show a change under ~0.5 µs per job.
//
//   npm run build && npx esbuild bench/claim-pairs.ts --bundle --platform=node --format=esm \
//     --packages=external --outfile=dist/ab/claim-pairs.mjs
//   node dist/ab/claim-pairs.mjs --b patch.sql [--mode json --rounds 8 --size 30000 --warm 5000]
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
  a: { type: 'string' }, b: { type: 'string' }, rounds: { type: 'string', default: '8' },
  size: { type: 'string', default: '30000' }, warm: { type: 'string', default: '5000' },
  mode: { type: 'string', default: 'json' }, 'init-a': { type: 'string' }, 'init-b': { type: 'string' },
} });

const CLAIM = `select jobs.claim_json($1, $2, $3, null, $4, $5::jsonb, $6, $7::bigint[], $8::integer[], $9::text[],
                                  $10::jsonb[], $11::text[], $12::timestamptz[], $13::float8[], $14::jsonb[], $15::bigint) as r`;

/** A backend's CPU ticks (utime + stime) and minor faults. */
function stat(pid: number): { ticks: number; faults: number } {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(') ') + 2).split(' ');
  return { ticks: Number(f[11]) + Number(f[12]), faults: Number(f[7]) };
}

interface Side { c: pg.Client; pid: number; ids: string[]; attempts: number[]; acked: number; done: boolean }

/** One claim (and the ack of the one before) on a side; sets done when it claimed nothing. */
async function step(s: Side): Promise<void> {
  if (values.mode === 'consume') {
    const { rows } = await s.c.query<{ ids: string[] | null }>('select array_agg(job_id) as ids from jobs.consume(500)');
    const ids = rows[0]!.ids;
    if (ids === null) { s.done = true; return; }
    const { rows: a } = await s.c.query<{ n: number }>('select jobs.ack($1::bigint[]) as n', [ids]);
    s.acked += a[0]!.n;
    return;
  }
  const outcomes = s.ids.length === 0 ? [null, null, null, null, null, null, null]
    : [`{${s.ids.join(',')}}`, `{${s.attempts.join(',')}}`, `{${s.ids.map(() => 'ack').join(',')}}`, null, null, null,
       `{${s.ids.map(() => 0.01).join(',')}}`];
  const { rows } = await s.c.query<{ r: { count: number; jobs: { id: string; attempt: number[] } | null; settled: { succeeded: number } | null } }>(
    CLAIM, [500, null, 60, null, null, 'drain-0abcdef012345', ...outcomes, null, '1234567']);
  const r = rows[0]!.r;
  s.acked += r.settled?.succeeded ?? 0;
  if (r.count === 0) { s.done = true; s.ids = []; s.attempts = []; return; }
  s.ids = r.jobs!.id.split(',');
  s.attempts = r.jobs!.attempt;
}

async function fill(url: string, n: number): Promise<void> {
  const q = createQueue({ connectionString: url, tasks: {} });
  for (const [from, to] of chunks(n)) {
    await q.publishBulk(Array.from({ length: to - from }, (_, k) => ({ task: 'noop', body: { i: from + k } })));
  }
  await q.close();
}

const server = await startBenchServer();
try {
  const urls = await abDatabases(server.url, { a: values.a, b: values.b });
  const sides = {} as Record<'a' | 'b', Side>;
  for (const which of ['a', 'b'] as const) {
    const c = new pg.Client({ connectionString: urls[which] });
    await c.connect();
    const { rows } = await c.query<{ pid: number }>('select pg_backend_pid() as pid');
    const init = values[`init-${which}`];
    if (init) await c.query(init);
    sides[which] = { c, pid: rows[0]!.pid, ids: [], attempts: [], acked: 0, done: false };
  }
  const measured = async (n: number) => {
    for (const which of ['a', 'b'] as const) {
      const admin = new pg.Client({ connectionString: urls[which] });
      await admin.connect();
      await admin.query('truncate jobs.job_queue, jobs.job');
      await fill(urls[which], n);
      await admin.query('analyze');
      await admin.query('checkpoint');
      await admin.end();
      Object.assign(sides[which], { acked: 0, done: false });
    }
    const t0 = { a: stat(sides.a.pid), b: stat(sides.b.pid) };
    for (let k = 0; !(sides.a.done && sides.b.done); k++) {
      for (const which of k % 2 === 0 ? (['a', 'b'] as const) : (['b', 'a'] as const)) {
        if (!sides[which].done) await step(sides[which]);
      }
    }
    const out = {} as Record<'a' | 'b', { us: number; faults: number }>;
    for (const which of ['a', 'b'] as const) {
      const t1 = stat(sides[which].pid);
      if (sides[which].acked !== n) throw new Error(`${which} acked ${sides[which].acked} of ${n}`);
      out[which] = { us: ((t1.ticks - t0[which].ticks) * 10_000) / n, faults: (t1.faults - t0[which].faults) / n };
    }
    return out;
  };
  const us: Record<'a' | 'b', number[]> = { a: [], b: [] };
  const faults: Record<'a' | 'b', number[]> = { a: [], b: [] };
  for (let r = 0; r < Number(values.rounds); r++) {
    if (Number(values.warm) > 0) await measured(Number(values.warm));
    const m = await measured(Number(values.size));
    for (const which of ['a', 'b'] as const) { us[which].push(m[which].us); faults[which].push(m[which].faults); }
    process.stderr.write(`round ${r}: a ${m.a.us.toFixed(2)} µs/job ${m.a.faults.toFixed(3)} faults/job, `
      + `b ${m.b.us.toFixed(2)} µs/job ${m.b.faults.toFixed(3)} faults/job; load ${loadavg()[0]!.toFixed(2)}\n`);
  }
  for (const s of Object.values(sides)) await s.c.end();
  const diffs = us.a.map((a, i) => us.b[i]! - a);
  console.log(`mode ${values.mode}; a ${values.a ?? '(as built)'} ${values['init-a'] ?? ''}: median ${median(us.a).toFixed(2)} µs/job, `
    + `${median(faults.a).toFixed(3)} faults/job`);
  console.log(`b ${values.b ?? '(as built)'} ${values['init-b'] ?? ''}: median ${median(us.b).toFixed(2)} µs/job, ${median(faults.b).toFixed(3)} faults/job`);
  console.log(`paired b - a: median ${median(diffs).toFixed(2)} µs/job, ${diffs.filter((d) => d < 0).length} of ${diffs.length} lower `
    + `(${diffs.map((d) => d.toFixed(2)).join(', ')})`);
} finally {
  await server.stop();
}
