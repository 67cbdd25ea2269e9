// Lease extension (pg-boss's touch / heartbeat): jobs.extend_lease (sql/0035)
// moves a running delivery's lease later, and ctx.extendLease does so from a
// handler, moving the drain's own timer for the job (src/run-handler.ts,
// src/timeouts.ts move) so the handler runs on past its old end. Over a real
// PostgreSQL. No timing assertions: the handlers wait on timers set after the
// drain's timer for their job, and Node fires due timers in order of their
// end, so the drain's fires first unless it was moved.
import pg from 'pg';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { Driver } from '../src/db/driver.js';
import { createQueue, defineTask, migrate, ValidationError, type JobContext, type TaskMap } from '../src/index.js';
import { Timeouts, type Expiring } from '../src/timeouts.js';
import { capturePlans, explainSession, scans } from '../bench/explain.js';
import { fill } from '../bench/fill.js';
import { countingDriver as countingDriverOf } from './support/counting-driver.js';
import { sqlErrorOf, testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const deadline = () => Date.now() + 120_000;
const T = '2030-01-01T00:00:00Z'; // a fixed "now" for the SQL tests: claims and expiries take one
const at = (seconds: number) => new Date(Date.parse(T) + seconds * 1000).toISOString();

const countingDriver = (counts: Map<string, number>) => countingDriverOf(db.driver, counts);
const queueWith = (tasks: TaskMap, driver: Driver = { ...db.driver, close: async () => {} }) => createQueue({ driver, tasks });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A published job consumed at T (timeout seconds): its id and attempt. */
async function running(timeout = 10): Promise<{ id: string; attempt: number }> {
  const [row] = await sql<{ id: string; attempt: number }>(
    `select c.job_id::text as id, c.attempt from (select jobs.publish('long.job', null, $1::timestamptz, $2)) p,
            jobs.consume(1, $1::timestamptz) c`, [T, timeout]);
  return row!;
}
const extend = async (id: string | null, attempt: number | null, seconds: number | null | string, now: string | null = null,
                      worker: string | null = null) =>
  (await sql<{ until: Date | null }>(`select jobs.extend_lease($1, $2, $3::numeric, $4, $5) as until`,
                                     [id, attempt, seconds, now, worker]))[0]!.until;
const leaseOf = async (id: string) =>
  (await sql<{ lease: Date | null }>(`select lease_until as lease from jobs.job_queue where job_id = $1`, [id]))[0]?.lease;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
});

