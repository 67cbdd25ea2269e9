// An app transaction that published to an unbounded queue, then changes it
// (jobs.pause_queue, jobs.create_queue), while an admin gives the queue a
// max_size (or deletes it): the admin waits for its publishes in flight.
// Holding the queue's row meanwhile, it deadlocked with the app (READ
// COMMITTED: the app holds such a publish, the shared writers' lock, and
// waits for the row): 40P01, one rolled back. Now the admin tries the
// writers' lock under the row and, held, waits for it without the row
// (jobs.lock_queue_writers): the app's change goes first, then the admin.
// (Taking the writers' lock before the row, for good, would close a cycle
// with jobs.publish_event: the row, then that lock.) What each order does.
import { beforeEach, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { blocked, lockSessions, outcome } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);
const DEADLOCK = 'error 40P01 undefined: deadlock detected';
const NOT_EMPTY = `error PD009 name: name: queue 'q' still has 1 waiting and 0 running jobs: purge it first `
  + `(jobs.purge_queue('q'))`;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
  await sql(`select jobs.create_queue('q', max_size => null)`);
});

for (const change of [`jobs.pause_queue('q')`, `jobs.create_queue('q', default_priority => 3)`]) {
  for (const admin of [`jobs.create_queue('q', max_size => 5)`, `jobs.delete_queue('q')`]) {
    it(`read committed: publish, then ${change.split('(')[0]}, beside ${admin.split('(')[0]}: both done, the change first`, async () => {
      const [app, other] = [await session(), await session()];
      await app.query('begin');
      await app.query(`select jobs.publish('a.run', queue => 'q')`);
      const adminAnswer = outcome(other.query(`select ${admin}`));
      await blocked(sql, other);  // waits for the publish in flight
      const changed = await outcome(app.query(`select ${change}`));
      await app.query(typeof changed === 'string' ? 'rollback' : 'commit');
      expect(changed).not.toBe(DEADLOCK);  // 40P01 for the change or the admin before
      expect(typeof changed).not.toBe('string');
      expect(await adminAnswer).toEqual(admin.startsWith('jobs.delete_queue') ? NOT_EMPTY : [{ create_queue: '' }]);
    });
  }

  for (const level of ['read committed', 'repeatable read']) {
    it(`${level}: ${change.split('(')[0]} first, then publish, beside a bounding jobs.create_queue: no deadlock`, async () => {
      const [app, other] = [await session(), await session()];
      await app.query(`begin isolation level ${level}`);
      await app.query(`select ${change}`);
      const bounded = outcome(other.query(`select jobs.create_queue('q', max_size => 5)`));
      await blocked(sql, other);
      const published = await outcome(app.query(`select jobs.publish('a.run', queue => 'q') is not null as ok`));
      await app.query('commit');
      expect(published).toEqual([{ ok: true }]);
      expect(await bounded).toEqual([{ create_queue: '' }]);
      expect(await sql(`select max_size from jobs.queue where name = 'q'`)).toEqual([{ max_size: 5 }]);
    });
  }
}

it(`repeatable read: publish, then jobs.pause_queue, beside a bounding jobs.create_queue: no deadlock (the row is key-shared, not waited for)`, async () => {
  const [app, other] = [await session(), await session()];
  await app.query('begin isolation level repeatable read');
  await app.query(`select jobs.publish('a.run', queue => 'q')`);
  const bounded = outcome(other.query(`select jobs.create_queue('q', max_size => 5)`));
  await blocked(sql, other);
  const paused = await outcome(app.query(`select jobs.pause_queue('q') as p`));
  await app.query('commit');
  expect(paused).toEqual([{ p: true }]);
  expect(await bounded).toEqual([{ create_queue: '' }]);
});
