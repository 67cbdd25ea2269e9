// Issue 7, feature 11: typed tasks, handler chains, and transactional tasks
// whose database work commits with their ack (exactly once).
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createQueue, defineTask, resolveHandler, taskNames, type JobContext, type TaskMap } from '../../src/index.js';
import type { Driver, Queryable } from '../../src/db/driver.js';
import { pgDriver } from '../../src/db/pg.js';
import { testDb } from '../support/db.js';
import { sleep, until } from '../support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const deadline = () => Date.now() + 120_000;
const queue = () => createQueue({ driver: { ...db.driver, close: async () => {} } });

beforeAll(async () => {
  await sql(`create table if not exists public.ledger (job_id bigint, amount int)`);
});
beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency, public.ledger');
});

interface Mail { to: string; subject: string }

describe('defineTask', () => {
  it('gives a directly callable function and a typed publish that a drain runs', async () => {
    const q = queue();
    const sendMail = q.defineTask('email.send', async (mail: Mail) => ({ sent: mail.to }));
    expect(sendMail.task).toBe('email.send');
    expect(await sendMail({ to: 'a@x', subject: 'hi' }, {} as JobContext)).toEqual({ sent: 'a@x' });
    const id = await sendMail.publish({ to: 'b@x', subject: 'hello' }, { priority: 5 });
    // @ts-expect-error the body is typed
    await expect(sendMail.publish({ nope: 1 }, { priority: 'high' } as never)).rejects.toMatchObject({ field: 'options.priority' });
    const report = await q.drain(10, deadline());
    expect(report.succeeded).toBe(1);
    expect(await sql(`select result from jobs.job where job_id = $1`, [id])).toEqual([{ result: { sent: 'b@x' } }]);
  });

  it('a handler publishes follow-up jobs (a chain) that the same drain runs', async () => {
    const q = queue();
    const embed = q.defineTask('doc.embed', (b: { text: string }) => b.text.length);
    q.defineTask('doc.summarize', async (b: { text: string }, ctx) => {
      const next = await ctx.publish(embed.task, { text: b.text.slice(0, 4) });
      return { next };
    });
    await q.publish('doc.summarize', { text: 'a long document' });
    const report = await q.drain(10, deadline());
    expect(report.succeeded).toBe(2);
    expect(await sql(`select task, result from jobs.job order by job_id`)).toEqual([
      { task: 'doc.summarize', result: { next: expect.any(String) } }, { task: 'doc.embed', result: 4 }]);
  });

  it('types ctx.db as present in a transactional task only (checked by the typecheck), and it is', async () => {
    const q = queue();
    q.defineTask('typed.tx', async (_: unknown, ctx) => (await ctx.db.query<{ one: number }>('select 1 as one')).rows[0], { transactional: true });
    defineTask('typed.tx2', async (_: unknown, ctx) => ctx.db.query('select 1'), { transactional: true });
    // @ts-expect-error a plain task may have no ctx.db
    q.defineTask('typed.plain', async (_: unknown, ctx) => ctx.db.query('select 1'));
    await q.publish('typed.tx');
    expect(await q.drain(1, deadline())).toMatchObject({ succeeded: 1 });
    expect(await sql(`select result from jobs.job where task = 'typed.tx'`)).toEqual([{ result: { one: 1 } }]);
  });

  it('a module serves defined tasks by their own names, and its default export; instances and cycles are not walked', () => {
    const cyclic: Record<string, unknown> = { run: async () => 1 };
    cyclic.self = cyclic;
    class Pool { clients = [{ pool: this }]; query() { return 1; } }
    const send = defineTask('email.send', async () => 1);
    const tasks = { send, cyclic, pool: new Pool(), default: { other: async () => 2 } } as unknown as TaskMap;
    expect(taskNames(tasks)).toEqual(['cyclic.run', 'email.send', 'other', 'send']);
    expect(resolveHandler(tasks, 'email.send')).toBe(send);
    expect(resolveHandler(tasks, 'other')).toBeTypeOf('function');
    expect(resolveHandler(tasks, 'pool.query')).toBeUndefined();
  });

  it('a standalone task publishes only when bound; names are checked', () => {
    const t = defineTask('x.y', () => 1);
    expect(() => t.publish(undefined)).toThrow(/not bound to a queue/);
    expect(() => defineTask('bad name', () => 1)).toThrow(/name/);
    expect(() => defineTask('a.b', 'nope' as never)).toThrow(/handler/);
  });
});