describe('jobs.extend_lease', () => {
  it("moves a running delivery's lease to now + seconds, never earlier, and answers it", async () => {
    const job = await running(10);
    expect(await leaseOf(job.id)).toEqual(new Date(at(10)));
    expect(await extend(job.id, job.attempt, 300, at(5))).toEqual(new Date(at(305)));
    expect(await leaseOf(job.id)).toEqual(new Date(at(305)));
    // Shorter than what is left: greatest keeps the later lease.
    expect(await extend(job.id, job.attempt, 10, at(6))).toEqual(new Date(at(305)));
    expect(await leaseOf(job.id)).toEqual(new Date(at(305)));
    // Fractions of a second, as a timeout's.
    expect(await extend(job.id, job.attempt, 0.5, at(305))).toEqual(new Date(at(305.5)));
    // Without now: the database's clock.
    const until = await extend(job.id, job.attempt, 86400);
    expect(until!.getTime()).toBeGreaterThan(Date.now() + 86_000_000);
  });

  it('answers null and changes nothing when the delivery is not running: stale attempt, other worker, ended, put back, unknown', async () => {
    const job = await running(10);
    await sql(`update jobs.job_queue set worker_id = 'w1' where job_id = $1`, [job.id]);
    expect(await extend(job.id, job.attempt + 1, 60, at(1))).toBeNull();
    expect(await extend(job.id, 0, 60, at(1))).toBeNull();
    expect(await extend(job.id, job.attempt, 60, at(1), 'w2')).toBeNull();
    expect(await extend(null, job.attempt, 60, at(1))).toBeNull();
    expect(await extend('999999999', 1, 60, at(1))).toBeNull();
    expect(await extend(job.id, null, 60, at(1))).toBeNull();
    expect(await leaseOf(job.id)).toEqual(new Date(at(10)));
    expect(await extend(job.id, job.attempt, 60, at(1), 'w1')).toEqual(new Date(at(61)));

    // Expired and put back (pending: no lease), then handed out again: the old attempt is stale.
    expect((await sql<{ n: number }>(`select jobs.expire(1000, $1) as n`, [at(62)]))[0]!.n).toBe(1);
    expect(await extend(job.id, job.attempt, 60, at(63))).toBeNull();
    expect(await leaseOf(job.id)).toBeNull();
    const [again] = await sql<{ attempt: number }>(`select attempt from jobs.consume(1, $1)`, [at(70)]);
    expect(again!.attempt).toBe(job.attempt + 1);
    expect(await extend(job.id, job.attempt, 600, at(71))).toBeNull();
    expect(await leaseOf(job.id)).toEqual(new Date(at(80)));

    // Ended (acked): nothing to extend.
    expect((await sql<{ ok: boolean }>(`select jobs.ack($1::bigint) as ok`, [job.id]))[0]!.ok).toBe(true);
    expect(await extend(job.id, again!.attempt, 60)).toBeNull();

    // Released (pending again, never started): no lease.
    const other = await running(10);
    await sql(`select jobs.release(array[$1::bigint])`, [other.id]);
    expect(await extend(other.id, other.attempt, 60)).toBeNull();
    expect(await extend(other.id, other.attempt - 1, 60)).toBeNull();
    expect(await leaseOf(other.id)).toBeNull();
  });

  it('refuses seconds outside 0.001 to 86400 (and null, NaN) with PD002 naming seconds', async () => {
    const job = await running(10);
    for (const seconds of [0, 0.0005, -1, 86400.5, null, 'NaN']) {
      const error = await sqlErrorOf(sql, `select jobs.extend_lease($1, $2, $3::numeric)`, [job.id, job.attempt, seconds]);
      expect(error).toMatchObject({ code: 'PD002', column: 'seconds',
                                    message: expect.stringMatching(/^seconds: must be 0\.001 to 86400 seconds, got /) });
    }
    // Checked before the job is looked at: the same for an unknown one.
    expect(await sqlErrorOf(sql, `select jobs.extend_lease(null, null, 0)`)).toMatchObject({ code: 'PD002', column: 'seconds' });
    expect(await leaseOf(job.id)).toEqual(new Date(at(10)));
  });

  it('an extended job is not expired at its old lease end, and is after its new one', async () => {
    const job = await running(10);
    expect(await extend(job.id, job.attempt, 95, at(5))).toEqual(new Date(at(100)));
    for (const [now, after] of [[at(11), null], [at(99), null], [at(99), at(9)]]) {
      expect((await sql<{ n: number }>(`select jobs.expire(1000, $1, $2) as n`, [now, after]))[0]!.n).toBe(0);
      // A claim's probe too (it expires before it picks).
      await sql(`select jobs.consume(1, $1)`, [now]);
    }
    expect(await sql(`select lease_until, last_error from jobs.job_queue where job_id = $1`, [job.id]))
      .toEqual([{ lease_until: new Date(at(100)), last_error: null }]);
    expect((await sql<{ n: number }>(`select jobs.expire(1000, $1) as n`, [at(100.001)]))[0]!.n).toBe(1);
    expect(await sql(`select lease_until, last_error from jobs.job_queue where job_id = $1`, [job.id]))
      .toEqual([{ lease_until: null, last_error: expect.stringMatching(/^timed out: no ack within 10 seconds/) }]);
  });

  it('PUBLIC may not call it: a role jobs.create_roles did not grant it cannot', async () => {
    const [row] = await sql<{ ok: boolean }>(`select has_function_privilege('public',
      'jobs.extend_lease(bigint, integer, numeric, timestamptz, text)', 'execute') as ok`);
    expect(row!.ok).toBe(false);
  });

  it('a worker role may extend leases (jobs.create_roles grants extend_lease)', async () => {
    const prefix = `l${Date.now().toString(36)}`;
    await migrate(db.driver, { roles: prefix });
    // Consumed at the clock's time: a worker may not give another (jobs.check_now), so it extends from the call's time.
    const [job] = await sql<{ id: string; attempt: number }>(
      `select c.job_id::text as id, c.attempt from (select jobs.publish('long.job', null, timeout_seconds => 10)) p, jobs.consume(1) c`);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      await client.query('begin');
      await client.query(`set local role ${prefix}_worker`);
      const { rows } = await client.query(`select jobs.extend_lease($1, $2, 60) between now() + interval '60 seconds'
                                                  and clock_timestamp() + interval '60 seconds' as ok`,
                                          [job!.id, job!.attempt]);
      expect(rows).toEqual([{ ok: true }]);
      await client.query('set local role none');
      await client.query(`set local role ${prefix}_publisher`);
      await expect(client.query(`select jobs.extend_lease($1, $2, 60)`, [job!.id, job!.attempt]))
        .rejects.toMatchObject({ code: '42501' });
    } finally {
      await client.query('rollback');
      await client.end();
    }
  });
});

