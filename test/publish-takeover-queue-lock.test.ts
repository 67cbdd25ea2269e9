// A replace publish that locks its holder's row and then needs a bounded
// queue's lock (it moves the waiting holder into that queue), against a publish into that queue depending on
// the holder (it holds the queue's lock from jobs.admit, then locks its
// dependency's row, FOR KEY SHARE). Forced with no timing: a session holds the
// holder's row, each publish waits until it is seen waiting for a lock, then
// the row is let go: the replace gets it first (it queued first).
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb, idOf } from './support/db.js';
import { doneOrBlocked, lockSessions, outcome } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);
const id = idOf(sql);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
  await sql(`select jobs.create_queue('bq', max_size => 100) where not exists (select from jobs.queue where name = 'bq')`);
});

describe("a takeover holding its holder's row and a publish depending on the holder, into a bounded queue", () => {
  // A waiting holder moved into the bounded queue: it needs room there.
  const takeovers = {
    'replace moving a waiting job': { running: false, publish: `select jobs.publish('r', queue => 'bq', dedupe_key => 'dk', dedupe_mode => 'replace') as id` },
  };
  for (const [how, { running, publish }] of Object.entries(takeovers)) {
    it(`${how}: both publishes commit`, async () => {
      const h = await id(`jobs.publish('h', dedupe_key => 'dk')`);
      if (running) expect((await sql(`select job_id::text as id from jobs.consume(1)`)).map((r) => r.id)).toEqual([h]);
      const [rowHolder, takeover, dependant] = [await session(), await session(), await session()];
      await rowHolder.query('begin');
      await rowHolder.query(`select 1 from jobs.job_queue where job_id = $1 for update`, [h]);
      await takeover.query('begin');
      const taken = outcome(takeover.query(publish));
      await doneOrBlocked(sql, takeover, taken);
      await dependant.query('begin');
      const depending = outcome(dependant.query(`select jobs.publish('d', queue => 'bq', depends_on => array[$1::bigint]) as id`, [h]));
      await doneOrBlocked(sql, dependant, depending);
      await rowHolder.query('commit');

      const r1 = await taken;
      await takeover.query(typeof r1 === 'string' ? 'rollback' : 'commit');
      const r2 = await depending;
      await dependant.query(typeof r2 === 'string' ? 'rollback' : 'commit');
      expect([typeof r1 === 'string' ? r1 : 'published', typeof r2 === 'string' ? r2 : 'published'])
        .toEqual(['published', 'published']); // 40P01 on one side without the fix
    });
  }
});
