// A heartbeat on a timer (pg-boss's heartbeatSeconds): defineTask(…, {
// heartbeatSeconds }) makes the drain extend a running job's lease every half
// of it (src/run-handler.ts JobRun startHeartbeat), through the path
// ctx.extendLease takes. Over a real PostgreSQL. No timing assertions: the
// handlers wait on a promise the test resolves once it has seen, in
// jobs.job_queue, what it waits for.
import pg from 'pg';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { Driver } from '../src/db/driver.js';
import { createQueue, defineTask, ValidationError, type JobContext, type TaskMap } from '../src/index.js';
import { beatDelay } from '../src/timeouts.js';
import { countingDriver } from './support/counting-driver.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const deadline = () => Date.now() + 120_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const until = (check: () => Promise<void> | void) => vi.waitFor(check, { timeout: 30_000, interval: 20 });
const queueWith = (tasks: TaskMap, driver: Driver = { ...db.driver, close: async () => {} }) => createQueue({ driver, tasks });

/** A promise the test resolves: what the handlers wait on. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

/** Waits on `opened` and answers whether its signal had fired: the same handler with and without the option. */
const waiting = (opened: Promise<void>) => async (_body: unknown, ctx: JobContext) => {
  await opened;
  return { aborted: ctx.signal.aborted };
};

/** The job's lease as jobs.job_queue holds it, and the end its claim gave it (started_at + timeout). */
async function leaseOf(id: string): Promise<{ lease: Date | null; first: Date | null } | undefined> {
  const [row] = await sql<{ lease: Date | null; first: Date | null }>(
    `select lease_until as lease, started_at + make_interval(secs => timeout::float8) as first
       from jobs.job_queue where job_id = $1`, [id]);
  return row;
}

/** Polls the job's lease until it has moved later past its first end `times` times; answers the leases seen. */
async function extendedTimes(id: string, times: number): Promise<Date[]> {
  const seen: Date[] = [];
  await until(async () => {
    const row = await leaseOf(id);
    expect(row, 'the job still in job_queue (not timed out)').toBeDefined();
    const { lease, first } = row!;
    if (lease && first && lease > first && (seen.length === 0 || lease > seen.at(-1)!)) seen.push(lease);
    expect(seen.length).toBeGreaterThanOrEqual(times);
  });
  return seen;
}

/**
 * A driver that records the job id of each jobs.extend_lease statement (every query still runs); with `held`,
 * each is sent once it resolves (a beat the test orders after what its handler does first).
 */
function extendsRecorded(ids: string[], held?: Promise<void>): Driver {
  const driver = db.driver;
  return {
    ...driver, close: async () => {},
    query: async (text, params, options) => {
      if (text.includes('jobs.extend_lease')) {
        ids.push(String(params?.[0]));
        await held;
      }
      return driver.query(text, params, options);
    },
  } as Driver;
}

/**
 * A slow jobs.extend_lease, for real: the function, moved to a schema of its own (its name kept: its body names
 * its arguments by it), wrapped with a pg_sleep of `seconds`. Answers what puts it back.
 */
async function slowExtendLease(seconds: number): Promise<() => Promise<void>> {
  const signature = 'bigint, integer, numeric, timestamptz, text';
  await sql('create schema slow');
  await sql(`alter function jobs.extend_lease(${signature}) set schema slow`);
  await sql(`create function jobs.extend_lease(job_id bigint, attempt integer, seconds numeric, now timestamptz default null,
                                               worker_id text default null) returns timestamptz language sql as $$
               select pg_sleep(${seconds});
               select slow.extend_lease(job_id, attempt, seconds, now, worker_id) $$`);
  return async () => {
    await sql(`drop function jobs.extend_lease(${signature})`);
    await sql(`alter function slow.extend_lease(${signature}) set schema jobs`);
    await sql('drop schema slow');
  };
}

/** Polls until the job's lease was moved past its first end twice ('extended'), or it left job_queue ('gone'). */
async function extendedTwiceOrGone(id: string): Promise<'extended' | 'gone'> {
  const seen = new Set<number>();
  let gone = false;
  await until(async () => {
    const row = await leaseOf(id);
    if (!row) return void (gone = true);
    if (row.lease && row.first && row.lease > row.first) seen.add(row.lease.getTime());
    expect(seen.size).toBeGreaterThanOrEqual(2);
  });
  return gone ? 'gone' : 'extended';
}

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
});