describe('jobs.extend_lease plan', () => {
  it('finds the job by its key, not by the lease index these statistics make look small, generic plans included', async () => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      await fill(client, 20_000);
      await client.query('analyze jobs.job_queue'); // no job running: the lease index looks empty
      await explainSession(client);
      const ids = (await client.query<{ id: string; attempt: number }>('select job_id as id, attempt from jobs.consume(7)')).rows;
      for (const [call, job] of ids.entries()) { // the 6th call on runs a cached generic plan
        const plans = await capturePlans(client, async () => {
          const { rows } = await client.query(`select jobs.extend_lease($1, $2, 60) as until`, [job.id, job.attempt]);
          expect(rows[0]!.until).toBeInstanceOf(Date);
        });
        const updates = plans.filter((p) => /update jobs\.job_queue/i.test(p.text));
        expect(updates, `call ${call + 1}`).toHaveLength(1);
        expect(scans(updates[0]!).filter((x) => / on job_queue$/.test(x)), updates[0]!.text)
          .toEqual(['Index Scan using job_queue_pkey on job_queue']);
      }
    } finally {
      await client.end();
    }
  });
});

describe('Timeouts.move', () => {
  class Item implements Expiring {
    ended = false;
    expired = 0;
    constructor(private readonly onExpire = () => {}) {}
    expire(): void {
      if (this.ended) return;
      this.expired++;
      this.onExpire();
    }
  }

  it('takes one item off its group: the others expire at the old end, it at its new end, once', async () => {
    const timeouts = new Timeouts();
    let aWhenB: number | undefined;
    const a = new Item();
    // The old group calls its items in order: a, had it stayed, before b.
    const b = new Item(() => (aWhenB = a.expired));
    const group = timeouts.at(Date.now() + 50, a);
    timeouts.at(group.end, b);
    const moved = timeouts.move(group, group.end + 300, a);
    expect(moved).not.toBe(group);
    expect(moved.items).toEqual([a]);
    expect(group.items).toEqual([b]);
    await vi.waitFor(() => expect(a.expired).toBe(1), { timeout: 10_000, interval: 10 });
    expect(aWhenB).toBe(0); // the old group's timer fired without it
    await sleep(50);
    expect([a.expired, b.expired]).toEqual([1, 1]);
  });
});

