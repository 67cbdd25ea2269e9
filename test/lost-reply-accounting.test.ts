// A settle or a COMMIT that lands but whose reply is lost (the connection
// drops as the server answers): the drain sends the outcome again, or asks.
// Its report counts the job as what it did (succeeded, retried, …), not as
// stale nor as a failure, and the job ends once; an outcome that matches
// nothing of this worker (another drain's delivery, an expired lease) stays stale.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { createQueue, defineTask, FailJob, SnoozeJob, type DrainReport, type Handler, type JobContext,
  type JobEndEvent } from '../src/index.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';
import { replyDropProxy, type ReplyDropProxy } from './support/reply-drop-proxy.js';

const db = await testDb();
const sql = db.sql;
let proxy: ReplyDropProxy;

beforeAll(async () => {
  proxy = await replyDropProxy(db.url);
  await sql('create table lost_reply_effects (job_id bigint not null)');
});
afterAll(() => proxy.close());
beforeEach(() => sql('truncate jobs.job_queue, jobs.job, lost_reply_effects'));

/** A promise and the function that resolves it. */
function gate(): [Promise<void>, () => void] {
  let open!: () => void;
  return [new Promise<void>((resolve) => (open = resolve)), () => open()];
}

/**
 * Drains one job of `handler` through the proxy; once the handler runs, the
 * drain is stopped (so its outcome goes in the final settle) and the reply to
 * that settle is lost, after it committed. The drain tries again a second later.
 */
async function drainLosingTheSettleReply(handler: Handler): Promise<DrainReport> {
  const [running, started] = gate();
  const [finish, letFinish] = gate();
  const queue = createQueue({
    driver: pgDriver(proxy.url),
    tasks: { work: async (body: unknown, ctx: JobContext) => { started(); await finish; return handler(body, ctx); } },
  });
  await queue.publish('work', {}, { maxRetries: 3 });
  const stop = new AbortController();
  try {
    const drained = queue.drain(5, Date.now() + 120_000, { signal: stop.signal, workerId: 'lost-reply' });
    await running;
    stop.abort();
    const dropped = proxy.dropReplyTo('jobs.settle_arrays(');
    letFinish();
    const report = await drained;
    await dropped; // the reply was lost indeed
    return report;
  } finally {
    await queue.close();
  }
}

describe('a settle whose reply was lost after it committed', () => {
  it('is sent again and counts the ack as succeeded, not stale; the job ends once', async () => {
    const report = await drainLosingTheSettleReply(async () => 'done');
    expect(report).toMatchObject({ claimed: 1, succeeded: 1, failed: 0, retried: 0, released: 0, stale: 0, failures: [] });
    expect(await sql(`select status, attempts, worker_id, result from jobs.job`))
      .toEqual([{ status: 'success', attempts: 1, worker_id: 'lost-reply', result: 'done' }]);
    expect(await sql('select count(*)::int as n from jobs.job_queue')).toEqual([{ n: 0 }]);
  });

  it.each([
    ['a nack whose retry was applied as retried', async () => { throw new Error('boom'); }, { retried: 1 },
     `select attempt, lease_until, worker_id, split_part(last_error, E'\\n', 1) as state from jobs.job_queue
      union all select attempts, null, worker_id, status from jobs.job`,
     [{ attempt: 1, lease_until: null, worker_id: 'lost-reply', state: 'Error: boom' }]],
    ['a FailJob as failed', async () => { throw new FailJob('bad input'); }, { failed: 1 },
     `select attempts as attempt, worker_id, status as state from jobs.job
      union all select attempt, worker_id, 'pending' from jobs.job_queue`,
     [{ attempt: 1, worker_id: 'lost-reply', state: 'failure' }]],
    ['a SnoozeJob as released', async () => { throw new SnoozeJob({ delayMs: 600_000 }); }, { released: 1 },
     `select attempt, lease_until, worker_id, 'pending' as state from jobs.job_queue
      union all select attempts, null, worker_id, status from jobs.job`,
     [{ attempt: 0, lease_until: null, worker_id: 'lost-reply', state: 'pending' }]],
  ] as const)('counts %s, not stale', async (_what, handler, counted, query, state) => {
    const report = await drainLosingTheSettleReply(handler);
    expect(report).toMatchObject({ claimed: 1, succeeded: 0, failed: 0, retried: 0, released: 0, cancelled: 0, ...counted, stale: 0 });
    expect(await sql(query)).toEqual(state);
  });
});

