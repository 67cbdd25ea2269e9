// drain()'s own fault: something throwing in its loop itself, not a claim's
// error (caught around the claim) nor a handler's (its job's outcome). Hooks,
// the task lookup and a handler's batch spec are each read inside a try; what
// reaches the loop unguarded is the claim's answer. Here jobs.claim_json is
// replaced in this file's database by one that calls the real one and then
// answers null on the claim that carries an outcome (its outcomes applied,
// no job claimed): reading that answer throws a TypeError in the loop. The
// drain gives back what still runs, settles that once, then gives back what
// its claims still lease to it (the faulting claim's jobs: jobs.release_holder),
// and rejects with the fault; when that last settle fails too, its error says
// what was not recorded (`unrecorded`), and those jobs stay leased until their leases end.
import { afterEach, beforeEach, expect, it } from 'vitest';
import { createQueue, migrate, type JobContext } from '../src/index.js';
import { testDb, withClient } from './support/db.js';

const db = await testDb();
const sql = db.sql;

const CLAIM_ARGS = 'integer, text, numeric, timestamptz, text, jsonb, text, bigint[], integer[], text[], jsonb[], text[], '
  + 'timestamptz[], double precision[], jsonb[], bigint';
const SETTLE_ARGS = 'bigint[], integer[], text[], jsonb[], text[], timestamptz[], double precision[], timestamptz, text';

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
  await sql('create table if not exists public.fault_mode (break_settle boolean not null)');
  await sql('truncate public.fault_mode');
  // Moved, not renamed: its body names its arguments by its name (claim_json.ids).
  await sql('create schema if not exists real_jobs');
  await sql(`alter function jobs.claim_json(${CLAIM_ARGS}) set schema real_jobs`);
  // The real claim first (it settles what the claim carries); a claim carrying outcomes then answers null and,
  // with break_settle, takes jobs.settle_arrays away (the drain's next settle fails: function does not exist).
  await sql(`create function jobs.claim_json(n integer, pattern text, max_timeout numeric, now timestamptz, queue text,
      filter jsonb, worker_id text, ids bigint[], attempts integer[], outcomes text[], results jsonb[], errors text[],
      retry_at timestamptz[], ms double precision[], exclude jsonb[], holder bigint) returns json language plpgsql as $$
    declare
      r json := real_jobs.claim_json(n, pattern, max_timeout, now, queue, filter, worker_id, ids, attempts, outcomes,
                                    results, errors, retry_at, ms, exclude, holder);
    begin
      if ids is null then
        return r;
      end if;
      if coalesce((select f.break_settle from public.fault_mode f), false) then
        alter function jobs.settle_arrays(${SETTLE_ARGS}) set schema real_jobs;
      end if;
      return null;
    end $$`);
});

afterEach(async () => {
  await sql(`drop function jobs.claim_json(${CLAIM_ARGS})`);
  await sql(`alter function real_jobs.claim_json(${CLAIM_ARGS}) set schema jobs`);
  if ((await sql(`select to_regprocedure('real_jobs.settle_arrays(${SETTLE_ARGS})') as f`))[0]!.f !== null) {
    await sql(`alter function real_jobs.settle_arrays(${SETTLE_ARGS}) set schema jobs`);
  }
});

/** A drain of quick (ends at once: its ack rides on the next claim, the faulting one) and slow (runs until aborted). */
/** dependant: with a job that waits on quick, so that the faulting claim (quick's ack applied first) takes it. */
async function faultedDrain(dependant = false): Promise<{ error: unknown; quick: string; slow: string; slowAbortedWith: unknown;
                                                          after?: string }> {
  let slowAbortedWith: unknown;
  const queue = createQueue({
    driver: { ...db.driver, close: async () => {} },
    tasks: {
      quick: async () => 'done',
      after: async () => { throw new Error('after ran'); }, // taken only by the faulting claim: never started
      slow: (_body: unknown, ctx: JobContext) => new Promise((resolve) => ctx.signal.addEventListener('abort', () => {
        slowAbortedWith = ctx.signal.reason;
        resolve('aborted');
      }, { once: true })),
    },
  });
  const [quick, slow] = await queue.publishBulk([{ task: 'quick', body: {} }, { task: 'slow', body: {} }]) as string[];
  const after = dependant ? await queue.publish('after', {}, { dependsOn: [quick!] }) : undefined;
  // flushIntervalMs at its most: quick's ack goes with a claim, not in a settle of its own.
  const error = await queue.drain(10, Date.now() + 120_000, { workerId: 'fault-worker', flushIntervalMs: 60_000 })
    .then((report) => report, (e: unknown) => e);
  return { error, quick: quick!, slow: slow!, slowAbortedWith, after };
}

