// A bounded queue (max_size) counts its waiting jobs under its publishers'
// advisory lock (jobs.admit), but in REPEATABLE READ or SERIALIZABLE the
// count reads the transaction's snapshot: a publish committed after it was
// not counted, and the queue overfilled (max_size 1: 2 waiting). Every
// admit that adds jobs to a bounded queue now writes its row of
// jobs.queue_admits under that lock, so such an admit fails with 40001
// (nothing written; retried in a new transaction it counts the publish).
// Real sessions on a real PostgreSQL.
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { blocked, doneOrBlocked, lockSessions, outcome, STALE_ROW } from './support/lock-sessions.js';
import { minute, T0 } from './support/schedule-clock.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);
const waiting = async () => (await sql<{ n: number }>(
  `select count(*)::int as n from jobs.job_queue where queue = 'capped' and lease_until is null`))[0]!.n;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency, jobs.recurring, jobs.tick_miss, jobs.subscription');
  await sql(`select jobs.create_queue('capped', max_size => 1)`);
  await sql(`select jobs.create_queue('other')`);
});

/** A dead letter of 'capped' (published there, failed for good), for a redrive back into it. */
async function deadLetter(): Promise<void> {
  const { id } = (await sql<{ id: string }>(`select jobs.publish('dead.run', queue => 'capped', max_retries => 0)::text as id`))[0]!;
  await sql(`select jobs.fail(array[$1::bigint], 'boom')`, [id]);
}

// Each adds one job to 'capped' (one more would pass max_size 1).
const adds: [string, () => Promise<void>, string][] = [
  ['jobs.publish', async () => {}, `select jobs.publish('late.run', queue => 'capped')`],
  ['jobs.publish_bulk', async () => {},
   `select jobs.publish_bulk(array[row('late.run', null, null, null, null, null)]::jobs.bulk_job[], queue => 'capped')`],
  ['jobs.publish_bulk with dedupe keys (publish_keyed)', async () => {},
   `select jobs.publish_arrays(array['late.run'], queue => 'capped', dedupe_keys => array['late'])`],
  ['jobs.publish_event', async () => { await sql(`select jobs.subscribe('signed_up', 'capped', 'late.run')`); },
   `select jobs.publish_event('signed_up')`],
  ['jobs.redrive', deadLetter, `select jobs.redrive(queue => 'capped')`],
  ["a replace moving a waiting job into the queue", async () => {
    await sql(`select jobs.publish('moved.run', queue => 'other', dedupe_key => 'm')`);
  }, `select jobs.publish('moved.run', queue => 'capped', dedupe_key => 'm', dedupe_mode => 'replace')`],
];

