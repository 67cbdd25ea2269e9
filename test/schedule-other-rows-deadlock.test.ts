// jobs.schedule that changes a schedule's expression publishes that
// schedule's due tick. It published every other due tick too, their rows
// locked to the app transaction's commit: an app transaction that changed
// schedule A, then published a job of serial key K, closed a cycle with
// one that held K and then changed schedule B (waiting for B's row, which
// the first held for a tick it never asked about): 40P01. Real locks, two
// sessions, on a real PostgreSQL.
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { doneOrBlocked, lockSessions, outcome, type LockSession } from './support/lock-sessions.js';
import { minute, T0 } from './support/schedule-clock.js';

const db = await testDb();
const session = lockSessions(db.url);

it("jobs.schedule for one schedule leaves another's due tick (and its row) to the drains: no deadlock over it", async () => {
  for (const name of ['a', 'b']) {
    await db.sql(`select jobs.schedule($2, '*/10 * * * *', $2 || '.run', runner => 'drains', now => $1)`, [T0, name]);  // due at minute 10
  }
  const [one, two] = await Promise.all([session(), session()]) as [LockSession, LockSession];
  const change = (s: LockSession, name: string) =>
    s.query(`select jobs.schedule($2, '*/5 * * * *', $2 || '.run', runner => 'drains', now => $1) as r`, [minute(20), name]);
  await one.query('begin');
  await change(one, 'a');
  await two.query('begin');
  await two.query(`select jobs.publish('k.run', '{}', serial_key => 'K')`);
  const changed = outcome(change(two, 'b'));
  await doneOrBlocked(db.sql, two, changed);  // unfixed: waits for b's row, which one holds
  let settled = false;
  const published = outcome(one.query(`select jobs.publish('k.run', '{}', serial_key => 'K') is not null as ok`));
  void published.then(() => (settled = true));
  await doneOrBlocked(db.sql, one, published);  // fixed: waits for K until two commits
  if (settled) await one.query('rollback');  // unfixed: one was the deadlock's victim
  // Unfixed: one side or the other 'error 40P01 undefined: deadlock detected'.
  expect(await changed).toEqual([{ r: 'drains' }]);
  await two.query('commit');
  expect(await published).toEqual([{ ok: true }]);
  await one.query('commit');
  // Each due tick published once (each by its own jobs.schedule), each schedule on its new expression.
  expect(await db.sql(`select task, count(*)::int as n from jobs.job_queue where task in ('a.run', 'b.run') group by task order by task`))
    .toEqual([{ task: 'a.run', n: 1 }, { task: 'b.run', n: 1 }]);
  expect(await db.sql(`select name, next_run_at from jobs.recurring order by name`))
    .toEqual([{ name: 'a', next_run_at: new Date(minute(25)) }, { name: 'b', next_run_at: new Date(minute(25)) }]);
});
