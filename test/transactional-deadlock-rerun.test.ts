// A transactional task's transaction rolled back whole as a deadlock victim
// (run-transactional.ts) runs its handler again at once, in a new
// transaction, its attempt not spent; after 3 such reruns it is nacked.
// A real deadlock, forced with no timing: the handler publishes with serial
// key hi (holding its lock), then waits; a bulk publish of keys lo and hi
// takes lo and waits for hi (seen in pg_locks); then the handler returns and
// its ack takes its own job's key, lo: a cycle. The drain's connections
// check for deadlocks after 100 ms, the bulk's session after a minute, so the
// handler's transaction is the victim however loaded the machine.
import { beforeEach, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';
import { blocked, lockSessions, outcome } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);

/** Two keys in their locks' order (jobs.lock_serial_keys: hashtext). */
async function keysInLockOrder(): Promise<[string, string]> {
  const rows = await sql<{ k: string }>(`select k from unnest(array['sa', 'sb']) k order by hashtext(k)`);
  return [rows[0]!.k, rows[1]!.k];
}

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

/**
 * A queue on the drain's own connection string (a short deadlock_timeout) with
 * transactional task h: each run publishes `next` (serial key hi, body its run),
 * then waits for its gate. Its job has serial key lo.
 */
async function deadlockingTask(lo: string, hi: string, maxRetries: number | undefined, gates: Promise<void>[]) {
  const drainUrl = new URL(db.url);
  drainUrl.searchParams.set('options', '-c deadlock_timeout=100ms');
  const q = createQueue({ connectionString: drainUrl.href });
  const runs = { ran: 0, published: 0 };
  q.defineTask('h', async (_body, ctx) => {
    const run = ++runs.ran;
    expect(ctx.job.attempt).toBe(1); // the same attempt each run
    await ctx.publish('next', { run }, { serialKey: hi });
    runs.published = run;
    await gates[run - 1];
    return run;
  }, { transactional: true });
  q.defineTask('next', async () => null);
  q.defineTask('p', async () => null);
  await q.publish('h', {}, { serialKey: lo, maxRetries, timeoutSeconds: 30 });
  return { q, runs };
}

/** Makes run `run` of h a deadlock victim: a bulk publish of lo and hi waits for hi, then h's gate opens. */
async function makeVictim(runs: { published: number }, run: number, open: () => void, lo: string, hi: string) {
  await until(async () => runs.published === run, `run ${run} of h to publish with key hi`);
  const other = await session();
  await other.query(`set deadlock_timeout = '1min'`);
  await other.query('begin');
  const bulk = outcome(other.query(`select jobs.publish_arrays(array['p', 'p'], serial_keys => array[$1, $2]) as ids`, [lo, hi]));
  await blocked(sql, other); // it holds lo and waits for hi
  open(); // h acks: it wants lo
  const answer = await bulk;
  expect(typeof answer).toBe('object'); // not the victim: its publish went through once h's transaction was rolled back
  return other;
}

const gated = (n: number) => {
  const opens: (() => void)[] = [];
  const gates = Array.from({ length: n }, () => new Promise<void>((r) => opens.push(r)));
  return { gates, openAll: () => opens.forEach((o) => o()), opens };
};

for (const maxRetries of [undefined, 0]) {
  it(`a deadlock victim runs again and succeeds, its attempt not spent (maxRetries ${maxRetries ?? 'default'})`, async () => {
    const [lo, hi] = await keysInLockOrder();
    const { gates, opens, openAll } = gated(2);
    opens[1]!(); // the rerun does not wait
    const { q, runs } = await deadlockingTask(lo, hi, maxRetries, gates);
    try {
      const drained = q.drain(10, Date.now() + 60_000);
      const other = await makeVictim(runs, 1, opens[0]!, lo, hi);
      await other.query('commit'); // its jobs stay; the rerun's publish had waited for its key hi
      // Before: h was nacked with "deadlock detected" (an attempt spent; with maxRetries 0 a failure).
      expect(await drained).toMatchObject({ failed: 0, retried: 0 });
      expect(runs.ran).toBe(2);
      expect(await sql(`select status, attempts, error, result from jobs.job where task = 'h'`)).toEqual([
        { status: 'success', attempts: 1, error: null, result: 2 }]);
      // The first run's publish was rolled back with its transaction: only the rerun's stayed.
      expect(await sql(`select body from jobs.job where task = 'next' union all select body from jobs.job_queue where task = 'next'`))
        .toEqual([{ body: { run: 2 } }]);
    } finally {
      openAll();
      await q.close();
    }
  });
}

it('a handler that is a deadlock victim 4 times is nacked with the error (maxRetries 0: a failure)', async () => {
  const [lo, hi] = await keysInLockOrder();
  const { gates, opens, openAll } = gated(4);
  const { q, runs } = await deadlockingTask(lo, hi, 0, gates);
  try {
    const drained = q.drain(10, Date.now() + 60_000);
    for (let run = 1; run <= 4; run++) {
      const other = await makeVictim(runs, run, opens[run - 1]!, lo, hi);
      await other.query('rollback');
    }
    expect(await drained).toMatchObject({ succeeded: 0, failed: 1 });
    expect(runs.ran).toBe(4); // the first run and 3 reruns
    const [h] = await sql<{ status: string; attempts: number; error: string }>(
      `select status, attempts, error from jobs.job where task = 'h'`);
    expect(h).toMatchObject({ status: 'failure', attempts: 1 });
    expect(h!.error).toMatch(/deadlock detected/);
    expect(await sql(`select task from jobs.job_queue union all select task from jobs.job where task <> 'h'`)).toEqual([]);
  } finally {
    openAll();
    await q.close();
  }
});

it('a transactional handler that throws null or a plain object is nacked with it once (the rerun check reads any throw)', async () => {
  const q = createQueue({ driver: { ...db.driver, close: async () => {} } });
  let ran = 0;
  q.defineTask('null', async () => { ran++; throw null; }, { transactional: true });
  q.defineTask('coded', async () => { ran++; throw { code: '23505' }; }, { transactional: true });
  await q.publish('null', {}, { maxRetries: 0, timeoutSeconds: 30 });
  await q.publish('coded', {}, { maxRetries: 0, timeoutSeconds: 30 });
  expect(await q.drain(10, Date.now() + 60_000)).toMatchObject({ failed: 2 });
  expect(ran).toBe(2);
  // Reading .code of null threw a TypeError, which became the job's error.
  expect(await sql(`select task, error from jobs.job order by job_id`)).toEqual([
    { task: 'null', error: 'non-Error thrown: null' }, { task: 'coded', error: 'non-Error thrown: {"code":"23505"}' }]);
});
