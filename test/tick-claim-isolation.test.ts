// A claim publishes the drains' due ticks (jobs.publish_ticks locks each due
// schedule's row and moves it on). An app calling jobs.claim_json (or
// jobs.maintain) inside a REPEATABLE READ or SERIALIZABLE transaction whose
// snapshot predates another drain's tick saw that schedule still due, and
// locking its row failed the whole claim with 40001: the claim failed
// because of another schedule's state. Such a claim now publishes no tick
// (and waits for no tick's lock); the next READ COMMITTED claim or
// jobs.maintain publishes them. On a real PostgreSQL.
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { lockSessions, outcome } from './support/lock-sessions.js';
import { minute, T0 } from './support/schedule-clock.js';

const db = await testDb();
const session = lockSessions(db.url);
const due = async () => db.sql(`select name, next_run_at from jobs.recurring order by name`);

for (const level of ['repeatable read', 'serializable']) {
  for (const [caller, call] of [
    ["a claim's", `select jobs.claim_json(1, now => '${minute(20)}')->>'count' as r`],
    ["jobs.maintain's", `select jobs.maintain(now => '${minute(20)}')->>'ticks' as r`],
  ] as const) {
    it(`${caller} in ${level}, a snapshot older than another drain's tick: no serialization failure, no tick`, async () => {
      await db.sql('truncate jobs.job_queue, jobs.recurring, jobs.tick_miss');
      for (const name of ['a', 'b']) {
        await db.sql(`select jobs.schedule($1, '*/10 * * * *', $1 || '.run', runner => 'drains', now => $2)`, [name, T0]);
      }
      const [app, drain] = await Promise.all([session(), session()]);
      await app.query(`begin isolation level ${level}`);
      await app.query('select count(*) from jobs.job_queue');  // its snapshot, both ticks due
      await drain.query(`select jobs.claim_json(1, now => '${minute(20)}')`);  // publishes both, commits
      const answer = await outcome(app.query(call));
      await app.query('rollback');
      // Unfixed: error 40001 (could not serialize access due to concurrent update).
      expect(answer).toEqual([{ r: '0' }]);
    });
  }

  it(`a claim in ${level} leaves the ticks due to the next READ COMMITTED claim`, async () => {
    await db.sql('truncate jobs.job_queue, jobs.recurring, jobs.tick_miss');
    await db.sql(`select jobs.schedule('a', '*/10 * * * *', 'a.run', runner => 'drains', now => $1)`, [T0]);
    const before = await due();
    const app = await session();
    await app.query(`begin isolation level ${level}`);
    const answer = await outcome(app.query(`select jobs.claim_json(1, now => '${minute(20)}')->>'count' as r`));
    await app.query('commit');
    expect(answer).toEqual([{ r: '0' }]);
    // Unfixed: the tick was published (next_run_at at minute 30).
    expect(await due()).toEqual(before);
    expect(await db.sql(`select jobs.claim_json(1, now => '${minute(20)}')->>'count' as r`)).toEqual([{ r: '1' }]);
    expect(await due()).toEqual([{ name: 'a', next_run_at: new Date(minute(30)) }]);
  });
}
