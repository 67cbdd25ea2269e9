// Whether a long drain (an always-on worker: docs/fast-pickup.md "An always-on worker")
// keeps memory per job: one `pgdrain drain --deadline 86400 --linger 86400`
// (bench/noop-tasks.mjs), jobs published in waves of 10,000 with 2 s idle
// gaps (the linger's NOTIFY wake path), then one-job publishes 60 ms apart;
// its heap after GC (bench/heap-sample.mjs) at each mark. Run `npm run
// build` first; DATABASE_URL: a migrated database nothing else drains.
//   DATABASE_URL=postgres://… node bench/long-drain-heap.mjs [MARKS=50000,150000,300000] [WAKEUPS=2000]
// Results of 2026-12-06 (PG 15, fsync off), heap MB: idle 5.8, after 2,000
// jobs 6.2, 50,000 6.4, 150,000 6.4, 300,000 6.6, then 2,000 and 4,000
// wake-ups 6.65 and 6.7. Idle with --poll 0.05 (a claim every 50 ms, ~7,900
// in 9 min): 6.3, then 6.8, 6.8, 6.9 at 3, 6 and 9 minutes. Heap snapshots
// diffed between marks put the growth in V8's compiled code (code, deopt
// data, relocation info), no per-job or per-claim object.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import pg from 'pg';

const out = resolve('dist/long-drain-heap.jsonl');
const marks = (process.env.MARKS ?? '50000,150000,300000').split(',').map(Number);
const wakeups = Number(process.env.WAKEUPS ?? 2000);
writeFileSync(out, '');
const db = new pg.Client({ connectionString: process.env.DATABASE_URL });
await db.connect();
const q = async (text, params) => (await db.query(text, params)).rows;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const drain = spawn(process.execPath, ['--expose-gc', '--import', resolve('bench/heap-sample.mjs'), resolve('dist/cli.mjs'),
  'drain', '--tasks', resolve('bench/noop-tasks.mjs'), '--deadline', '86400', '--linger', '86400', '--json'],
  { env: { ...process.env, HEAP_OUT: out }, stdio: ['ignore', 'pipe', 'inherit'] });
let report = '';
drain.stdout.on('data', (d) => (report += d));
const exited = new Promise((r) => drain.on('exit', r));

let lines = 0;
async function sample(label) {
  drain.kill('SIGUSR2');
  for (;;) {
    await sleep(100);
    const all = readFileSync(out, 'utf8').trim().split('\n').filter(Boolean);
    if (all.length > lines) return console.log(label.padEnd(28), all[lines++]);
  }
}
async function idle() {
  while ((await q('select count(*)::int as n from jobs.job_queue'))[0].n > 0) await sleep(200);
}
const publish = (n) => q(`select jobs.publish_bulk(array(select row('noop', null, null, null, null, 0)::jobs.bulk_job
                                                         from generate_series(1, $1)))`, [n]);

await sleep(1500);
await sample('idle, lingering');
let total = 0;
for (const mark of [2000, ...marks]) {
  while (total < mark) {
    const n = Math.min(10_000, mark - total);
    await publish(n);
    await idle();
    total += n;
    await sleep(2000);
  }
  await q('truncate jobs.job');
  await sample(`after ${total} jobs`);
}
for (const round of [1, 2]) {
  for (let i = 0; i < wakeups; i++) {
    await publish(1);
    await sleep(60);
  }
  await idle();
  await sleep(1500);
  await sample(`after ${round * wakeups} wake-ups`);
}
drain.kill('SIGTERM');
await exited;
console.log(report.trim().split('\n').at(-1));
await db.end();
