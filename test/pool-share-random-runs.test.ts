// Drains side by side on one pool (pg.Pool of 1 to 4 connections), over many
// random runs: transactional, plain and batch tasks mixed, handlers that ack,
// throw, run past their timeout or are cancelled, lingerMs, signals and
// hardSignal at random times, deadlines short enough that waits for a slot
// and last looks (src/last-look.ts) happen, some runs with the drains'
// connections terminated. After every run, once every handler has returned,
// the pool's share (pool-share.ts) is back to 0 (no slot or held connection
// leaks into the next run's drains), every report adds up, no drain rejected
// on a healthy database (database_unavailable from a look that waited for a
// connection), and every job ends (nothing lost).
import { afterAll, expect, it } from 'vitest';
import { PgDrainError } from '../src/errors.js';
import { createQueue, defineTask, type DrainReport, type JobContext } from '../src/index.js';
import { pgDriver } from '../src/db/pg.js';
import { poolShare } from '../src/pool-share.js';
import { testDb } from './support/db.js';
import { sleep, until } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;

/** A small seeded generator: a failing run is told by its seed. */
function random(seed: number) {
  let s = seed >>> 0;
  const next = () => ((s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0) / 2 ** 32);
  return {
    next,
    int: (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)]!,
  };
}

type Body = { kind: 'ack' | 'throw' | 'hang' | 'slow'; ms: number };
let live = 0; // handler calls that have not returned
let calm = false; // the cleanup drains: every handler acks at once
const hung: (() => void)[] = [];
async function act(body: Body, signal: AbortSignal, tx?: { query(text: string): Promise<unknown> }): Promise<string> {
  live++;
  try {
    if (calm) return 'calm';
    if (tx) await tx.query('select 1');
    if (body.kind === 'throw') { await sleep(body.ms); throw new Error('boom'); }
    // Deaf to its signal, past its timeout: a plain one until the run ends; a transactional one, holding its
    // connection, up to 1.5 s (one hung for good holds a pool of one, or a drain's own nack: README, Typed tasks).
    if (body.kind === 'hang' && tx) await sleep(body.ms * 5);
    else if (body.kind === 'hang') await new Promise<void>((resolve) => hung.push(resolve));
    else if (body.kind === 'slow') {
      await new Promise((r) => {
        const t = setTimeout(r, body.ms * 4);
        signal.addEventListener('abort', () => { clearTimeout(t); r(null); });
      });
    }
    else await sleep(body.ms);
    return 'done';
  } finally {
    live--;
  }
}
const tasks = {
  tx: defineTask('tx', async (b: Body, ctx: JobContext) => act(b, ctx.signal, ctx.db), { transactional: true }),
  plain: defineTask('plain', async (b: Body, ctx: JobContext) => act(b, ctx.signal)),
  many: defineTask('many', async (items: { body: Body }[], ctx) => {
    await act(items[0]!.body.kind === 'hang' ? { kind: 'ack', ms: 50 } : items[0]!.body, ctx.signal);
  }, { batch: { maxSize: 3 } }),
};

// The cleanup drains' own pool: a run's terminated sessions are not in it.
const cleanup = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });
const drivers: { close(): Promise<void> }[] = [];
afterAll(async () => { for (const d of drivers) await d.close(); });

