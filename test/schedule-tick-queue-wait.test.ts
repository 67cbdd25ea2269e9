// Which claim waits for a bounded queue's publishers' lock to publish a due
// tick (jobs.publish_due_schedules, sql/0023: one at a time per queue, the
// try-lock 736045), and what the others do meanwhile. On a real PostgreSQL.
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { minute, T0 } from './support/schedule-clock.js';

const db = await testDb();
const sql = db.sql;
const clients: pg.Client[] = [];

async function session(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  // A claim here waits as long as its test needs (jobs.tick_wait_bound's 500 ms would end it first on a busy machine).
  await c.query(`set pgdrain.tick_wait_ms = 60000`);
  clients.push(c);
  return c;
}

/** How many of this database's sessions wait on a lock. */
const waiting = async () => (await sql<{ n: number }>(`select count(*)::int as n from pg_stat_activity
  where wait_event_type = 'Lock' and datname = current_database()`))[0]!.n;

/** Until p has answered or n sessions wait on a lock. */
async function answeredOrWaiting(p: Promise<unknown>, n: number): Promise<void> {
  let answered = false;
  void p.then(() => (answered = true), () => (answered = true));
  await expect.poll(async () => answered || (await waiting()) >= n, { timeout: 10_000 }).toBe(true);
}

const outcome = (p: Promise<{ rows: unknown[] }>) => p.then((r) => r.rows, (e: { code?: string }) => `error ${e.code}`);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
  await sql(`select jobs.create_queue('capped', max_size => 100)`);
  await sql(`select jobs.create_queue('capped2', max_size => 100)`);
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.end()));
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
  await sql(`select jobs.delete_queue('capped')`);
  await sql(`select jobs.delete_queue('capped2')`);
});

describe("a due tick into a second bounded queue while a claim waits for the first's", () => {
  // capped's tick is the oldest due one; its waiter waits for as long as an app transaction that published to
  // capped stays open. capped2's tick must not wait for that transaction too: a claim meanwhile waits for
  // capped2's publishers (steady, each short) and publishes it, as it did before the waiter lock.
  it("another drain's first claim waits for capped2's publisher and publishes its tick", async () => {
    await sql(`select jobs.schedule('sweep', '*/10 * * * *', 'sweep.run', queue => 'capped', now => $1)`, [T0]);
    await sql(`select jobs.schedule('sweep2', '*/10 * * * *', 'sweep2.run', queue => 'capped2', now => $1)`, [T0]);
    await sql(`update jobs.recurring set next_run_at = next_run_at + interval '1 second' where name = 'sweep2'`);
    const [long, pub, waiter, claim] = await Promise.all([session(), session(), session(), session()]);
    await long.query('begin');
    await long.query(`select jobs.publish('sweep.run', '{"by":"app"}', queue => 'capped')`);
    await pub.query('begin');
    await pub.query(`select jobs.publish('sweep2.run', '{"by":"app"}', queue => 'capped2')`);
    // The first claim waits for capped's lock (the long transaction's).
    const waited = outcome(waiter.query(`select jobs.publish_due_schedules($1) as n`, [minute(11)]));
    await answeredOrWaiting(waited, 1);
    // A second drain's first claim: capped2's publisher commits soon.
    const claimed = outcome(claim.query(`select jobs.publish_due_schedules($1) as n`, [minute(11)]));
    await answeredOrWaiting(claimed, 2);
    await pub.query('commit');
    expect(await claimed).toEqual([{ n: 1 }]);
    expect(await sql(`select name, next_run_at from jobs.recurring order by name`)).toEqual([
      { name: 'sweep', next_run_at: new Date(minute(10)) }, { name: 'sweep2', next_run_at: new Date(minute(20)) }]);
    await long.query('commit');
    expect(await waited).toEqual([{ n: 1 }]);
  });
});

describe("the claim that waits for a bounded queue's lock, and lock_timeout", () => {
  // A role's lock_timeout (common on managed databases) ends that wait: the claim must still answer (the tick
  // left due or recorded as failed), not fail the drain's claim with 55P03.
  it("a drain's first claim answers; the tick is not lost", async () => {
    await sql(`select jobs.schedule('sweep', '*/10 * * * *', 'sweep.run', queue => 'capped', now => $1)`, [T0]);
    const { id } = (await sql<{ id: string }>(`select jobs.publish('work', '{}', now => $1)::text as id`, [minute(1)]))[0]!;
    const [app, claim] = await Promise.all([session(), session()]);
    await claim.query(`set lock_timeout = '200ms'`);
    await app.query('begin');
    await app.query(`select jobs.publish('sweep.run', '{"by":"app"}', queue => 'capped')`);
    const claimed = await outcome(claim.query(`select jobs.claim_json(1, now => $1)->'jobs'->>'id' as id`, [minute(10)]));
    await app.query('commit');
    expect(claimed).toEqual([{ id }]);
    // Still due (or put off with the error recorded): the next claim publishes it.
    await sql(`select jobs.publish_due_schedules($1)`, [minute(20)]);
    expect(await sql(`select task, count(*)::int as n from jobs.job_queue where body->>'by' is null group by task order by task`))
      .toEqual([{ task: 'sweep.run', n: 1 }, { task: 'work', n: 1 }]);
  });
});