describe('transactional tasks', () => {
  it('database work, follow-ups and the ack commit together: exactly once', async () => {
    const q = queue();
    q.defineTask('ledger.add', async (b: { amount: number }, ctx) => {
      await ctx.db.query('insert into public.ledger values ($1, $2)', [ctx.job.id, b.amount]);
      await ctx.publish('ledger.notify', { amount: b.amount });
      return 'booked';
    }, { transactional: true });
    q.defineTask('ledger.notify', () => null);
    const ids = await Promise.all([1, 2, 3].map((amount) => q.publish('ledger.add', { amount })));
    const report = await q.drain(10, deadline());
    expect(report).toMatchObject({ succeeded: 6, failed: 0, stale: 0 });
    expect(await sql(`select job_id::text as id, amount from public.ledger order by amount`))
      .toEqual(ids.map((id, i) => ({ id, amount: i + 1 })));
  });

  it('a throw rolls back the work and the follow-ups; the job is retried', async () => {
    const q = queue();
    let calls = 0;
    q.defineTask('ledger.add', async (_: unknown, ctx) => {
      await ctx.db.query('insert into public.ledger values ($1, 1)', [ctx.job.id]);
      await ctx.publish('ledger.notify');
      if (++calls === 1) throw new Error('card declined');
    }, { transactional: true });
    q.defineTask('ledger.notify', () => null);
    await q.publish('ledger.add');
    const first = await q.drain(10, deadline());
    expect(first).toMatchObject({ succeeded: 0, retried: 1 });
    expect(await sql(`select count(*)::int as n from public.ledger`)).toEqual([{ n: 0 }]);
    expect(await sql(`select count(*)::int as n from jobs.job_queue where task = 'ledger.notify'`)).toEqual([{ n: 0 }]);
    await sql(`update jobs.job_queue set scheduled_at = now()`);
    expect((await q.drain(10, deadline())).succeeded).toBe(2);
    expect(await sql(`select count(*)::int as n from public.ledger`)).toEqual([{ n: 1 }]);
  });

  it('a follow-up committed while an empty claim is out still runs in the same drain', async () => {
    // The real driver, wrapped only to order events: the drain's second claim
    // is answered (its snapshot taken) before the job's transaction commits,
    // and its empty answer reaches the drain after the job has ended.
    let claims = 0;
    let answer!: () => void;
    const secondClaimAnswered = new Promise<void>((resolve) => (answer = resolve));
    let commit!: () => void;
    const committed = new Promise<void>((resolve) => (commit = resolve));
    const driver: Driver = {
      ...db.driver,
      close: async () => {},
      async query<R>(text: string, params?: readonly unknown[]) {
        const result = await db.driver.query<R>(text, params);
        if (text.includes('jobs.claim_json') && ++claims === 2) {
          answer();
          await committed;
          await new Promise((resolve) => setTimeout(resolve, 0)); // the job's end follows the commit in microtasks
        }
        return result;
      },
      async transaction<T>(fn: (tx: Queryable) => Promise<T>) {
        const result = await db.driver.transaction(fn);
        commit();
        return result;
      },
    };
    const q = createQueue({ driver });
    q.defineTask('ledger.add', async (_: unknown, ctx) => {
      await ctx.publish('ledger.notify');
      await secondClaimAnswered;
    }, { transactional: true });
    q.defineTask('ledger.notify', () => null);
    await q.publish('ledger.add');
    const report = await q.drain(10, deadline());
    expect(claims).toBeGreaterThanOrEqual(3);
    expect(report).toMatchObject({ succeeded: 2, stoppedBy: 'empty' });
  });

  it('a result that is not JSON rolls back the work and fails at once, as in a plain task', async () => {
    const q = queue();
    // @ts-expect-error the result type is refused too (JsonResult): plain JavaScript can return it
    q.defineTask('ledger.add', async (_: unknown, ctx) => {
      await ctx.db.query('insert into public.ledger values ($1, 1)', [ctx.job.id]);
      return () => 'not JSON';
    }, { transactional: true });
    await q.publish('ledger.add');
    const report = await q.drain(10, deadline());
    expect(report).toMatchObject({ succeeded: 0, failed: 1, retried: 0 });
    expect(report.failures[0]!.error).toMatch(/^FailJob: result not stored: result is a function/);
    expect(await sql(`select count(*)::int as n from public.ledger`)).toEqual([{ n: 0 }]);
  });

  it('a handler that ignores its timeout and returns late rolls back: the drain already nacked it', async () => {
    const q = queue();
    q.defineTask('ledger.add', async (_: unknown, ctx) => {
      await ctx.db.query('insert into public.ledger values ($1, 1)', [ctx.job.id]);
      // Runs past its timeout (which may have come already, on a loaded machine, while the insert ran).
      if (!ctx.signal.aborted) await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
      return 'late';
    }, { transactional: true });
    // 2 s, not 0.2 s: a claim answered after the job's timer ended (0.18 s on, a loaded machine's round trip)
    // nacks it unstarted (handler-end.ts), its handler never run.
    await q.publish('ledger.add', null, { timeoutSeconds: 2 });
    const report = await q.drain(10, deadline());
    expect(report).toMatchObject({ succeeded: 0, retried: 1, stale: 0 });
    expect(report.failures[0]!.error).toBe('timed out after 2 s');
    expect(await sql(`select count(*)::int as n from public.ledger`)).toEqual([{ n: 0 }]);
    expect(await sql(`select attempt, last_error from jobs.job_queue`)).toEqual([{ attempt: 1, last_error: 'timed out after 2 s' }]);
  });

  it('a job whose timeout passes while it waits for a connection is released, its attempt kept, and runs once one is free', async () => {
    const q = createQueue({ driver: pgDriver(db.url, { max: 1 }) }); // one connection: the first job holds it
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const started: string[] = [];
    q.defineTask('ledger.add', async (b: { n: number }, ctx) => {
      started.push(`${b.n}`);
      if (b.n === 1) {
        await ctx.db.query('insert into public.ledger values ($1, 1)', [ctx.job.id]);
        await gate;
      }
    }, { transactional: true });
    try {
      await q.publish('ledger.add', { n: 1 }, { timeoutSeconds: 30, priority: 1 });
      // 2 s, not 0.3 s: its second claim answered after its timer ended (0.27 s on, a loaded machine's round trip)
      // would nack it unstarted (handler-end.ts), failed, never run.
      await q.publish('ledger.add', { n: 2 }, { timeoutSeconds: 2, maxRetries: 0 });
      // Told to run more at once than its pool holds (by default it would not).
      const drained = q.drain(10, deadline(), { concurrency: 10 });
      await until(async () => started.length > 0, 'the first job to hold the connection');
      await sleep(2500); // past the second job's timeout, while it waits for the connection
      open();
      const report = await drained;
      // Released unstarted (maxRetries 0 did not fail it), claimed again by the claim that waited for the
      // pool's one connection, and given its whole timeout from that connection: it ran. Before, that
      // claim counted the pool's wait as the job's time: 'timed out after 2 s, before it could start'.
      expect(started).toEqual(['1', '2']);
      expect(await sql(`select status, attempts from jobs.job where body = '{"n": 2}'`)).toEqual([{ status: 'success', attempts: 1 }]);
      expect(report).toMatchObject({ claimed: 3, succeeded: 2, released: 1, failed: 0 });
    } finally {
      await q.close();
    }
  });

  it('runs no more transactional jobs at once than the pool holds, less the one it keeps, so none waits out its timeout for a connection', async () => {
    const q = createQueue({ driver: pgDriver(db.url, { max: 3 }) });
    let running = 0;
    let most = 0;
    q.defineTask('ledger.add', async (_: unknown, ctx) => {
      most = Math.max(most, ++running);
      await ctx.db.query('insert into public.ledger values ($1, 1)', [ctx.job.id]);
      await sleep(300);
      running--;
    }, { transactional: true });
    try {
      // Twelve at once on the two connections left to handlers: the last would wait 1.5 s, past their 1 s timeout.
      await q.publishBulk(Array.from({ length: 12 }, () => ({ task: 'ledger.add', timeoutSeconds: 1 })));
      const report = await q.drain(12, deadline());
      expect(report).toMatchObject({ claimed: 12, succeeded: 12, failed: 0, retried: 0 });
      expect(most).toBe(2);
      expect(await sql(`select count(*)::int as n from jobs.job where status = 'success' and attempts = 1`)).toEqual([{ n: 12 }]);
    } finally {
      await q.close();
    }
  });

  it('counts a transactional handler that runs on past its timeout as holding its connection: later jobs are not nacked unrun', async () => {
    const q = createQueue({ driver: pgDriver(db.url, { max: 2 }) });
    // Deaf to its signal inside a statement: it holds its connection 3 s past its 2 s timeout, longer than a
    // quick job's 2 s. Not 0.5 s timeouts: a claim answered after a job's timer ended (0.45 s on, a loaded
    // machine's round trip) nacks it unstarted (handler-end.ts), a slow one never holding its connection.
    q.defineTask('tx.slow', async (_: unknown, ctx) => { await ctx.db.query('select pg_sleep(5)'); }, { transactional: true });
    q.defineTask('tx.quick', async (_: unknown, ctx) => { await ctx.db.query('select 1'); }, { transactional: true });
    try {
      await q.publishBulk([{ task: 'tx.slow', timeoutSeconds: 2, maxRetries: 0, priority: 1 },
                           { task: 'tx.slow', timeoutSeconds: 2, maxRetries: 0, priority: 1 }]);
      await q.publishBulk(Array.from({ length: 4 }, () => ({ task: 'tx.quick', timeoutSeconds: 2, maxRetries: 0 })));
      await q.drain(10, deadline());
      expect(await sql(`select task, status, count(*)::int as n from jobs.job group by 1, 2 order by 1`)).toEqual([
        { task: 'tx.quick', status: 'success', n: 4 }, { task: 'tx.slow', status: 'failure', n: 2 }]);
    } finally {
      await q.close();
    }
  });

  it("a transactional job's ended_at is when its ack ran, not when its transaction began", async () => {
    const q = queue();
    q.defineTask('ledger.add', async () => { await sleep(300); }, { transactional: true });
    await q.publish('ledger.add');
    expect(await q.drain(10, deadline())).toMatchObject({ succeeded: 1 });
    expect(await sql(`select extract(epoch from ended_at - started_at) >= 0.3 as after_the_work from jobs.job`))
      .toEqual([{ after_the_work: true }]);
  });

  it('a delivery whose lease passed to another consumer rolls back instead of doing the work twice', async () => {
    const q = queue();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    q.defineTask('ledger.add', async (_: unknown, ctx) => {
      entered();
      await gate;
      await ctx.db.query('insert into public.ledger values ($1, 1)', [ctx.job.id]);
    }, { transactional: true });
    await q.publish('ledger.add', null, { timeoutSeconds: 30 });
    const drained = q.drain(10, deadline());
    await inside;
    // The lease runs out (injected clock) and another consumer takes the job.
    await sql(`select jobs.expire(now => now() + interval '1 minute')`);
    expect(await sql(`select attempt from jobs.consume(1, now => now() + interval '1 minute')`)).toEqual([{ attempt: 2 }]);
    release();
    const report = await drained;
    expect(report).toMatchObject({ succeeded: 0, stale: 1 });
    expect(await sql(`select count(*)::int as n from public.ledger`)).toEqual([{ n: 0 }]);
  });
});
