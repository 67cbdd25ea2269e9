// A REPEATABLE READ or SERIALIZABLE transaction whose snapshot is older than
// a queue's creation has no row of it: a publish there was refused as if no
// such queue existed ('create it with jobs.create_queue(...)', which would
// only change the queue). Now the message says it was created after the
// snapshot, and to retry in a new transaction. Real sessions.
import { beforeEach, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { lockSessions, outcome } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
  await sql(`select jobs.delete_queue(name) from jobs.queue where name in ('fresh', 'fresh_capped')`);
});

for (const level of ['repeatable read', 'serializable']) {
  for (const [queue, options] of [['fresh', ''], ['fresh_capped', ', max_size => 2']] as const) {
    it(`in ${level}, a queue ${queue} created after the snapshot: PD009 says so, and to retry; the retry publishes`, async () => {
      const app = await session();
      await app.query(`begin isolation level ${level}`);
      await app.query('select 1 from jobs.queue limit 1');  // its snapshot: no such queue
      await sql(`select jobs.create_queue('${queue}'${options})`);
      const got = await outcome(app.query(`select jobs.publish('a.run', queue => '${queue}')`));
      await app.query('rollback');
      // Unfixed: "no queue named 'fresh'; create it with jobs.create_queue('fresh')".
      expect(got).toBe(`error PD009 queue: queue: no queue named '${queue}' in this ${level.toUpperCase()} transaction's `
        + `snapshot: it was created after the snapshot; retry in a new transaction`);
      await app.query(`begin isolation level ${level}`);
      const again = await outcome(app.query(`select jobs.publish('a.run', queue => '${queue}') is not null as ok`));
      await app.query('commit');
      expect(again).toEqual([{ ok: true }]);
      // The probe wrote nothing: the queue is as created.
      expect(await sql(`select name, max_size from jobs.queue where name = $1`, [queue]))
        .toEqual([{ name: queue, max_size: options ? 2 : null }]);
    });
  }

  it(`in ${level}, a queue that does not exist: told to create it, and nothing is left behind`, async () => {
    const app = await session();
    await app.query(`begin isolation level ${level}`);
    const got = await outcome(app.query(`select jobs.publish('a.run', queue => 'nowhere')`));
    await app.query('rollback');
    expect(got).toBe(`error PD009 queue: queue: no queue named 'nowhere'; create it with jobs.create_queue('nowhere')`);
    expect(await sql(`select name from jobs.queue where name = 'nowhere'`)).toEqual([]);
  });
}
