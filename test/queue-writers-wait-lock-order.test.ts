// jobs.delete_queue, and jobs.create_queue setting a bound, lock the queue's
// row, then wait for its writers in flight (jobs.hold_queue's lock, alone).
// A writer may itself wait for a lock another transaction holds (here a serial
// key); that transaction then publishing into the queue is a third waiter.
// READ COMMITTED, it asks for the writers' lock (shared), queued behind the
// delete's: a soft edge, which PostgreSQL's deadlock check resolves by
// serving it first (all finish). REPEATABLE READ, it key-shares the queue's
// row (jobs.admit), which the delete held: 40P01 (the publish or the delete
// rolled back). Now the delete does not hold the row while it waits for the
// writers (jobs.lock_queue_writers). Forced interleavings, no timing: each
// step waits until a session is seen waiting for another (pg_blocking_pids).
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { blockedBy, lockSessions, outcome } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency, jobs.queue_admits');
  await sql(`delete from jobs.queue where name <> 'default'`);
  await sql(`select jobs.create_queue('q')`);
});

const CHANGES = {
  'jobs.delete_queue': [`select jobs.delete_queue('q')::text as r`,
    `error PD009 name: name: queue 'q' still has 2 waiting and 0 running jobs: purge it first (jobs.purge_queue('q'))`],
  'jobs.create_queue setting a bound': [`select jobs.create_queue('q', max_size => 10)::text as r`, [{ r: '' }]],
} as const;

describe('a queue change waiting for a writer that waits for a transaction, which then publishes into the queue', () => {
  for (const [change, [text, answer]] of Object.entries(CHANGES)) {
    for (const isolation of ['read committed', 'repeatable read']) {
      it(`${change}; the transaction ${isolation}: all three finish, both jobs written`, async () => {
        const app = await session();
        await app.query(`begin isolation level ${isolation}`);
        await app.query(`select jobs.publish('t.own', serial_key => 'K')`);
        const writer = await session();
        const written = outcome(writer.query(`select jobs.publish('w.job', serial_key => 'K', queue => 'q')::text as id`));
        await blockedBy(sql, writer, app);  // for the serial key, holding the queue against a delete
        const admin = await session();
        const changed = outcome(admin.query(text));
        await blockedBy(sql, admin, writer);  // for the writers in flight
        const published = outcome(app.query(`select jobs.publish('t.job', queue => 'q')::text as id`));
        expect(await published).toEqual([{ id: expect.any(String) }]);  // 'error 40P01' on one side before (repeatable read)
        await app.query('commit');
        expect(await written).toEqual([{ id: expect.any(String) }]);
        expect(await changed).toEqual(answer);
        expect(await sql(`select task from jobs.job_queue where queue = 'q' order by task`))
          .toEqual([{ task: 't.job' }, { task: 'w.job' }]);
      });
    }
  }
});