const rows = () => sql<{ id: string; status: string; leased: boolean; attempt: number | null }>(
  `select q.job_id::text as id, 'active' as status, q.lease_until is not null as leased, q.attempt from jobs.job_queue q
   union all select j.job_id::text, j.status, false, null from jobs.job j order by 1`);

it('a fault of its own loop: drain() rejects with it, the job still running is given back and settled', async () => {
  const { error, quick, slow, slowAbortedWith } = await faultedDrain();
  expect(error).toBeInstanceOf(TypeError);
  expect((error as Error).message).toMatch(/^Cannot read properties of null/);
  expect(error).not.toHaveProperty('unrecorded'); // its last settle landed
  expect(slowAbortedWith).toEqual(new Error('drain failed'));
  // quick's ack landed with the faulting claim; slow was released (not leased, its attempt given back): nothing lost.
  expect(await rows()).toEqual([
    { id: quick, status: 'success', leased: false, attempt: null },
    { id: slow, status: 'active', leased: false, attempt: 0 },
  ].sort((a, b) => (a.id < b.id ? -1 : 1)));
});

it('a fault of its own loop on a claim that took jobs: those, never started, are given back with the rest', async () => {
  const { error, quick, slow, slowAbortedWith, after } = await faultedDrain(true);
  expect(error).toBeInstanceOf(TypeError);
  expect(error).not.toHaveProperty('unrecorded');
  expect(slowAbortedWith).toEqual(new Error('drain failed'));
  // The faulting claim applied quick's ack, then leased after (its dependant) to this drain call, whose loop never read
  // that answer: after is released too (its attempt given back), not left leased to run again once its lease passed,
  // an attempt spent.
  expect(await rows()).toEqual([
    { id: quick, status: 'success', leased: false, attempt: null },
    { id: slow, status: 'active', leased: false, attempt: 0 },
    { id: after!, status: 'active', leased: false, attempt: 0 },
  ].sort((a, b) => (a.id < b.id ? -1 : 1)));
});

it("a fault of its own loop whose last settle fails: drain()'s error says what was not recorded", async () => {
  await sql('insert into public.fault_mode values (true)');
  const { error, quick, slow, slowAbortedWith } = await faultedDrain();
  expect(error).toBeInstanceOf(TypeError);
  expect((error as Error).message).toMatch(new RegExp("^Cannot read properties of null .*; 1 job's outcome was not recorded "
    + "\\(1 given back\\): the drain's last settle failed \\(function jobs\\.settle_arrays\\(.*\\) does not exist\\)\\. "
    + 'Once their leases end, .* no outcome from worker fault-worker$'));
  expect((error as { unrecorded?: unknown }).unrecorded).toEqual({ total: 1, succeeded: 0, failed: 0, released: 1 });
  expect(slowAbortedWith).toEqual(new Error('drain failed'));
  // slow's release never landed: it stays leased to the drain (attempt 1) until its lease ends, as the error says.
  expect(await rows()).toEqual([
    { id: quick, status: 'success', leased: false, attempt: null },
    { id: slow, status: 'active', leased: true, attempt: 1 },
  ].sort((a, b) => (a.id < b.id ? -1 : 1)));
});

it("jobs.release_holder gives back only that drain call's leases of that worker, and a worker role may call it", async () => {
  const prefix = `f${Date.now().toString(36)}`;
  await migrate(db.driver, { roles: prefix });
  const [ids] = await sql<{ held: string; other: string }>(
    "select jobs.publish('held', null)::text as held, jobs.publish('other', null)::text as other");
  const { held, other } = ids!;
  // Claimed one each by two drain calls (holders 42 and 43) of worker w: held first (job_id order).
  for (const holder of [42, 43]) {
    await sql(`select jobs.claim_json(1, null, null, null, 'default', null, 'w', null, null, null, null, null, null, null, null, $1)`,
              [holder]);
  }
  await withClient(db.url, async (client) => {
    await client.query('begin');
    try {
      await client.query(`set local role ${prefix}_worker`);
      const n = async (holder: number, worker: string) =>
        (await client.query(`select jobs.release_holder($1, $2) as n`, [holder, worker])).rows[0].n;
      expect(await n(42, 'x')).toBe(0); // another worker's id: its delivery is not this one's
      expect(await n(42, 'w')).toBe(1);
      expect(await n(42, 'w')).toBe(0);
    } finally {
      await client.query('commit');
    }
    await client.query('begin');
    try {
      await client.query(`set local role ${prefix}_publisher`);
      await expect(client.query('select jobs.release_holder(43, $1)', ['w'])).rejects.toMatchObject({ code: '42501' });
    } finally {
      await client.query('rollback');
    }
  });
  expect(await rows()).toEqual([
    { id: held, status: 'active', leased: false, attempt: 0 },
    { id: other, status: 'active', leased: true, attempt: 1 },
  ].sort((a, b) => (a.id < b.id ? -1 : 1)));
});
