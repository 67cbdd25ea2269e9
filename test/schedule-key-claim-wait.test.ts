// A drain's claim publishing a schedule's keyed tick must not wait on
// another transaction (README "Dedupe key": "A claim waits on no lock of the
// key"). A keep tick (and a replace tick whose key no job holds yet) inserts
// its job; an uncommitted publish of the same key in another transaction
// makes that insert wait for it (the unique index), for as long as that
// transaction stays open, and can close a cycle (40P01). On a real PostgreSQL.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { minute, T0 } from './support/schedule-clock.js';

const db = await testDb();
const sql = db.sql;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
});

/** The sessions of this file's database waiting for a lock `holder` holds. Not every session waiting on a
 * lock: the server is shared with the other test files, whose claims wait too (counted, the poll passed
 * before this claim had begun, and the app committed under it: n 2, not 1, at load 12). */
async function waitingFor(holder: pg.Client): Promise<number> {
  const pid = (await holder.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
  return (await sql<{ n: number }>(`select count(*)::int as n from pg_stat_activity
    where datname = current_database() and $1::int = any(pg_blocking_pids(pid))`, [pid]))[0]!.n;
}

async function sessions<T>(fn: (open: pg.Client, claim: pg.Client) => Promise<T>): Promise<T> {
  const open = new pg.Client({ connectionString: db.url });
  const claim = new pg.Client({ connectionString: db.url });
  await Promise.all([open.connect(), claim.connect()]);
  try {
    // A bound, so that a wait fails the tick (recorded in last_error) rather than the test hanging.
    await claim.query(`set lock_timeout = '3s'`);
    // A tick's wait for a bounded queue's lock as long as the test needs (past jobs.tick_wait_bound's 500 ms).
    await claim.query(`set pgdrain.tick_wait_ms = 60000`);
    return await fn(open, claim);
  } finally {
    await open.end();
    await claim.end();
  }
}

describe("a keyed tick's claim and an uncommitted publish of the key", () => {
  for (const mode of ['keep', 'replace'] as const) {
    it(`${mode}: the tick stays due, the claim waits for nothing`, async () => {
      await sql(`select jobs.schedule('digest', '*/10 * * * *', 'mail.digest', dedupe_key => 'digest:all',
                 dedupe_mode => $2, now => $1)`, [T0, mode]);
      await sessions(async (open, claim) => {
        await open.query('begin');
        await open.query(`select jobs.publish('mail.digest', '{"by":"app"}', dedupe_key => 'digest:all')`);
        expect((await claim.query(`select jobs.publish_due_schedules($1) as n`, [minute(10)])).rows).toEqual([{ n: 0 }]);
        expect(await sql(`select next_run_at, last_run_at, last_error from jobs.recurring`))
          .toEqual([{ next_run_at: new Date(minute(10)), last_run_at: null, last_error: null }]);
        await open.query('commit');
      });
    });
  }

  it('no deadlock with an app transaction that publishes the key, then a serial key an earlier tick of the claim took', async () => {
    await sql(`select jobs.schedule('a', '*/10 * * * *', 'a.t', serial_key => 's', now => $1)`, [T0]);
    await sql(`select jobs.schedule('b', '*/10 * * * *', 'b.t', dedupe_key => 'k', now => $1)`, [T0]);
    // b after a in the claim's order.
    await sql(`update jobs.recurring set next_run_at = next_run_at + interval '1 second' where name = 'b'`);
    await sessions(async (open, claim) => {
      await claim.query(`set lock_timeout = 0`);
      await open.query('begin');
      await open.query(`select jobs.publish('b.t', '{"by":"app"}', dedupe_key => 'k')`);
      let answered = false;
      const claimed = claim.query(`select jobs.publish_due_schedules($1) as n`, [minute(11)]).finally(() => (answered = true));
      // Until the claim has answered, or waits on a lock (the insert of b's tick, before this change).
      await expect.poll(async () => answered || (await waitingFor(open)) === 1, { timeout: 10_000 }).toBe(true);
      await open.query(`select jobs.publish('a.t', '{"by":"app"}', serial_key => 's')`);
      await open.query('commit');
      expect((await claimed).rows).toEqual([{ n: 1 }]);
      // a published; b, whose key the app's transaction held, still due at its tick, and nothing recorded as failed.
      expect(await sql(`select name, next_run_at, last_error from jobs.recurring order by name`))
        .toEqual([{ name: 'a', next_run_at: new Date(minute(20)), last_error: null },
                  { name: 'b', next_run_at: new Date(Date.parse(minute(10)) + 1000), last_error: null }]);
    });
  });
});

describe("an overlap 'skip' tick's claim and an uncommitted publish of the schedule's own key", () => {
  // Its jobs carry dedupe key pgdrain:schedule:<name>, which a job published
  // by hand may carry to hold its ticks off (README "Overlap"): the same wait.
  it('the tick stays due, the claim waits for nothing; once that job is committed the tick is skipped', async () => {
    await sql(`select jobs.schedule('nightly', '*/10 * * * *', 'night.run', runner => 'drains', overlap => 'skip', now => $1)`, [T0]);
    await sessions(async (open, claim) => {
      await open.query('begin');
      await open.query(`select jobs.publish('night.run', '{"by":"hand"}', dedupe_key => 'pgdrain:schedule:nightly')`);
      expect((await claim.query(`select jobs.publish_due_schedules($1) as n`, [minute(10)])).rows).toEqual([{ n: 0 }]);
      expect(await sql(`select next_run_at, last_run_at, skipped_ticks::int, last_error from jobs.recurring`))
        .toEqual([{ next_run_at: new Date(minute(10)), last_run_at: null, skipped_ticks: 0, last_error: null }]);
      await open.query('commit');
      // The job by hand is active: the tick publishes nothing, counted as skipped.
      expect((await claim.query(`select jobs.publish_due_schedules($1) as n`, [minute(10)])).rows).toEqual([{ n: 0 }]);
      expect(await sql(`select next_run_at, skipped_ticks::int, last_error from jobs.recurring`))
        .toEqual([{ next_run_at: new Date(minute(20)), skipped_ticks: 1, last_error: null }]);
      expect(await sql(`select body from jobs.job_queue`)).toEqual([{ body: { by: 'hand' } }]);
    });
  });
});

describe("an unkeyed tick into a bounded queue and an app transaction that published to it", () => {
  // Such a tick waits for the queue's publishers' lock (jobs.admit) as any publish does: left due at once
  // instead, it was never published while publishers held that lock back to back (a starved schedule).
  it('the claim waits for that transaction and publishes the tick once it commits', async () => {
    await sql(`select jobs.create_queue('capped', max_size => 100)`);
    try {
      await sql(`select jobs.schedule('sweep', '*/10 * * * *', 'sweep.run', queue => 'capped', now => $1)`, [T0]);
      await sessions(async (open, claim) => {
        await claim.query(`set lock_timeout = 0`);
        await open.query('begin');
        await open.query(`select jobs.publish('sweep.run', '{"by":"app"}', queue => 'capped')`);
        let answered = false;
        const claimed = claim.query(`select jobs.publish_due_schedules($1) as n`, [minute(10)]).finally(() => (answered = true));
        // Until the claim waits on the app's lock (or has answered: then it did not wait, and the tick is left due).
        await expect.poll(async () => answered || (await waitingFor(open)) === 1, { timeout: 10_000 }).toBe(true);
        await open.query('commit');
        expect((await claimed).rows).toEqual([{ n: 1 }]);
        expect(await sql(`select next_run_at, last_error from jobs.recurring`))
          .toEqual([{ next_run_at: new Date(minute(20)), last_error: null }]);
      });
    } finally {
      await sql(`truncate jobs.job_queue, jobs.job, jobs.recurring`);
      await sql(`select jobs.delete_queue('capped')`);
    }
  });
});

describe("a claim's unkeyed tick into a bounded queue, after a serial-key tick of the same claim", () => {
  // The claim holds the serial key its earlier tick took while it waits for the bounded queue's lock; an app
  // transaction holding that queue's lock (it published to it) that publishes with that serial key closes a
  // cycle. The app waited first, so it is the one PostgreSQL's deadlock check picks (40P01): an app
  // transaction fails because a drain claimed. (The claim's longer deadlock_timeout only keeps the machine's
  // scheduling out of which check runs first: with equal ones the first to wait checks first.)
  it("an app transaction that published to the queue, then publishes the serial key, does not deadlock", async () => {
    await sql(`select jobs.create_queue('capped', max_size => 100)`);
    await sql(`select jobs.create_queue('capped2', max_size => 100)`);
    const other = new pg.Client({ connectionString: db.url });
    await other.connect();
    try {
      await sql(`select jobs.schedule('a', '*/10 * * * *', 'a.t', serial_key => 's', now => $1)`, [T0]);
      await sql(`select jobs.schedule('m', '*/10 * * * *', 'm.t', queue => 'capped2', now => $1)`, [T0]);
      await sql(`select jobs.schedule('b', '*/10 * * * *', 'b.t', queue => 'capped', now => $1)`, [T0]);
      // The claim's order: a, m, b.
      await sql(`update jobs.recurring set next_run_at = next_run_at + interval '1 second' where name = 'm'`);
      await sql(`update jobs.recurring set next_run_at = next_run_at + interval '2 seconds' where name = 'b'`);
      await sessions(async (open, claim) => {
        await claim.query(`set lock_timeout = 0`);
        await claim.query(`set deadlock_timeout = '30s'`);
        await open.query(`set deadlock_timeout = '2s'`);
        const waiting = async () => (await sql<{ n: number }>(`select count(*)::int as n from pg_stat_activity
          where wait_event_type = 'Lock' and datname = current_database()`))[0]!.n;
        await open.query('begin');
        await open.query(`select jobs.publish('b.t', '{"by":"app"}', queue => 'capped')`);
        await other.query('begin');
        await other.query(`select jobs.publish('m.t', '{"by":"other"}', queue => 'capped2')`);
        let answered = false;
        const claimed = claim.query(`select jobs.publish_due_schedules($1) as n`, [minute(11)]).finally(() => (answered = true));
        claimed.catch(() => {});
        // Until the claim has published a (serial key s) and waits for capped2's lock at m, or has answered.
        await expect.poll(async () => answered || (await waiting()) === 1, { timeout: 10_000 }).toBe(true);
        let settled = false;
        const published = open.query(`select jobs.publish('a.t', '{"by":"app"}', serial_key => 's')`)
          .then(() => 'published', (e: { code?: string }) => e.code).finally(() => (settled = true));
        // Until the app's publish waits for the claim's key (or has answered).
        await expect.poll(async () => settled || (answered && (await waiting()) === 0) || (await waiting()) === 2,
          { timeout: 10_000 }).toBe(true);
        // The claim goes on to b.
        await other.query('commit');
        expect(await published).toBe('published');
        await open.query('commit');
        await claimed;
        // The claim waited for capped2's lock before it locked any row or took s (m is the oldest due tick
        // into a bounded queue): what it left due (a tick whose lock was not free at once), the next claim
        // publishes with nothing in the way. Each tick once.
        await claim.query(`select jobs.publish_due_schedules($1) as n`, [minute(11)]);
        expect(await sql(`select name, last_run_at from jobs.recurring order by name`)).toEqual([
          { name: 'a', last_run_at: new Date(minute(10)) }, { name: 'b', last_run_at: new Date(Date.parse(minute(10)) + 2000) },
          { name: 'm', last_run_at: new Date(Date.parse(minute(10)) + 1000) }]);
        expect(await sql(`select task, count(*)::int as n from jobs.job_queue where body->>'by' is null group by task order by task`))
          .toEqual([{ task: 'a.t', n: 1 }, { task: 'b.t', n: 1 }, { task: 'm.t', n: 1 }]);
        expect(await sql(`select name, next_run_at, last_error from jobs.recurring order by name`))
          .toEqual(['a', 'b', 'm'].map((name) => ({ name, next_run_at: new Date(minute(20)), last_error: null })));
      });
    } finally {
      await other.end();
      await sql(`truncate jobs.job_queue, jobs.job, jobs.recurring`);
      await sql(`select jobs.delete_queue('capped')`);
      await sql(`select jobs.delete_queue('capped2')`);
    }
  });
});

describe("a drain's claim that carries a settle, and a due tick into a bounded queue an app transaction holds", () => {
  // The claim publishes due ticks before it settles the outcomes it carries: waiting there for an app's open
  // transaction, it held back acks of jobs that had finished, whose leases then passed; another drain's
  // claim gave them back (an attempt spent) and they ran again.
  it('the acks it carries are applied without waiting: the jobs do not run again', async () => {
    await sql(`select jobs.create_queue('capped', max_size => 100)`);
    try {
      await sql(`select jobs.schedule('sweep', '*/10 * * * *', 'sweep.run', queue => 'capped', now => $1)`, [T0]);
      const { id } = (await sql<{ id: string }>(`select jobs.publish('work', '{}', timeout_seconds => 30, now => $1)::text as id`, [minute(1)]))[0]!;
      const first = (await sql<{ c: { jobs: { id: string } } }>(`select jobs.claim_json(1, now => $1) as c`, [minute(1)]))[0]!.c;
      expect(first.jobs.id).toBe(id);
      await sessions(async (open, claim) => {
        await claim.query(`set lock_timeout = 0`);
        await open.query('begin');
        await open.query(`select jobs.publish('sweep.run', '{"by":"app"}', queue => 'capped')`);
        // The handler finished at minute 1; its drain settles the ack with its next claim, when the tick is due.
        let answered = false;
        const acked = claim.query(`select jobs.claim_json(1, now => $1, ids => array[$2::bigint], attempts => array[1],
          outcomes => array['ack']) as c`, [minute(10), id]).finally(() => (answered = true));
        await expect.poll(async () => answered || (await waitingFor(open)) === 1, { timeout: 10_000 }).toBe(true);
        // Another drain, once the job's lease (30 s from minute 1) has passed.
        // (A drain's first claim, with nothing to settle: it may wait for the app to publish the tick.)
        let otherAnswered = false;
        const other = sql<{ c: { jobs: { id: string } | null } }>(`select jobs.claim_json(1, now => $1) as c`, [minute(11)])
          .finally(() => (otherAnswered = true));
        other.catch(() => {});
        // Until it has answered, or waits for the app with the first claim answered.
        await expect.poll(async () => otherAnswered || (answered && (await waitingFor(open)) === 1), { timeout: 10_000 }).toBe(true);
        await open.query('commit');
        await acked;
        expect((await other)[0]!.c.jobs?.id ?? null).toBeNull();
        // The tick, published by that claim with nothing to settle, once the app committed.
        expect(await sql(`select next_run_at, last_run_at, last_error from jobs.recurring`))
          .toEqual([{ next_run_at: new Date(minute(20)), last_run_at: new Date(minute(10)), last_error: null }]);
        expect(await sql(`select status, attempts from jobs.job where job_id = $1`, [id]))
          .toEqual([{ status: 'success', attempts: 1 }]);
      });
    } finally {
      await sql(`truncate jobs.job_queue, jobs.job, jobs.recurring`);
      await sql(`select jobs.delete_queue('capped')`);
    }
  });
});
