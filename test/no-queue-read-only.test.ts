// jobs.raise_no_queue's probe (sql/0039) inserts the unknown queue's name,
// undone, to tell a queue created after a REPEATABLE READ or SERIALIZABLE
// snapshot. In a READ ONLY transaction that insert failed 25006 ('cannot
// execute INSERT in a read-only transaction'): a redrive (or any call
// naming a queue) of a queue that does not exist answered that instead of
// PD009 naming the queue. Now a read-only transaction is not probed: the
// call's own PD009, nothing written. (A publish, subscribe or claim locks
// the queue's row first, FOR KEY SHARE or FOR SHARE: in a read-only
// transaction that is its 25006 whatever the queue, as for any write.)
// Real sessions.
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { lockSessions, outcome } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);

const CALLS: readonly (readonly [name: string, call: string, unknown: string])[] = [
  ['jobs.redrive', `select jobs.redrive(queue => 'nowhere')`,
   `no queue named 'nowhere'; the dead letters of a deleted queue go back once it is created again (jobs.create_queue('nowhere'))`],
  ['jobs.redrive_counts (max_rows)', `select * from jobs.redrive_counts(queue => 'nowhere', max_rows => 5)`,
   `no queue named 'nowhere'; the dead letters of a deleted queue go back once it is created again (jobs.create_queue('nowhere'))`],
  ['jobs.schedule', `select jobs.schedule('s_nowhere', '0 9 * * *', 'a.run', queue => 'nowhere')`, `no queue named 'nowhere'`],
  ['jobs.create_queue (dead_letter)', `select jobs.create_queue('q', dead_letter => 'nowhere')`,
   `no queue named 'nowhere'; create it first with jobs.create_queue('nowhere')`],
];

for (const level of ['repeatable read', 'serializable']) {
  for (const [name, call, unknown] of CALLS) {
    it(`in a READ ONLY ${level} transaction, ${name} of a queue that does not exist: its PD009, not 25006`, async () => {
      const app = await session();
      await app.query(`begin isolation level ${level} read only`);
      const got = await outcome(app.query(call));
      await app.query('rollback');
      // Unfixed: error 25006 undefined: cannot execute INSERT in a read-only transaction.
      const field = name.includes('dead_letter') ? 'dead_letter' : 'queue';
      expect(got).toBe(`error PD009 ${field}: ${field}: ${unknown}`);
      expect(await sql(`select name from jobs.queue where name in ('nowhere', 'q')`)).toEqual([]);
    });
  }
}

it('a name no queue can have, in a READ ONLY REPEATABLE READ transaction: the name rule, as in a writing one', async () => {
  const app = await session();
  await app.query('begin isolation level repeatable read read only');
  const got = await outcome(app.query(`select jobs.redrive(queue => 'no such')`));
  await app.query('rollback');
  await app.query('begin isolation level repeatable read');
  const writing = await outcome(app.query(`select jobs.redrive(queue => 'no such')`));
  await app.query('rollback');
  expect(got).toBe(writing);
  expect(got).toMatch(/^error PD009 queue: /);
});