describe("the claim that waits for a bounded queue's lock, and the tick's row", () => {
  // Another claim meanwhile (one that lost the waiter lock) cannot publish that tick: it would wait behind the
  // waiter. Locking the tick's row all the same, it made the waiter skip it once it had the lock (SKIP LOCKED):
  // its wait for nothing, the tick still due; under steady claims, again and again.
  for (const other of ['first', 'settling'] as const) {
    it(`the waiter publishes the tick once the app commits, whatever another drain's ${other} claim did`, async () => {
      await sql(`select jobs.schedule('sweep', '*/10 * * * *', 'sweep.run', queue => 'capped', now => $1)`, [T0]);
      const { id } = (await sql<{ id: string }>(`select jobs.publish('work', '{}', timeout_seconds => 3600, now => $1)::text as id`,
                                                [minute(1)]))[0]!;
      await sql(`select jobs.claim_json(1, now => $1)`, [minute(1)]);
      const [app, waiter, drain] = await Promise.all([session(), session(), session()]);
      await app.query('begin');
      await app.query(`select jobs.publish('sweep.run', '{"by":"app"}', queue => 'capped')`);
      const waited = outcome(waiter.query(`select jobs.publish_due_schedules($1) as n`, [minute(10)]));
      await answeredOrWaiting(waited, 1);
      // The other drain's claim, still open when the app commits (its settle and pick take a while; or
      // jobs.maintain's retention pass after its ticks).
      await drain.query('begin');
      const carried = other === 'settling' ? `, ids => array[${id}::bigint], attempts => array[1], outcomes => array['ack']` : '';
      await drain.query(`select jobs.claim_json(1, now => $1${carried})`, [minute(10)]);
      await app.query('commit');
      const n = await waited;
      await drain.query('commit');
      expect(n).toEqual([{ n: 1 }]);
      expect(await sql(`select next_run_at, last_error from jobs.recurring`))
        .toEqual([{ next_run_at: new Date(minute(20)), last_error: null }]);
    });
  }
});

describe("a keyed tick into a bounded queue and an app transaction that published to it", () => {
  // An overlap 'skip' schedule's ticks (and a dedupe or serial key's) take only free locks in the claim's loop;
  // the wait for the queue's publishers' lock before the loop holds no key, so they can wait there as an unkeyed
  // tick does: left out of it, such a tick was never published while publishers held that lock back to back.
  for (const keyed of [`overlap => 'skip'`, `dedupe_key => 'sweep'`, `serial_key => 'sweep'`]) {
    it(`${keyed}: the claim waits for that transaction and publishes the tick once it commits`, async () => {
      await sql(`select jobs.schedule('sweep', '*/10 * * * *', 'sweep.run', queue => 'capped', ${keyed}, now => $1)`, [T0]);
      const [app, claim] = await Promise.all([session(), session()]);
      await app.query('begin');
      await app.query(`select jobs.publish('other.run', '{"by":"app"}', queue => 'capped')`);
      const claimed = outcome(claim.query(`select jobs.publish_due_schedules($1) as n`, [minute(10)]));
      await answeredOrWaiting(claimed, 1);
      await app.query('commit');
      expect(await claimed).toEqual([{ n: 1 }]);
      expect(await sql(`select next_run_at, last_error from jobs.recurring`))
        .toEqual([{ next_run_at: new Date(minute(20)), last_error: null }]);
    });
  }
});

describe("jobs.schedule changing one schedule while another's tick into a bounded queue is due", () => {
  // jobs.schedule publishes its schedule's due tick first (waiting on locks, pgdrain.tick_wait); that call goes
  // through every due schedule. Another's tick must not wait there with its row (and the changed schedule's)
  // locked: an app transaction holding that queue's lock that then changes either schedule closed a cycle.
  it('neither app transaction gets a deadlock', async () => {
    await sql(`select jobs.schedule('sweep', '*/10 * * * *', 'sweep.run', queue => 'capped', now => $1)`, [T0]);
    await sql(`select jobs.schedule('report', '*/10 * * * *', 'report.run', now => $1)`, [T0]);
    // sweep's tick first in that call's order.
    await sql(`update jobs.recurring set next_run_at = next_run_at + interval '1 second' where name = 'report'`);
    const [one, two] = await Promise.all([session(), session()]);
    for (const c of [one, two]) await c.query(`set lock_timeout = '20s'`);
    await two.query('begin');
    await two.query(`select jobs.publish('sweep.run', '{"by":"app"}', queue => 'capped')`);
    await one.query('begin');
    const changed = outcome(one.query(`select jobs.schedule('report', '*/5 * * * *', 'report.run', now => $1)`, [minute(11)]));
    await answeredOrWaiting(changed, 1);
    const pid = (await two.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
    const second = outcome(two.query(`select jobs.schedule('report', '*/5 * * * *', 'report.run', now => $1)`, [minute(11)]));
    // Until the second call answers or waits (for the first's rows, or the first for its lock).
    let answered = false;
    void second.then(() => (answered = true));
    await expect.poll(async () => answered || (await sql<{ n: number }>(`select count(*)::int as n from pg_stat_activity
      where pid = $1 and wait_event_type = 'Lock'`, [pid]))[0]!.n === 1, { timeout: 10_000 }).toBe(true);
    const first = await changed;
    await one.query(typeof first === 'string' ? 'rollback' : 'commit');
    const then = await second;
    await two.query(typeof then === 'string' ? 'rollback' : 'commit');
    expect({ first: typeof first, then: typeof then }).toEqual({ first: 'object', then: 'object' });
    // report's due tick published once; sweep's still due (or published), none failed.
    expect(await sql(`select name, last_error from jobs.recurring order by name`))
      .toEqual([{ name: 'report', last_error: null }, { name: 'sweep', last_error: null }]);
  });
});