for (const level of ['repeatable read', 'serializable']) {
  describe(`in ${level}`, () => {
    for (const [name, setUp, call] of adds) {
      it(`${name}, its snapshot older than a publish committed since: 40001, the queue not overfilled`, async () => {
        await setUp();
        const app = await session();
        await app.query(`begin isolation level ${level}`);
        await app.query('select 1 from jobs.queue limit 1');  // its snapshot: 'capped' empty
        await sql(`select jobs.publish('first.run', queue => 'capped')`);  // a READ COMMITTED publish, committed
        const answer = await outcome(app.query(call));
        await app.query('rollback');
        // Unfixed: the call succeeded (its count missed the publish), 2 waiting.
        expect(answer).toBe(STALE_ROW);
        expect(await waiting()).toBe(1);
      });
    }

    it('a publisher in flight when the admit waits for its lock: 40001 once it commits', async () => {
      const [app, other] = [await session(), await session()];
      await other.query(`begin isolation level ${level}`);
      await app.query(`begin isolation level ${level}`);
      await app.query('select 1 from jobs.queue limit 1');  // its snapshot
      await other.query(`select jobs.publish('first.run', queue => 'capped')`);
      const answer = outcome(app.query(`select jobs.publish('late.run', queue => 'capped')`));
      await blocked(sql, app);  // the queue's publishers' lock
      await other.query('commit');
      const got = await answer;
      await app.query('rollback');
      // SERIALIZABLE: SSI fails its insert (the count read the jobs' index) before the jobs.queue_admits write.
      expect(got).toBe(level === 'serializable'
        ? 'error 40001 undefined: could not serialize access due to read/write dependencies among transactions' : STALE_ROW);
      expect(await waiting()).toBe(1);
    });

    it('retried in a new transaction, the admit counts the publish: PD010', async () => {
      const app = await session();
      await app.query(`begin isolation level ${level}`);
      await app.query('select 1 from jobs.queue limit 1');
      await sql(`select jobs.publish('first.run', queue => 'capped')`);
      const first = await outcome(app.query(`select jobs.publish('late.run', queue => 'capped')`));
      await app.query('rollback');
      await app.query(`begin isolation level ${level}`);
      const again = await outcome(app.query(`select jobs.publish('late.run', queue => 'capped')`));
      await app.query('rollback');
      expect(first).toBe(STALE_ROW);
      expect(again).toMatch(/^error PD010 queue: queue: queue 'capped' is full/);
    });

    it('a publish committed before the snapshot is counted (PD010), and an admit within room passes', async () => {
      await sql(`select jobs.create_queue('capped', max_size => 2)`);
      await sql(`select jobs.publish('first.run', queue => 'capped')`);
      const app = await session();
      await app.query(`begin isolation level ${level}`);
      const second = await outcome(app.query(`select jobs.publish('second.run', queue => 'capped') is not null as ok`));
      const third = await outcome(app.query(`select jobs.publish('third.run', queue => 'capped')`));
      await app.query('rollback');
      expect(second).toEqual([{ ok: true }]);
      expect(third).toMatch(/^error PD010 queue: queue: queue 'capped' is full/);
    });

    it('jobs ended since the snapshot still count: refused (PD010), and admitted in a new transaction', async () => {
      await sql(`select jobs.publish('first.run', queue => 'capped')`);
      const app = await session();
      await app.query(`begin isolation level ${level}`);
      await app.query('select 1 from jobs.queue limit 1');  // its snapshot: 1 waiting
      await sql(`select jobs.ack(array(select job_id from jobs.consume(1, queue => 'capped')))`);  // 0 waiting, committed
      const refused = await outcome(app.query(`select jobs.publish('late.run', queue => 'capped')`));
      await app.query('rollback');
      await app.query(`begin isolation level ${level}`);
      const admitted = await outcome(app.query(`select jobs.publish('late.run', queue => 'capped') is not null as ok`));
      await app.query('commit');
      expect(refused).toMatch(/^error PD010 queue: queue: queue 'capped' is full: 1 waiting job \+ 1 published > max_size 1/);
      expect(admitted).toEqual([{ ok: true }]);
      expect(await waiting()).toBe(1);
    });
  });
}

it('a publisher in repeatable read, then one in read committed, each in its own snapshot: the second waits and counts the first', async () => {
  const [rr, rc] = [await session(), await session()];
  await rr.query('begin isolation level repeatable read');
  await rr.query(`select jobs.publish('first.run', queue => 'capped')`);
  await rc.query('begin');
  const second = outcome(rc.query(`select jobs.publish('late.run', queue => 'capped')`));
  await blocked(sql, rc);
  await rr.query('commit');
  const got = await second;
  await rc.query('rollback');
  expect(got).toMatch(/^error PD010 queue: queue: queue 'capped' is full: 1 waiting job/);
  expect(await waiting()).toBe(1);
});

it('an unbounded queue writes no row of jobs.queue_admits; a bounded one writes one a call, not a job', async () => {
  const admits = async (queue: string) => (await sql<{ n: number }>(
    `select coalesce(sum(admits), 0)::int as n from jobs.queue_admits where queue = $1`, [queue]))[0]!.n;
  await sql(`select jobs.publish('a.run', queue => 'other')`);
  await sql(`select jobs.publish_arrays(array['a.run', 'b.run'], queue => 'other')`);
  expect(await sql(`select queue from jobs.queue_admits where queue = 'other'`)).toEqual([]);
  await sql(`select jobs.create_queue('capped', max_size => 10)`);
  const before = await admits('capped');
  await sql(`select jobs.publish_arrays(array['a.run', 'b.run', 'c.run'], queue => 'capped')`);
  await sql(`select jobs.publish('d.run', queue => 'capped')`);
  expect(await admits('capped')).toBe(before + 2);
  // Refused: nothing written.
  await sql(`select jobs.create_queue('capped', max_size => 4)`);
  await expect(sql(`select jobs.publish('e.run', queue => 'capped')`)).rejects.toThrow(/is full/);
  expect(await admits('capped')).toBe(before + 2);
});