it('drains on one pool leave its share at 0, report truly and lose nothing, over many random runs', async () => {
  const seed = Number(process.env.PGDRAIN_SEED ?? Date.now() % 100_000);
  const rnd = random(seed);
  for (let runNo = 0; runNo < 16; runNo++) {
    const at = `seed ${seed} run ${runNo}`;
    const max = rnd.int(1, 4);
    const url = new URL(db.url);
    url.searchParams.set('application_name', 'random_runs'); // the sessions a run may terminate: not the test's own
    const driver = pgDriver(url.href, { max });
    drivers.push(driver);
    const share = poolShare(driver);
    const queue = createQueue({ driver, tasks });
    // Plain tasks only, over the same pool: its looks read the share too.
    const plainQueue = createQueue({ driver, tasks: { plain: tasks.plain, many: tasks.many } });
    const q = `r${runNo}`;
    await sql(`select jobs.create_queue($1)`, [q]);
    const ids: string[] = [];
    for (let i = rnd.int(4, 14); i > 0; i--) {
      const task = rnd.pick(['tx', 'tx', 'plain', 'many'] as const);
      const body: Body = { kind: rnd.pick(['ack', 'ack', 'throw', 'hang', 'slow'] as const), ms: rnd.int(0, 300) };
      const [row] = await sql<{ id: string }>(`select jobs.publish($1, $2::jsonb, timeout_seconds => $3, max_retries => 0,
        queue => $4)::text as id`, [task, JSON.stringify(body), rnd.pick([1, 1, 2]), q]);
      ids.push(row!.id);
    }
    const terminate = rnd.next() < 0.2;
    const drains: Promise<DrainReport>[] = [];
    const told: string[] = [];
    const aborts: (() => void)[] = [];
    for (let d = rnd.int(2, 3); d > 0; d--) {
      const signal = new AbortController(), hard = new AbortController();
      const plainOnly = rnd.next() < 0.25;
      const options = {
        queue: q, overrunMs: 1500, pollMs: 100,
        ...(rnd.next() < 0.3 ? { concurrency: rnd.int(1, max + 1) } : {}),
        ...(rnd.next() < 0.4 ? { lingerMs: rnd.int(100, 1500) } : {}),
        signal: signal.signal, hardSignal: hard.signal,
      };
      const budget = rnd.pick([300, 700, 1200, 2000, 2500]); // settle margin 500: some with no budget
      const deadline = Date.now() + budget;
      told.push(JSON.stringify({ plainOnly, budget, concurrency: (options as { concurrency?: number }).concurrency,
        lingerMs: (options as { lingerMs?: number }).lingerMs }));
      drains.push((plainOnly ? plainQueue : queue).drain(rnd.int(1, 5), deadline, options));
      const stopIn = rnd.int(0, 2500);
      if (rnd.next() < 0.3) aborts.push(() => setTimeout(() => signal.abort(), stopIn) as unknown as void);
      if (rnd.next() < 0.15) aborts.push(() => setTimeout(() => hard.abort(), stopIn) as unknown as void);
    }
    for (const abort of aborts) abort();
    // Within the run: a later run's drains are not hit by them.
    const injected: Promise<unknown>[] = [];
    if (rnd.next() < 0.4) {
      const [id, ms] = [rnd.pick(ids), rnd.int(0, 1500)];
      injected.push(sleep(ms).then(() => sql(`select jobs.cancel($1::bigint)`, [id])));
    }
    if (terminate) {
      injected.push(sleep(rnd.int(100, 1500)).then(() => sql(`select pg_terminate_backend(pid) from pg_stat_activity
        where datname = current_database() and application_name = 'random_runs'`)));
    }
    const ended = await Promise.allSettled(drains);
    await Promise.all(injected);
    for (const e of ended) {
      if (e.status === 'fulfilled') {
        const { claimed, succeeded, failed, cancelled, retried, released, stale } = e.value;
        expect(claimed, `${at}: ${JSON.stringify(e.value)}`).toBe(succeeded + failed + cancelled + retried + released + stale);
        expect(['empty', 'deadline', 'signal'], at).toContain(e.value.stoppedBy);
      } else if (!terminate) {
        expect.fail(`${at}: a drain rejected on a healthy database: ${String(e.reason)}; pool ${max}, drains ${told.join(' ')
        }, jobs ${JSON.stringify(await sql(`select job_id, task, body, timeout, attempt, lease_until is not null as leased
          from jobs.job_queue where queue = $1`, [q]))}`);
      } else {
        expect(e.reason, at).toBeInstanceOf(PgDrainError);
      }
    }
    for (const release of hung.splice(0)) release();
    await until(async () => live === 0, `${at}: every handler to return`);
    await until(async () => share.busy === 0 && share.connected === 0,
      `${at}: the pool's share back to 0 (busy ${share.busy}, connected ${share.connected})`);
    // Nothing lost: once every lease is over, calm drains end every job.
    calm = true;
    try {
      await until(async () => {
        await cleanup.drain(20, Date.now() + 3000, { queue: q });
        return (await sql(`select count(*)::int as n from jobs.job_queue where queue = $1`, [q]))[0]!.n === 0;
      }, `${at}: the queue to empty`, 30_000);
    } finally {
      calm = false;
    }
    const done = await sql<{ n: number }>(`select count(*)::int as n from jobs.job where job_id = any($1::bigint[])`, [ids]);
    expect(done[0]!.n, at).toBe(ids.length);
    expect(share.busy + share.connected, at).toBe(0);
    await drivers.pop()!.close();
  }
}, 600_000);