describe('a settle sent again carrying two deliveries of one job', () => {
  it("keeps the next delivery's failure listed: only the stale 'lease lost' nack of the earlier one is named stale", async () => {
    let secondRan!: () => void;
    const ranAgain = new Promise<void>((resolve) => (secondRan = resolve));
    const queue = createQueue({ driver: pgDriver(proxy.url) });
    queue.defineTask('twice', async (_body: unknown, ctx: JobContext) => {
      if (ctx.job.attempt > 1) {
        secondRan();
        throw new Error('second boom');
      }
      // Its lease passes while it runs here and an expiry gives it back: the drain's next claim takes it again.
      await sql(`update jobs.job_queue set lease_until = now() where job_id = $1`, [ctx.job.id]);
      expect(await sql(`select jobs.expire() as n`)).toEqual([{ n: 1 }]);
      await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
    });
    const id = await queue.publish('twice', null, { timeoutSeconds: 60, maxRetries: 5 });
    const stop = new AbortController();
    let report: DrainReport;
    try {
      // flushIntervalMs long: both nacks (attempt 1 stale, attempt 2 real) wait for the last settle, whose reply is lost.
      const drained = queue.drain(5, Date.now() + 120_000,
        { lingerMs: 120_000, pollMs: 100, signal: stop.signal, flushIntervalMs: 60_000, workerId: 'lost-twice' });
      await ranAgain;
      const dropped = proxy.dropReplyTo('jobs.settle_arrays(');
      stop.abort();
      report = await drained;
      await dropped;
    } finally {
      await queue.close();
    }
    expect(report).toMatchObject({ claimed: 2, retried: 1, stale: 1, succeeded: 0, failed: 0, failuresOmitted: 0 });
    expect(report.failures.map((f) => [f.attempt, f.error.split('\n')[0], f.willRetry])).toEqual([[2, 'Error: second boom', true]]);
    expect(await sql('select attempt, lease_until from jobs.job_queue where job_id = $1', [id])).toEqual([{ attempt: 2, lease_until: null }]);
  });
});

describe("a transactional handler's COMMIT whose reply was lost", () => {
  it('is counted as succeeded with no failure listed and no nack, its effect and its end once', async () => {
    const ends: JobEndEvent[] = [];
    const write = defineTask('tx.write', async (_body: unknown, ctx) => {
      await ctx.db.query('insert into lost_reply_effects (job_id) values ($1)', [ctx.job.id]);
      return 'written';
    }, { transactional: true });
    const queue = createQueue({ driver: pgDriver(proxy.url), tasks: { tx: { write } } });
    await queue.publish('tx.write', {}, { maxRetries: 3 });
    // The ack carries the worker id: one with 'commit' in it would match here first.
    const dropped = proxy.dropReplyTo('commit', 'insert into lost_reply_effects');
    let report: DrainReport;
    try {
      report = await queue.drain(5, Date.now() + 120_000, { workerId: 'tx-drain', onJobEnd: (e) => void ends.push(e) });
      await dropped;
    } finally {
      await queue.close();
    }
    expect(report).toMatchObject({ claimed: 1, succeeded: 1, failed: 0, retried: 0, stale: 0, failures: [] });
    expect(ends.map((e) => [e.outcome, e.willRetry])).toEqual([['ack', false]]);
    expect(await sql('select count(*)::int as n from lost_reply_effects')).toEqual([{ n: 1 }]);
    expect(await sql(`select status, attempts, result from jobs.job`)).toEqual([{ status: 'success', attempts: 1, result: 'written' }]);
    expect(await sql('select count(*)::int as n from jobs.job_queue')).toEqual([{ n: 0 }]);
  });
});

