// ctx.progress: a handler's progress stored on its running job (jobs.set_progress,
// sql/0031), read back by getJob and GET /jobs/:id, over a real PostgreSQL.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import type { Driver } from '../src/db/driver.js';
import { createApp } from '../src/http/index.js';
import { createQueue, defineTask, migrate, ValidationError, type JobContext, type TaskMap } from '../src/index.js';
import { countingDriver as countingDriverOf } from './support/counting-driver.js';
import { sqlErrorOf, testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const deadline = () => Date.now() + 120_000;
const TOKEN = 'progress-test-token-0123456789';

/** A gate a handler waits on until the test opens it. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, opened };
}

/** Resolves once check() answers true; polls (the handler runs in this process, beside the test). */
async function until(check: () => Promise<boolean>, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const countingDriver = (counts: Map<string, number>) => countingDriverOf(db.driver, counts);

const queueWith = (tasks: TaskMap, driver: Driver = { ...db.driver, close: async () => {} }) => createQueue({ driver, tasks });

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
});

describe('ctx.progress', () => {
  it('shows on the running job (getJob, GET /jobs/:id, jobs.all) and is gone once it succeeded', async () => {
    const g = gate();
    const reported: boolean[] = [];
    const q = queueWith({
      work: async (_b: unknown, ctx: JobContext) => {
        reported.push(await ctx.progress({ done: 40, total: 100 }));
        await g.opened;
        return 'finished';
      },
    });
    const id = await q.publish('work');
    // The database's clock before the drain, to the millisecond as a Date reads it: the report's time is past it.
    const before = (await sql<{ t: string }>(`select date_trunc('milliseconds', clock_timestamp())::text as t`))[0]!.t;
    const drained = q.drain(10, deadline());
    await until(async () => reported.length === 1, 'the first report');
    expect(reported).toEqual([true]);

    const running = await q.getJob(id);
    expect(running).toMatchObject({ state: 'running', attempts: 1,
                                    progress: { value: { done: 40, total: 100 }, attempt: 1, at: expect.any(Date) } });
    // A real time, parsed: between the database's clock before the drain and now (not a bound a loaded machine nears).
    expect(await sql(`select $1::timestamptz between $2::timestamptz and clock_timestamp() as within`,
                     [running!.progress!.at.toISOString(), before])).toEqual([{ within: true }]);
    const app = createApp({ queue: q, token: TOKEN });
    const res = await app.request(`/jobs/${id}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ job: { id, state: 'running', progress: { value: { done: 40, total: 100 }, attempt: 1 } } });
    expect(await sql(`select progress->'value' as v from jobs.all where job_id = $1`, [id])).toEqual([{ v: { done: 40, total: 100 } }]);

    g.open();
    expect(await drained).toMatchObject({ succeeded: 1 });
    expect(await q.getJob(id)).toMatchObject({ state: 'success', result: 'finished', progress: null });
    // History keeps no progress column at all: the result covers the end.
    expect(await sql(`select count(*)::int as n from information_schema.columns
                      where table_schema = 'jobs' and table_name = 'job' and column_name = 'progress'`)).toEqual([{ n: 0 }]);
  });

  it('from a delivery its timeout already nacked is refused (false) and not shown; the retry sees the old attempt\'s', async () => {
    const answers: boolean[] = [];
    const handlerEnd = gate(); // the drain does not wait for a handler past its timeout
    const q = queueWith({
      slow: async (_b: unknown, ctx: JobContext) => {
        answers.push(await ctx.progress({ step: 1 }));
        await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
        // Wait for the drain's nack of this delivery to reach the database.
        await until(async () => (await sql(`select lease_until from jobs.job_queue where job_id = $1`, [ctx.job.id]))[0]?.lease_until === null,
                    'the nack');
        answers.push(await ctx.progress({ step: 2 }));
        handlerEnd.open();
        return 'too late';
      },
    });
    // 2 s, not 0.5 s: a claim answered after the job's timer ended (0.45 s on, a loaded machine's round trip)
    // nacks it unstarted (handler-end.ts), its handler never run.
    const id = await q.publish('slow', null, { timeoutSeconds: 2, maxRetries: 1 });
    const report = await q.drain(10, deadline());
    expect(report).toMatchObject({ retried: 1 });
    await handlerEnd.opened;
    expect(answers).toEqual([true, false]);
    const waiting = await q.getJob(id);
    // The failed attempt's progress stays, tagged with its attempt; the stale report changed nothing.
    expect(waiting).toMatchObject({ attempts: 1, progress: { value: { step: 1 }, attempt: 1 } });
    expect(waiting!.error).toMatch(/timed out/);
  });

  it('jobs.set_progress matches the delivery: job, attempt, a lease, and the worker when given', async () => {
    const [job] = await sql<{ job_id: string; attempt: number }>(
      `select p as job_id, c.attempt from jobs.publish('x') p, jobs.consume(1) c`);
    const set = async (attempt: number, worker: string | null) =>
      (await sql<{ r: boolean }>(`select jobs.set_progress($1, $2, '{"n":1}', $3) as r`, [job!.job_id, attempt, worker]))[0]!.r;
    await sql(`update jobs.job_queue set worker_id = 'w1' where job_id = $1`, [job!.job_id]);
    expect(await set(job!.attempt + 1, null)).toBe(false);
    expect(await set(job!.attempt, 'w2')).toBe(false);
    expect(await sql(`select progress from jobs.job_queue where job_id = $1`, [job!.job_id])).toEqual([{ progress: null }]);
    expect(await set(job!.attempt, 'w1')).toBe(true);
    expect(await set(job!.attempt, null)).toBe(true);
    // 60,001 bytes of compact JSON (under TS's 64 KiB), which jsonb writes as 90,000: stored.
    const ones = JSON.stringify(new Array(30_000).fill(1));
    expect(ones.length).toBeLessThan(65_536);
    expect((await sql<{ r: boolean }>(`select jobs.set_progress($1, $2, $3::jsonb) as r`, [job!.job_id, job!.attempt, ones]))[0]!.r).toBe(true);
    await sql(`select jobs.release(array[$1::bigint])`, [job!.job_id]);
    expect(await set(job!.attempt - 1, null)).toBe(false); // not leased any more
    const big = await sqlErrorOf(sql, `select jobs.set_progress($1, 1, to_jsonb(repeat('x', 140000)))`, [job!.job_id]);
    expect(big).toMatchObject({ code: 'PD020', column: 'progress', message: expect.stringMatching(/^progress: must be at most 131072 bytes as jsonb text/) });
  });

  it('coalesces: 100 reports in a tight loop send 2 statements (one in flight, then the latest)', async () => {
    const counts = new Map<string, number>();
    let answers: boolean[] = [];
    const q = queueWith({
      loop: async (_b: unknown, ctx: JobContext) => {
        const sent: Promise<boolean>[] = [];
        for (let i = 1; i <= 100; i++) sent.push(ctx.progress({ i }));
        answers = await Promise.all(sent);
        return (await sql(`select progress->'value' as v from jobs.job_queue where job_id = $1`, [ctx.job.id]))[0]!.v;
      },
    }, countingDriver(counts));
    const id = await q.publish('loop');
    expect(await q.drain(10, deadline())).toMatchObject({ succeeded: 1 });
    expect(counts.get('set_progress')).toBe(2);
    expect(answers).toEqual(Array(100).fill(true));
    expect(await q.getJob(id)).toMatchObject({ result: { i: 100 } }); // the latest won
  });

  it('a transactional task reports through the drain, not its transaction: it shows while the transaction is open', async () => {
    const g = gate();
    let reported: boolean | undefined;
    const tx = defineTask('tx.work', async (_b: unknown, ctx) => {
      reported = await ctx.progress('halfway');
      await g.opened;
      return 'ok';
    }, { transactional: true });
    const q = queueWith({ tx });
    const id = await q.publish('tx.work');
    const drained = q.drain(10, deadline());
    await until(async () => reported !== undefined, 'the report');
    expect(reported).toBe(true);
    expect(await q.getJob(id)).toMatchObject({ state: 'running', progress: { value: 'halfway', attempt: 1 } });
    g.open();
    expect(await drained).toMatchObject({ succeeded: 1 });
  });

  it('refuses what is not JSON or too large with a ValidationError naming progress, at the call', async () => {
    const errors: unknown[] = [];
    const q = queueWith({
      bad: async (_b: unknown, ctx: JobContext) => {
        const cyclic: Record<string, unknown> = {};
        cyclic.self = cyclic;
        for (const value of [10n, cyclic, 'x'.repeat(70_000), { s: 'a\u0000b' }, () => 1]) {
          try {
            void ctx.progress(value);
            errors.push('no throw');
          } catch (error) {
            errors.push(error);
          }
        }
        return 'ok';
      },
    });
    await q.publish('bad');
    expect(await q.drain(10, deadline())).toMatchObject({ succeeded: 1 });
    expect(errors).toHaveLength(5);
    for (const e of errors) expect(e).toBeInstanceOf(ValidationError);
    expect(errors.map((e) => (e as ValidationError).field)).toEqual(Array(5).fill('progress'));
    expect((errors[2] as Error).message).toMatch(/progress: must be at most 65536 bytes as JSON/);
    expect((errors[3] as Error).message).toMatch(/progress: must not contain \\u0000/);
  });

  it('a worker role may report progress (jobs.create_roles grants set_progress)', async () => {
    const prefix = `p${Date.now().toString(36)}`;
    await migrate(db.driver, { roles: prefix });
    const [job] = await sql<{ id: string }>(`select p::text as id from jobs.publish('x') p, jobs.consume(1)`);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      await client.query('begin');
      await client.query(`set local role ${prefix}_worker`);
      const { rows } = await client.query(`select jobs.set_progress($1, 1, '1') as r`, [job!.id]);
      expect(rows).toEqual([{ r: true }]);
      // 0031 copied create_roles: the worker keeps 0030's grant beside its own.
      const { rows: kept } = await client.query(
        `select has_function_privilege($1, 'jobs.take_token(text, integer, double precision)', 'execute') as ok`, [`${prefix}_worker`]);
      expect(kept).toEqual([{ ok: true }]);
    } finally {
      await client.query('rollback');
      await client.end();
    }
  });
});
