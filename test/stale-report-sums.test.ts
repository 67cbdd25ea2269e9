// A drain report's counts add up over many jobs with racing outcomes:
// transactional and plain handlers that ack, throw or run past their short
// timeout, some transactional acks waiting for their job's row (another
// session holds it) as the timeout fires, and a signal mid-way whose grace
// ends with some still running: it comes once the locker has held up a
// settle (a transactional ack, or its timeout's nack) and a job that runs
// until its signal has started, not at a fixed time (a loaded machine's
// drain could be between jobs then, or done, and the case unreached). Each claimed job counts once (claimed =
// succeeded + failed + cancelled + retried + released + stale), the counts
// are what the database holds, and failures[] lists only failures that happened.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, defineTask, type JobStartEvent } from '../src/index.js';
import { testDb } from './support/db.js';
import { sleep } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
beforeEach(async () => void (await sql('truncate jobs.job_queue, jobs.job')));

type Body = { kind: 'ack' | 'throw' | 'late' | 'edge' | 'hold'; ms: number };

const run = async (body: Body, signal: AbortSignal) => {
  if (body.kind === 'throw') { await sleep(body.ms); throw new Error('boom'); }
  // hold: runs until its signal fires, at the grace's end after the drain's signal (its timeout is far off)
  if (body.kind === 'hold') await new Promise((r) => signal.addEventListener('abort', r));
  else if (body.kind === 'late') await new Promise((r) => { const t = setTimeout(r, 3000); signal.addEventListener('abort', () => { clearTimeout(t); r(null); }); });
  else await sleep(body.ms);
  return 'done';
};

describe('a drain report over racing outcomes', () => {
  it('adds up, matches the database and lists only real failures', async () => {
    const plain = defineTask('plain', async (b: Body, ctx) => run(b, ctx.signal));
    const tx = defineTask('tx', async (b: Body, ctx) => run(b, ctx.signal), { transactional: true });
    const q = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: { plain, tx } });
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let i = 0; i < 200; i++) {
      const r = rand();
      const kind: Body['kind'] = r < 0.45 ? 'ack' : r < 0.65 ? 'throw' : r < 0.8 ? 'late' : 'edge';
      // edge: returns about when its 1 s timeout fires
      const ms = kind === 'edge' ? 950 + Math.floor(rand() * 100) : Math.floor(rand() * 50);
      await q.publish(i % 2 ? 'tx' : 'plain', { kind, ms }, { maxRetries: 0, timeoutSeconds: 1 });
      if (i === 99) await q.publish('plain', { kind: 'hold', ms: 0 }, { maxRetries: 0, timeoutSeconds: 20 });
    }
    // Holds some transactional jobs' rows now and then: their acks wait as their timeout fires.
    const locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    const lockerPid = (await locker.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
    // The signal: once the hold job runs (the grace ends with it running) and the locker has held up a settle.
    const stop = new AbortController();
    let holdStarted = false;
    let rowWaited = false;
    const maybeStop = () => holdStarted && rowWaited && stop.abort();
    const onJobStart = ({ job }: JobStartEvent) => {
      if ((job.body as Body).kind === 'hold') { holdStarted = true; setImmediate(maybeStop); } // after the rest of its claim started
    };
    const drained = q.drain(20, Date.now() + 60_000, { signal: stop.signal, graceMs: 300, concurrency: 20, onJobStart });
    let done = false;
    void drained.finally(() => (done = true));
    const holding = (async () => {
      for (let n = 0; !done && n < 40;) {
        await locker.query('begin');
        const held = await locker.query(`select 1 from jobs.job_queue where lease_until is not null and task = 'tx' for update skip locked`);
        const until = Date.now() + 900 + (n % 5) * 50;
        if (held.rowCount) n++; // none running (a claim out): look again soon
        while (held.rowCount && Date.now() < until) {
          if (!rowWaited && (await sql('select 1 from pg_stat_activity where $1 = any(pg_blocking_pids(pid))', [lockerPid])).length) {
            rowWaited = true;
            maybeStop();
          }
          await sleep(25);
        }
        await locker.query('commit');
        await sleep(20);
      }
    })();
    const report = await drained;
    await holding;
    await locker.end();
    expect({ rowWaited, holdStarted, stoppedBy: report.stoppedBy }).toEqual({ rowWaited: true, holdStarted: true, stoppedBy: 'signal' });
    expect(report.interrupted.nacked, 'the grace ended with the hold job running').toBeGreaterThanOrEqual(1);
    const { claimed, succeeded, failed, cancelled, retried, released, stale } = report;
    expect(claimed).toBe(succeeded + failed + cancelled + retried + released + stale);
    const counts = Object.fromEntries((await sql<{ status: string; n: string }>(
      'select status, count(*) as n from jobs.job group by status')).map((r) => [r.status, Number(r.n)]));
    expect({ failed, cancelled }).toEqual({ failed: counts.failure ?? 0, cancelled: 0 });
    // A transactional ack whose COMMIT answer came after the drain returned: its job counted stale (README).
    expect(succeeded).toBeLessThanOrEqual(counts.success ?? 0);
    expect(counts.success ?? 0).toBeLessThanOrEqual(succeeded + stale);
    // Every failure listed happened: its job ended failed with that attempt and error.
    const ended = new Map((await sql<{ job_id: string; status: string; error: string; attempts: number }>(
      'select job_id::text, status, error, attempts from jobs.job')).map((r) => [r.job_id, r]));
    for (const f of report.failures) {
      expect({ id: f.id, ...ended.get(f.id) }).toMatchObject({ id: f.id, status: 'failure', attempts: f.attempt });
    }
    expect(report.failures.length + report.failuresOmitted).toBe(failed);
  }, 90_000);
});
