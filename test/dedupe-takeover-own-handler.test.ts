// A replace or keep_waiting publish that finds its dedupe key's running holder's
// row held (a transactional handler's progress, a lease extension) waits for the
// row. It waited holding its key's lock (736039, sql/0004), so the holder's own
// transaction, publishing with the same key and mode, waited for that lock while
// the publish waited for its row: 40P01. Now the row is waited for without the
// key's lock (jobs.await_key_holder, between tries). Forced interleavings, no
// timing: each step waits until a session is seen waiting for a lock (pg_locks).
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb, idOf } from './support/db.js';
import { blocked, lockSessions, outcome } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);
const id = idOf(sql);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency, jobs.throttle, jobs.queue_admits');
});

describe('a key-taking publish waiting for its running holder\'s row, held by the holder\'s own handler', () => {
  for (const [mode, extra, label] of [
    ['keep_waiting', '', ''], ['replace', '', ''], ['keep_waiting', `, serial_key => 's'`, ' with a serial key'],
    ['keep_waiting', `, depends_on => array[(select job_id from jobs.job_queue where task = 'c.run')]`, ' with depends_on'],
  ] as const) {
    it(`${mode}${label}: the handler publishing with the same key goes through, then the publish: no deadlock`, async () => {
      const holder = await id(`jobs.publish('a.run', dedupe_key => 'k')`);
      await sql(`select jobs.publish('c.run', scheduled_at => now() + interval '1 hour')`);  // a dependency, not claimed
      expect(await sql(`select job_id::text as id from jobs.consume(1)`)).toEqual([{ id: holder }]);
      const handler = await session();
      await handler.query('begin');
      expect((await handler.query(`select jobs.set_progress(${holder}, 1, '1') as p`)).rows).toEqual([{ p: true }]);
      const app = await session();
      await app.query('begin');
      const publish = `select jobs.publish('a.run', dedupe_key => 'k', dedupe_mode => '${mode}'${extra})::text as id`;
      const published = outcome(app.query(publish));
      await blocked(sql, app);  // for the holder's row
      // The handler's own publish: it takes the key from its job (the row is its own).
      const mine = await outcome(handler.query(publish));  // 40P01 here or in the publish before
      await handler.query('commit');
      const answer = await published;
      await app.query('commit');
      expect({ mine, answer }).toEqual({ mine: [{ id: expect.any(String) }], answer: mine });
      // The handler's job let the key go to its new one, waiting, which answered the publish (replace: rewrote it).
      expect(await sql(`select job_id::text as id from jobs.job_queue where dedupe_key = 'k'`)).toEqual(mine);
    });
  }
});