for (const level of ['repeatable read', 'serializable']) {
  for (const [caller, call] of [
    ["a claim's", `select jobs.claim_json(1, 'nothing.%', null, '${minute(20)}')->>'count' as r`],
    ["jobs.maintain's", `select jobs.maintain(now => '${minute(20)}')->>'ticks' as r`],
  ] as const) {
    it(`${caller} tick in ${level} into the queue, a publish committed since its snapshot: left due, never lost, never twice`, async () => {
      await sql(`select jobs.create_queue('capped', max_size => 2)`);
      await sql(`select jobs.schedule('a', '*/10 * * * *', 'a.run', runner => 'drains', queue => 'capped', now => $1)`, [T0]);
      await sql(`select jobs.publish('first.run', queue => 'capped')`);
      const app = await session();
      await app.query(`begin isolation level ${level}`);
      await app.query('select 1 from jobs.queue limit 1');  // its snapshot: 1 waiting
      await sql(`select jobs.publish('second.run', queue => 'capped')`);  // 2 waiting, committed
      const answer = await outcome(app.query(call));
      await app.query('commit');
      // Unfixed: the tick was published (its count missed second.run), 3 waiting.
      expect(answer).toEqual([{ r: '0' }]);
      expect(await waiting()).toBe(2);
      expect(await sql(`select next_run_at, last_error from jobs.recurring`))
        .toEqual([{ next_run_at: new Date(minute(10)), last_error: null }]);
      // Room made (a job done), the next call publishes the tick, once.
      await sql(`select jobs.ack(array(select job_id from jobs.consume(1, queue => 'capped')))`);
      expect(await sql(`select jobs.claim_json(1, 'nothing.%', null, '${minute(20)}')->>'count' as r`)).toEqual([{ r: '0' }]);
      expect(await sql(`select task, scheduled_at from jobs.job_queue where task = 'a.run'`))
        .toEqual([{ task: 'a.run', scheduled_at: new Date(minute(10)) }]);
      expect(await sql(`select next_run_at, last_error from jobs.recurring`))
        .toEqual([{ next_run_at: new Date(minute(30)), last_error: null }]);
    });
  }
}

describe('lock order with the queue row (no deadlock)', () => {
  for (const level of ['read committed', 'repeatable read']) {
    it(`a publisher in ${level} holding the queue's lock, and jobs.delete_queue waiting for it: the publisher goes on, the delete refuses`, async () => {
      await sql(`select jobs.create_queue('capped', max_size => 2)`);
      const [publisher, admin] = [await session(), await session()];
      await publisher.query(`begin isolation level ${level}`);
      await publisher.query(`select jobs.publish('first.run', queue => 'capped')`);
      const deleted = outcome(admin.query(`select jobs.delete_queue('capped')`));
      // It waits for the publisher: the writers' lock, its row FOR UPDATE taken
      // (READ COMMITTED), or that row, which the publisher key-shares.
      await blocked(sql, admin);
      // The same queue again: its lock and its admits' row are the publisher's own.
      const again = await outcome(publisher.query(`select jobs.publish('second.run', queue => 'capped') is not null as ok`));
      await publisher.query('commit');
      expect(again).toEqual([{ ok: true }]);
      expect(await deleted).toMatch(/^error PD009 name: .*still has 2 waiting and 0 running jobs/);
    });
  }

  it('a delete that goes first: a publisher waiting for it finds no queue, and the admits row goes with the queue', async () => {
    await sql(`select jobs.publish('first.run', queue => 'capped')`);
    await sql(`select jobs.purge_queue('capped')`);
    expect(await sql(`select queue from jobs.queue_admits`)).toEqual([{ queue: 'capped' }]);
    const [admin, publisher] = [await session(), await session()];
    await admin.query('begin');
    expect(await admin.query(`select jobs.delete_queue('capped') as d`).then((r) => r.rows)).toEqual([{ d: true }]);
    const published = outcome(publisher.query(`select jobs.publish('late.run', queue => 'capped')`));
    await blocked(sql, publisher);
    await admin.query('commit');
    expect(await published).toMatch(/^error PD009 queue: .*no queue named 'capped'/);
    expect(await sql(`select queue from jobs.queue_admits`)).toEqual([]);
  });

  for (const change of [`jobs.create_queue('capped', max_size => 3)`, `jobs.pause_queue('capped')`]) {
    it(`an app transaction that changed the queue (${change.split('(')[0]}), then publishes to it, while another publishes: no deadlock`, async () => {
      await sql(`select jobs.create_queue('capped', max_size => 3)`);
      const [app, other] = [await session(), await session()];
      await app.query('begin');
      await app.query(`select ${change}`);  // the queue's row written, held to commit
      await other.query('begin');
      const first = outcome(other.query(`select jobs.publish('first.run', queue => 'capped') is not null as ok`));
      await doneOrBlocked(sql, other, first);
      const own = outcome(app.query(`select jobs.publish('own.run', queue => 'capped') is not null as ok`));
      await doneOrBlocked(sql, app, own);
      await other.query('commit');
      const mine = await own;
      await app.query('commit');
      // With the admits on the queue's row: the other waited for that row holding the queue's lock, the app for the lock: 40P01.
      expect([await first, mine]).toEqual([[{ ok: true }], [{ ok: true }]]);
      expect(await waiting()).toBe(2);
    });
  }
});