describe('jobs.settle_arrays sent again by a worker', () => {
  const at = (t0: Date, s: number) => new Date(t0.getTime() + s * 1000);
  const publish = async (task: string, timeout = 60, maxRetries = 3) =>
    (await sql<{ id: string }>('select jobs.publish($1, null, null, $2, 0, $3)::text as id', [task, timeout, maxRetries]))[0]!.id;
  const claim = async (task: string, worker: string, now: Date) =>
    (await sql<{ attempt: number }>('select attempt from jobs.claim(1, $1, null, $2, null, null, $3)', [task, now, worker]))[0]!.attempt;
  type O = { id: string; attempt: number; outcome: string; error?: string };
  const settle = async (worker: string | null, now: Date, ...os: O[]) => (await sql<{ r: Record<string, number | string> }>(
    'select jobs.settle_arrays($1::bigint[], $2::integer[], $3::text[], null, $4::text[], null, null, now => $5, worker_id => $6) as r',
    [os.map((o) => o.id), os.map((o) => o.attempt), os.map((o) => o.outcome), os.map((o) => o.error ?? null), now, worker]))[0]!.r;

  it('counts what its earlier call applied as what it did, and what matches nothing of its own as stale', async () => {
    const { t0 } = (await sql<{ t0: Date }>('select now() + interval \'1 second\' as t0'))[0]!;
    const applied: O[] = [];
    // Applied by worker A's first call, whose reply (say) was lost.
    for (const [task, outcome] of [['a.ack', 'ack'], ['a.nack', 'nack'], ['a.fail', 'fail'], ['a.release', 'release'],
                                   ['a.cancel', 'nack']] as const) {
      const id = await publish(task);
      const o = { id, attempt: await claim(task, 'A', t0), outcome, error: outcome === 'nack' || outcome === 'fail' ? 'boom' : undefined };
      if (task === 'a.cancel') await sql('select jobs.cancel($1, null, $2)', [id, t0]);
      applied.push(o);
    }
    const cancelledIds = `${applied[4]!.id}:1`; // the deliveries it ended cancelled: a drain's report says willRetry false for them
    expect(await settle('A', t0, ...applied))
      .toEqual({ succeeded: 1, failed: 1, cancelled: 1, retried: 1, released: 1, stale: 0, cancelled_ids: cancelledIds });

    // Outcomes of A that match nothing of A's: stale.
    const other = await publish('s.other'); // B's delivery of the same attempt number, ended by B
    expect(await claim('s.other', 'B', t0)).toBe(1);
    expect(await settle('B', t0, { id: other, attempt: 1, outcome: 'ack' })).toMatchObject({ succeeded: 1 });
    const reclaimed = await publish('s.reclaimed', 10); // A's lease expired, B's next delivery acked
    expect(await claim('s.reclaimed', 'A', t0)).toBe(1);
    expect(await claim('s.reclaimed', 'B', at(t0, 30))).toBe(2);
    expect(await settle('B', at(t0, 30), { id: reclaimed, attempt: 2, outcome: 'ack' })).toMatchObject({ succeeded: 1 });
    const expired = await publish('s.expired', 10, 0); // A's lease expired: it ended as a failure, timed out
    const retriedByExpiry = await publish('s.expired-retry', 10, 3); // A's lease expired: back to pending, timed out
    expect(await claim('s.expired', 'A', t0)).toBe(1);
    expect(await claim('s.expired-retry', 'A', t0)).toBe(1);
    expect(await sql('select jobs.expire(100, $1) as n', [at(t0, 30)])).toEqual([{ n: 2 }]);

    const stale: O[] = [{ id: other, attempt: 1, outcome: 'ack' }, { id: reclaimed, attempt: 1, outcome: 'ack' },
                        { id: expired, attempt: 1, outcome: 'nack', error: 'boom' },
                        { id: retriedByExpiry, attempt: 1, outcome: 'nack', error: 'boom' }];
    // The deliveries it found stale (stale_ids, id:attempt): a drain's report lists none of them as failures.
    const answer = await settle('A', at(t0, 31), ...applied, ...stale);
    expect({ ...answer, stale_ids: String(answer.stale_ids).split(',').sort() })
      .toEqual({ succeeded: 1, failed: 1, cancelled: 1, retried: 1, released: 1, stale: 4, cancelled_ids: cancelledIds,
                 stale_ids: stale.map((o) => `${o.id}:${o.attempt}`).sort() });
    // Nothing was applied twice.
    expect(await sql(`select task, status, attempts, worker_id from jobs.job order by task`)).toEqual([
      { task: 'a.ack', status: 'success', attempts: 1, worker_id: 'A' },
      { task: 'a.cancel', status: 'cancelled', attempts: 1, worker_id: 'A' },
      { task: 'a.fail', status: 'failure', attempts: 1, worker_id: 'A' },
      { task: 's.expired', status: 'failure', attempts: 1, worker_id: 'A' },
      { task: 's.other', status: 'success', attempts: 1, worker_id: 'B' },
      { task: 's.reclaimed', status: 'success', attempts: 2, worker_id: 'B' },
    ]);
    expect(await sql(`select task, attempt, lease_until from jobs.job_queue order by task`)).toEqual([
      { task: 'a.nack', attempt: 1, lease_until: null },
      { task: 'a.release', attempt: 0, lease_until: null },
      { task: 's.expired-retry', attempt: 1, lease_until: null },
    ]);
    // Without a worker id (SQL callers, a transactional ack) an end of the same attempt may be another delivery's: stale.
    expect(await settle(null, at(t0, 31), applied[0]!)).toMatchObject({ succeeded: 0, stale: 1, stale_ids: `${applied[0]!.id}:1` });
  });

  it.each([['A'], [null]])("names the stale delivery of a job whose next delivery the same call settled (worker %s)", async (worker) => {
    const { t0 } = (await sql<{ t0: Date }>('select now() + interval \'1 second\' as t0'))[0]!;
    // Attempt 1's lease passed and an expiry gave it back; A's next claim took attempt 2. One call carries
    // attempt 1's late nack (stale) and attempt 2's: a retry, an end, a snooze giving attempt 2 back.
    const outcomes = [['two.retry', 'nack', { retried: 1 }], ['two.end', 'fail', { failed: 1 }],
                      ['two.snooze', 'release', { released: 1 }]] as const;
    for (const [task, outcome, counted] of outcomes) {
      const id = await publish(task, 10, 5);
      expect(await claim(task, 'A', t0)).toBe(1);
      expect(await sql('select jobs.expire(100, $1) as n', [at(t0, 30)])).toEqual([{ n: 1 }]);
      expect(await claim(task, 'A', at(t0, 31))).toBe(2);
      expect(await settle(worker, at(t0, 32), { id, attempt: 1, outcome: 'nack', error: 'lease lost' },
                          { id, attempt: 2, outcome, error: outcome === 'release' ? undefined : 'boom' }))
        .toEqual({ succeeded: 0, failed: 0, cancelled: 0, retried: 0, released: 0, ...counted, stale: 1, stale_ids: `${id}:1` });
    }
  });
});
