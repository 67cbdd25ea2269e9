// A heartbeat's beat that did not extend the lease: it came while a
// transactional handler still waited for its connection (no statement), or
// its statement failed. The next beat was set a whole beat on (beatDelay of
// heartbeatSeconds), past the timer's end when the lease held is the job's
// timeout and heartbeatSeconds is longer: the job timed out with no beat
// tried again. It now comes within what the timer leaves (src/timeouts.ts
// nextBeat). Over a real PostgreSQL: the slow connection is a full pool, the
// failed beat a jobs.extend_lease that raises once. No timing assertions:
// waits for the lease (or the job's end) in jobs.job_queue.
import { afterAll, beforeEach, expect, it, vi } from 'vitest';
import { createQueue, defineTask, type JobContext } from '../src/index.js';
import { testDb } from './support/db.js';
import { fullPool } from './support/full-pool.js';

const deadline = () => Date.now() + 120_000;
const until = (check: () => Promise<void> | void) => vi.waitFor(check, { timeout: 30_000, interval: 20 });

/** A promise the test resolves: what the handlers wait on. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

/** Polls until the job's lease moved past its first end (started_at + timeout), or it left job_queue. */
async function extendedOrGone(sql: (text: string, params?: unknown[]) => Promise<unknown[]>, id: string): Promise<'extended' | 'gone'> {
  let seen: 'extended' | 'gone' | undefined;
  await until(async () => {
    const [row] = await sql(`select lease_until > started_at + make_interval(secs => timeout::float8) as extended
                               from jobs.job_queue where job_id = $1`, [id]) as { extended: boolean | null }[];
    seen = row === undefined ? 'gone' : row.extended ? 'extended' : undefined;
    expect(seen).toBeDefined();
  });
  return seen!;
}

const waiting = (opened: Promise<void>) => async (_body: unknown, ctx: JobContext) => {
  await opened;
  return { aborted: ctx.signal.aborted };
};

// A pool of 2: one connection for the handlers' transactions, which `long` holds; the drain's own statements and beats
// take the other.
const full = await fullPool({}, { max: 2 });
afterAll(() => full.driver.close());

it('a beat that came while its transactional handler waited for a connection is tried again before its timer ends', async () => {
  // timeout 10 s, heartbeat 60 s: its timer ends at 9.5 s, its first beat at 4.5 s (beatDelay of its timeout), skipped
  // while it waits. Unfixed, the next came 29.5 s on: its handler began at ~6 s, ran unextended and timed out at 9.5 s.
  const { opened, open } = gate();
  const beating = defineTask('beating', waiting(opened), { transactional: true, heartbeatSeconds: 60 });
  const queue = createQueue({ driver: full.driver, tasks: { ...full.tasks, beating } });
  await full.db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 60, priority => 1)`);
  const id = await queue.publish('beating', null, { timeoutSeconds: 10, maxRetries: 0 });
  const drained = queue.drain(10, deadline(), { concurrency: 2 });
  try {
    await until(() => expect(full.releases).toHaveLength(1));
    // Past its first beat's time (4.5 s after its claim), before its release ahead of its end (9 s): long lets go at 6 s.
    await until(async () => expect(await full.db.sql(`select 1 from jobs.job_queue where job_id = $1
                                                        and now() >= started_at + interval '6 seconds'`, [id])).toHaveLength(1));
    full.releases.shift()!();
    expect(await extendedOrGone(full.db.sql, id), 'nacked as timed out before any beat extended its lease').toBe('extended');
  } finally {
    for (const release of full.releases.splice(0)) release();
    open();
  }
  expect(await drained).toMatchObject({ claimed: 2, succeeded: 2, failed: 0, released: 0 });
  expect(await queue.getJob(id)).toMatchObject({ state: 'success', attempts: 1, result: { aborted: false } });
});

const db = await testDb();
const sql = db.sql;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
});

it("a beat whose statement failed is tried again before its timer ends, not a whole beat on", async () => {
  // jobs.extend_lease moved to a schema of its own and wrapped by one that raises at its first call. timeout 10 s,
  // heartbeat 60 s: the first beat (4.5 s) fails; unfixed, the next came 29.5 s on, after its timer (9.5 s) had nacked it.
  const signature = 'bigint, integer, numeric, timestamptz, text';
  await sql('create schema flaky');
  await sql('create sequence flaky.calls');
  await sql(`alter function jobs.extend_lease(${signature}) set schema flaky`);
  await sql(`create function jobs.extend_lease(job_id bigint, attempt integer, seconds numeric, now timestamptz default null,
                                               worker_id text default null) returns timestamptz language plpgsql as $$
             begin
               if nextval('flaky.calls') = 1 then raise exception 'flaky: the first beat fails'; end if;
               return flaky.extend_lease(job_id, attempt, seconds, now, worker_id);
             end $$`);
  const { opened, open } = gate();
  const queue = createQueue({ driver: { ...db.driver, close: async () => {} },
                              tasks: { hb: { beating: defineTask('hb.beating', waiting(opened), { heartbeatSeconds: 60 }) } } });
  const id = await queue.publish('hb.beating', null, { timeoutSeconds: 10, maxRetries: 0 });
  const drained = queue.drain(5, deadline());
  try {
    expect(await extendedOrGone(sql, id), 'nacked as timed out before any beat extended its lease').toBe('extended');
    // The first beat failed and one after it landed.
    const [row] = await sql<{ calls: string }>(`select last_value as calls from flaky.calls`);
    expect(Number(row!.calls)).toBeGreaterThanOrEqual(2);
  } finally {
    open();
    await sql(`drop function jobs.extend_lease(${signature})`);
    await sql(`alter function flaky.extend_lease(${signature}) set schema jobs`);
    await sql('drop schema flaky cascade');
  }
  expect(await drained).toMatchObject({ claimed: 1, succeeded: 1, failed: 0 });
  expect(await queue.getJob(id)).toMatchObject({ state: 'success', attempts: 1, result: { aborted: false } });
});