describe('defineTask heartbeatSeconds', () => {
  // The timeout and heartbeat where beats must land before the drain's timer: 3 s (not 1 s), a beat every 1.2 s with
  // 1.5 s to be answered (not 0.4 s with 0.5 s: a loaded machine's slow beat or claim timed the job out).
  const BEAT = 3;

  it('a job with timeout 3 s runs on while its lease is extended, and succeeds; the same handler without it times out', async () => {
    const { opened, open } = gate();
    const hb = {
      beating: defineTask('hb.beating', waiting(opened), { heartbeatSeconds: BEAT }),
      plain: defineTask('hb.plain', waiting(opened)),
    };
    const q = queueWith({ hb });
    const plain = await q.publish('hb.plain', null, { timeoutSeconds: BEAT, maxRetries: 0 });
    const beating = await q.publish('hb.beating', null, { timeoutSeconds: BEAT, maxRetries: 0 });
    const drained = q.drain(5, deadline());
    try {
      const leases = await extendedTimes(beating, 2);
      expect(leases[1]!.getTime()).toBeGreaterThan(leases[0]!.getTime());
      // The plain one of the same claim timed out meanwhile (its lease ended, nacked: no retries left).
      await until(async () => expect(await q.getJob(plain)).toMatchObject({ state: 'failure', error: `timed out after ${BEAT} s` }));
    } finally {
      open();
    }
    expect(await drained).toMatchObject({ claimed: 2, succeeded: 1, failed: 1 });
    const done = await q.getJob(beating);
    expect(done).toMatchObject({ state: 'success', attempts: 1, result: { aborted: false } });
    expect(done!.error ?? null).toBeNull();
  });

  it('a transactional task beats through the drain, and its ack commits past its first lease', async () => {
    const { opened, open } = gate();
    const tx = defineTask('tx.beating', waiting(opened), { transactional: true, heartbeatSeconds: BEAT });
    const q = queueWith({ tx });
    const id = await q.publish('tx.beating', null, { timeoutSeconds: BEAT, maxRetries: 0 });
    const drained = q.drain(5, deadline());
    try {
      await extendedTimes(id, 2);
    } finally {
      open();
    }
    expect(await drained).toMatchObject({ claimed: 1, succeeded: 1, failed: 0 });
    expect(await q.getJob(id)).toMatchObject({ state: 'success', result: { aborted: false } });
  });

  it('stops once the job settled: its lease row gone, no extend_lease statement after', async () => {
    const counts = new Map<string, number>();
    const { opened, open } = gate();
    const q = queueWith({ hb: { beating: defineTask('hb.beating', waiting(opened), { heartbeatSeconds: 1 }) } },
                        countingDriver(db.driver, counts));
    const id = await q.publish('hb.beating', null, { timeoutSeconds: 30 });
    const drained = q.drain(5, deadline());
    try {
      await until(() => expect(counts.get('extend_lease') ?? 0).toBeGreaterThanOrEqual(2));
    } finally {
      open();
    }
    expect(await drained).toMatchObject({ claimed: 1, succeeded: 1 });
    expect(await leaseOf(id)).toBeUndefined();
    const after = counts.get('extend_lease');
    await sleep(1600); // three beats' time, had it gone on
    expect(counts.get('extend_lease')).toBe(after);
  });

  it('stops when the job is cancelled: it ends cancelled, and no extend_lease statement follows', async () => {
    const ids: string[] = [];
    const { opened, open } = gate();
    const q = queueWith({ hb: { beating: defineTask('hb.beating', waiting(opened), { heartbeatSeconds: BEAT }) } },
                        extendsRecorded(ids));
    const id = await q.publish('hb.beating', null, { timeoutSeconds: BEAT, maxRetries: 0 });
    const drained = q.drain(5, deadline(), { cancelCheckMs: 100 });
    try {
      await extendedTimes(id, 1);
      await q.cancel(id);
      expect(await drained).toMatchObject({ claimed: 1, cancelled: 1 });
    } finally {
      open();
    }
    const after = ids.length;
    await sleep(3 * beatDelay(BEAT) + 100); // three beats' time, had it gone on
    expect(ids.length).toBe(after);
  });

  it('stops, and fires ctx.signal, when the database says the delivery no longer runs (its lease passed and a claim expired it)', async () => {
    const ids: string[] = [];
    const seen: { reason: string; beats: number }[] = [];
    // Its first beat is due 0.4 s after the claim was sent: a claim answered that late (a loaded machine) sent it
    // as the handler began, and extended the lease before the expiry (expire() 0, the handler failed). Held until
    // the expiry, as if it came after it.
    const { opened: expired, open: expiryDone } = gate();
    const q = queueWith({
      hb: { lost: defineTask('hb.lost', async (_b: unknown, ctx: JobContext) => {
        // As if this drain missed its own timer: the lease passed, and another claim's expiry ended the job.
        try {
          await sql(`update jobs.job_queue set lease_until = now() - interval '1 second' where job_id = $1`, [ctx.job.id]);
          expect(await sql(`select jobs.expire() as n`)).toEqual([{ n: 1 }]);
        } finally {
          expiryDone();
        }
        await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
        seen.push({ reason: (ctx.signal.reason as Error).message, beats: ids.length });
        return 'late';
      }, { heartbeatSeconds: 1 }) },
    }, extendsRecorded(ids, expired));
    const id = await q.publish('hb.lost', null, { timeoutSeconds: 20, maxRetries: 0 });
    // Its ack comes after the expiry ended the job: it changes nothing (stale).
    expect(await q.drain(5, deadline())).toMatchObject({ claimed: 1, succeeded: 0, failed: 0, stale: 1 });
    // The first beat answered null: the signal fired then (not at its 20 s timeout), and no beat followed.
    expect(seen).toEqual([{ reason: expect.stringMatching(/^lease lost: /), beats: 1 }]);
    await sleep(1600); // three beats' time, had it gone on
    expect(ids).toEqual([id]);
    expect(await q.getJob(id)).toMatchObject({ state: 'failure', error: expect.stringMatching(/^timed out: no ack within 20 seconds/) });
  });

  it('beats on through database errors (the lease as it was), and lands once the database answers', async () => {
    const answers: ('error' | 'null' | 'granted')[] = [];
    const driver = db.driver;
    const recording = {
      ...driver, close: async () => {},
      query: (text: string, params?: unknown[], options?: unknown) => {
        const result = driver.query(text, params, options as never);
        if (!text.includes('jobs.extend_lease')) return result;
        return result.then((r) => {
          answers.push((r.rows[0] as { until: unknown }).until === null ? 'null' : 'granted');
          return r;
        }, (error: unknown) => {
          answers.push('error');
          throw error;
        });
      },
    } as Driver;
    const { opened, open } = gate();
    const q = queueWith({ hb: { beating: defineTask('hb.beating', waiting(opened), { heartbeatSeconds: 1 }) } }, recording);
    const id = await q.publish('hb.beating', null, { timeoutSeconds: 30, maxRetries: 0 });
    // A real error for every beat: the function is not there under its name.
    const signature = 'jobs.extend_lease(bigint, integer, numeric, timestamptz, text)';
    await sql(`alter function ${signature} rename to extend_lease_away`);
    let renamed = true;
    const drained = q.drain(5, deadline());
    try {
      await until(() => expect(answers.filter((a) => a === 'error').length).toBeGreaterThanOrEqual(2));
      await sql(`alter function jobs.extend_lease_away(bigint, integer, numeric, timestamptz, text) rename to extend_lease`);
      renamed = false;
      await until(() => expect(answers).toContain('granted'));
    } finally {
      if (renamed) await sql(`alter function jobs.extend_lease_away(bigint, integer, numeric, timestamptz, text) rename to extend_lease`);
      open();
    }
    expect(await drained).toMatchObject({ claimed: 1, succeeded: 1 });
    expect(answers).not.toContain('null');
    expect(await q.getJob(id)).toMatchObject({ state: 'success', result: { aborted: false } });
  });

  it('a beat has half its lease to be answered, as before the timer ended a margin early: 2.05 s per extend_lease, 5 s beats', async () => {
    // The job's timer ends at 4.5 s (a 0.5 s margin before the lease). Beats at half the lease (2.5 s) left 2 s to
    // answer: this one was nacked as timed out. Beats at 2 s leave 2.5 s: each lands 0.45 s before the timer would
    // fire (a generous bound on a busy machine).
    const restore = await slowExtendLease(2.05);
    const { opened, open } = gate();
    const q = queueWith({ hb: { slow: defineTask('hb.slow', waiting(opened), { heartbeatSeconds: 5 }) } });
    const id = await q.publish('hb.slow', null, { timeoutSeconds: 5, maxRetries: 0 });
    const drained = q.drain(5, deadline());
    try {
      expect(await extendedTwiceOrGone(id), 'the job left job_queue before its lease was extended twice').toBe('extended');
    } finally {
      open();
      await restore();
    }
    expect(await drained).toMatchObject({ claimed: 1, succeeded: 1, failed: 0 });
    expect(await q.getJob(id)).toMatchObject({ state: 'success', attempts: 1, result: { aborted: false } });
  });

  it("the first beat counts from its claim's sending: a claim that waited 1 s leaves it its half lease all the same", async () => {
    // batch 1: first alone, then slow with the claim that carries first's ack, held 1 s on first's row lock:
    // slow's first lease (its timeout) runs meanwhile. Its first beat counted from its start came 1 s late,
    // with 1.5 s to answer: nacked as timed out. From the claim's sending, it has 2.5 s again.
    const restore = await slowExtendLease(2.05);
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    const { opened, open } = gate();
    const { opened: locked, open: lockTaken } = gate();
    const q = queueWith({ hb: {
      first: async () => { await locked; return 1; },
      slow: defineTask('hb.slow', waiting(opened), { heartbeatSeconds: 5 }),
    } });
    const first = await q.publish('hb.first', null, { priority: 1 });
    const id = await q.publish('hb.slow', null, { timeoutSeconds: 5, maxRetries: 0 });
    const drained = q.drain(1, deadline());
    try {
      await until(async () => expect((await leaseOf(first))?.lease).toBeInstanceOf(Date));
      await holder.query('begin');
      await holder.query('select 1 from jobs.job_queue where job_id = $1 for update', [first]);
      lockTaken();
      await until(async () => expect(await sql(`select 1 from pg_stat_activity where datname = current_database()
                                                 and wait_event_type = 'Lock' and query like '%claim_json%'`)).toHaveLength(1));
      await sleep(1000);
      await holder.query('commit');
      expect(await extendedTwiceOrGone(id), 'the job left job_queue before its lease was extended twice').toBe('extended');
    } finally {
      lockTaken();
      open();
      await holder.end();
      await restore();
    }
    expect(await drained).toMatchObject({ claimed: 2, succeeded: 2, failed: 0 });
    expect(await q.getJob(id)).toMatchObject({ state: 'success', attempts: 1, result: { aborted: false } });
  });

  it("runs until the drain's stop: there it is stopped and nacked as any job", async () => {
    const q = queueWith({
      hb: { deaf: defineTask('hb.deaf', async (_b: unknown, ctx: JobContext) => {
        await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
      }, { heartbeatSeconds: BEAT }) },
    });
    const id = await q.publish('hb.deaf', null, { timeoutSeconds: BEAT, maxRetries: 0 });
    // 8 s: twice and more its timeout, time for the heartbeat to carry it past (and a slow first claim to fit it).
    expect(await q.drain(5, Date.now() + 8000, { settleMarginMs: 200 })).toMatchObject({ claimed: 1, failed: 1, stoppedBy: 'deadline' });
    expect(await q.getJob(id)).toMatchObject({ state: 'failure', error: 'stopped at the drain deadline' });
  });

  it('a task without the option issues no extend_lease statement (beside one that beats)', async () => {
    const ids: string[] = [];
    const { opened, open } = gate();
    const q = queueWith({
      hb: { beating: defineTask('hb.beating', waiting(opened), { heartbeatSeconds: 1 }), plain: waiting(opened) },
      tx: { plain: defineTask('tx.plain', waiting(opened), { transactional: true }) },
    }, extendsRecorded(ids));
    const beating = await q.publish('hb.beating', null, { timeoutSeconds: 30 });
    await q.publish('hb.plain', null, { timeoutSeconds: 30 });
    await q.publish('tx.plain', null, { timeoutSeconds: 30 });
    const drained = q.drain(5, deadline());
    try {
      await until(() => expect(ids.length).toBeGreaterThanOrEqual(3));
    } finally {
      open();
    }
    expect(await drained).toMatchObject({ claimed: 3, succeeded: 3 });
    expect(new Set(ids)).toEqual(new Set([beating]));
  });

  it('refuses bad values with a ValidationError naming options.heartbeatSeconds, and with batch', () => {
    const q = queueWith({});
    const handler = async () => null;
    for (const heartbeatSeconds of [0, 0.5, -1, 86401, Number.NaN, Infinity, '5', null, true]) {
      for (const define of [defineTask, q.defineTask]) {
        expect(() => define('a.b', handler, { heartbeatSeconds: heartbeatSeconds as number }), String(heartbeatSeconds))
          .toThrow(expect.objectContaining({ field: 'options.heartbeatSeconds',
                                             message: expect.stringMatching(/^options\.heartbeatSeconds: must be a number of seconds from 1 to 86400, got /) }));
      }
    }
    const withBatch = () => defineTask('a.b', async () => [], { batch: true, heartbeatSeconds: 5 as never });
    expect(withBatch).toThrow(ValidationError);
    expect(withBatch).toThrow(expect.objectContaining({ field: 'options.heartbeatSeconds', message: expect.stringMatching(/batch/) }));
    // The bounds themselves are taken.
    expect(() => defineTask('a.b', handler, { heartbeatSeconds: 1 })).not.toThrow();
    expect(() => defineTask('a.b', handler, { heartbeatSeconds: 86400 })).not.toThrow();
    expect(() => defineTask('a.b', handler, { heartbeatSeconds: undefined })).not.toThrow();
  });
});