describe('ctx.extendLease', () => {
  /** The jobs' timeout where a handler's extension must land before the drain's timer, or a claim's answer must. */
  const LONG = 5;

  /**
   * Runs past its 5 s timeout (LONG): extends its lease by 30 s (when told), then
   * waits 5.2 s on a timer set after the drain's for its job (ending later, so
   * the drain's fires first, unless it was moved), and answers what it saw.
   * 5 s (not 2 s): time enough, on a loaded machine, for the claim's answer and the extension to land before the
   * drain's timer (4.5 s after the claim's sending), a slow claim or extension only moving the handler's timer later.
   */
  const long = async (body: { extend: boolean }, ctx: JobContext) => {
    const granted = body.extend ? await ctx.extendLease(30) : null;
    const [row] = await sql<{ ahead: boolean }>(
      `select lease_until > now() + interval '20 seconds' as ahead from jobs.job_queue where job_id = $1`, [ctx.job.id]);
    await sleep(LONG * 1000 + 200);
    return { granted: granted !== null, leaseAhead: row!.ahead, aborted: ctx.signal.aborted };
  };

  it('a handler with a 5 s timeout that extends its lease runs on past 5 s and its ack lands', async () => {
    const q = queueWith({ long });
    const id = await q.publish('long', { extend: true }, { timeoutSeconds: LONG, maxRetries: 0 });
    expect(await q.drain(5, deadline())).toMatchObject({ claimed: 1, succeeded: 1, failed: 0, retried: 0 });
    expect(await q.getJob(id)).toMatchObject({
      state: 'success', attempts: 1, result: { granted: true, leaseAhead: true, aborted: false } });
  });

  it('of two jobs of one claim (one timer), the same handler without the extension times out at 5 s, the other runs on', async () => {
    const q = queueWith({ long });
    const plain = await q.publish('long', { extend: false }, { timeoutSeconds: LONG, maxRetries: 0 });
    const extended = await q.publish('long', { extend: true }, { timeoutSeconds: LONG, maxRetries: 0 });
    expect(await q.drain(5, deadline())).toMatchObject({ claimed: 2, succeeded: 1, failed: 1 });
    const [p, e] = [await q.getJob(plain), await q.getJob(extended)];
    expect(p).toMatchObject({ state: 'failure', error: `timed out after ${LONG} s` });
    // Moved off the timer it shared (one claim: one start time, one end): that timer's firing for the other did not end it.
    expect(e).toMatchObject({ state: 'success', result: { granted: true, aborted: false } });
    expect(e!.startedAt).toEqual(p!.startedAt);
  });

  it('a transactional task extends through the drain, and its ack commits past its old end', async () => {
    const tx = defineTask('tx.long', async (body: { extend: boolean }, ctx) => long(body, ctx), { transactional: true });
    const q = queueWith({ tx });
    const id = await q.publish('tx.long', { extend: true }, { timeoutSeconds: LONG, maxRetries: 0 });
    expect(await q.drain(5, deadline())).toMatchObject({ claimed: 1, succeeded: 1 });
    expect(await q.getJob(id)).toMatchObject({ state: 'success', result: { granted: true, aborted: false } });
  });

  it("still ends at the drain's stop: stopped at the drain deadline, nacked, its error recorded", async () => {
    const reasons: string[] = [];
    const q = queueWith({
      deaf: async (_b: unknown, ctx: JobContext) => {
        expect(await ctx.extendLease(600)).toBeInstanceOf(Date);
        await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
        reasons.push((ctx.signal.reason as Error).message);
      },
    });
    // 3 s: time for the extension to land before the job's timer (2.7 s after the claim's sending); a 7 s deadline:
    // 3.8 s to spare for a slow claim (the job's 3 s must fit its budget). Not 1 s of 3 s: a slow extension timed it out.
    const id = await q.publish('deaf', null, { timeoutSeconds: 3, maxRetries: 0 });
    const report = await q.drain(5, Date.now() + 7000, { settleMarginMs: 200 });
    expect(report).toMatchObject({ claimed: 1, failed: 1, stoppedBy: 'deadline' });
    await vi.waitFor(() => expect(reasons).toEqual(['stopped at the drain deadline']), { timeout: 10_000 });
    expect(await q.getJob(id)).toMatchObject({ state: 'failure', error: 'stopped at the drain deadline' });
  });

  it("after the drain's signal, a job extended past the drain's stop is stopped there, its attempt spent", async () => {
    const stopped = new AbortController();
    const q = queueWith({
      deaf: async (_b: unknown, ctx: JobContext) => {
        expect(await ctx.extendLease(600)).toBeInstanceOf(Date);
        stopped.abort(); // the signal, with a grace that ends after the drain's stop
        await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
      },
    });
    const id = await q.publish('deaf', null, { timeoutSeconds: 3, maxRetries: 0 }); // as above
    const report = await q.drain(5, Date.now() + 7000, { signal: stopped.signal, graceMs: 60_000, settleMarginMs: 200 });
    expect(report).toMatchObject({ claimed: 1, failed: 1, released: 0, stoppedBy: 'signal' });
    expect(await q.getJob(id)).toMatchObject({ state: 'failure', attempts: 1,
                                              error: "did not stop by the drain's deadline after the drain's signal" });
  });

  it('answers null, sending nothing, once the job settled or timed out', async () => {
    const counts = new Map<string, number>();
    const kept: JobContext[] = [];
    const q = queueWith({
      quick: (_b: unknown, ctx: JobContext) => void kept.push(ctx),
      deaf: async (_b: unknown, ctx: JobContext) => {
        kept.push(ctx);
        await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
        return ctx.extendLease(60); // its timeout fired: over here
      },
    }, countingDriver(counts));
    const quick = await q.publish('quick');
    const deaf = await q.publish('deaf', null, { timeoutSeconds: LONG, maxRetries: 1 }); // not 0.3 s (nor 2 s): a claim answered after its timer nacks it unstarted
    expect(await q.drain(5, deadline())).toMatchObject({ claimed: 2, succeeded: 1, retried: 1 });
    expect(kept).toHaveLength(2);
    expect(await Promise.all(kept.map((ctx) => ctx.extendLease(60)))).toEqual([null, null]);
    expect(counts.get('extend_lease')).toBeUndefined();
    expect(await q.getJob(quick)).toMatchObject({ state: 'success' });
    expect(await sql(`select lease_until, attempt from jobs.job_queue where job_id = $1`, [deaf]))
      .toEqual([{ lease_until: null, attempt: 1 }]);
  });

  it('a stale delivery the database no longer leases answers null and fires ctx.signal (another drain took it over)', async () => {
    let answer: Date | null | undefined;
    let reason: unknown;
    const q = queueWith({
      taken: async (_b: unknown, ctx: JobContext) => {
        // As if its lease passed and another drain's claim handed it out again.
        await sql(`update jobs.job_queue set attempt = attempt + 1 where job_id = $1`, [ctx.job.id]);
        answer = await ctx.extendLease(60);
        reason = ctx.signal.aborted ? (ctx.signal.reason as Error).message : 'not aborted';
      },
    });
    await q.publish('taken', null, { timeoutSeconds: 30 });
    expect(await q.drain(5, deadline())).toMatchObject({ claimed: 1, succeeded: 0, stale: 1 });
    expect(answer).toBeNull();
    expect(reason).toMatch(/^lease lost: the database no longer has this delivery running/);
  });

  it('a database error answers null and leaves ctx.signal alone: the lease is as it was, and a later call lands', async () => {
    const answers: (Date | null)[] = [];
    const q = queueWith({
      retried: async (_b: unknown, ctx: JobContext) => {
        const signature = 'jobs.extend_lease(bigint, integer, numeric, timestamptz, text)';
        await sql(`alter function ${signature} rename to extend_lease_away`);
        try {
          answers.push(await ctx.extendLease(60)); // a real error: no function under that name
        } finally {
          await sql(`alter function jobs.extend_lease_away(bigint, integer, numeric, timestamptz, text) rename to extend_lease`);
        }
        const aborted = ctx.signal.aborted;
        answers.push(await ctx.extendLease(60));
        return { aborted };
      },
    });
    const id = await q.publish('retried', null, { timeoutSeconds: 30 });
    expect(await q.drain(5, deadline())).toMatchObject({ claimed: 1, succeeded: 1 });
    expect(answers).toEqual([null, expect.any(Date)]);
    expect(await q.getJob(id)).toMatchObject({ state: 'success', result: { aborted: false } });
  });

  it('throws a ValidationError naming bad seconds at the call, before any statement', async () => {
    const counts = new Map<string, number>();
    const errors: unknown[] = [];
    const q = queueWith({
      bad: async (_b: unknown, ctx: JobContext) => {
        // Thrown at the call, not as a rejection: one nobody awaited (a heartbeat) would end the process.
        for (const seconds of [0, -5, 86401, Number.NaN, Infinity, '5', undefined]) {
          try {
            void ctx.extendLease(seconds as number);
            errors.push('no throw');
          } catch (e) {
            errors.push(e);
          }
        }
      },
    }, countingDriver(counts));
    await q.publish('bad');
    expect(await q.drain(5, deadline())).toMatchObject({ succeeded: 1 });
    expect(errors).toHaveLength(7);
    for (const e of errors) {
      expect(e).toBeInstanceOf(ValidationError);
      expect(e).toMatchObject({ field: 'seconds', message: expect.stringMatching(/^seconds: must be a number of seconds from 0\.001 to 86400/) });
    }
    expect(counts.get('extend_lease')).toBeUndefined();
  });
});
