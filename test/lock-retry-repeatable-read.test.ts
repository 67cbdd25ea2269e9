// jobs.lock_dependencies (a publish with depends_on and a serial key),
// jobs.lock_queue_writers (a bounding jobs.create_queue) and
// jobs.lock_queue_claims (jobs.create_queue changing max_running) let go of
// what they locked while they wait for another lock, and lock it again after.
// In a REPEATABLE READ or SERIALIZABLE transaction, locked again, a row that
// another transaction changed meanwhile (a dependency acked, the queue
// paused) fails with 40001; held through the wait, as before those, that
// change waited for this transaction instead, and both succeeded. So outside
// READ COMMITTED they wait holding what they locked, as before. Forced
// interleavings, no timing: each step waits until a session is seen waiting
// for another (pg_blocking_pids), or is done.
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb, idOf } from './support/db.js';
import { blockedBy, doneOrBlocked, lockSessions, outcome } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);
const id = idOf(sql);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency, jobs.running_slot, jobs.queue_admits');
  await sql(`delete from jobs.queue where name <> 'default'`);
  await sql(`select jobs.create_queue('q')`);
});

describe('in REPEATABLE READ, a change committed while the lock-order retry waits', () => {
  it('a publish with depends_on and a serial key, its dependency acked meanwhile: both succeed', async () => {
    const dep = await id(`jobs.publish('c.dep')`);
    expect(await sql(`select job_id::text as id from jobs.consume(1)`)).toEqual([{ id: dep }]);
    const holder = await session();
    await holder.query('begin');
    await holder.query(`select jobs.publish('t.own', serial_key => 'K')`);
    const publisher = await session();
    await publisher.query('begin isolation level repeatable read');
    await publisher.query('select 1');  // its snapshot
    const published = outcome(publisher.query(`select jobs.publish('p.job', serial_key => 'K',
      depends_on => array[${dep}::bigint])::text as id`));
    await blockedBy(sql, publisher, holder);  // for the serial key
    const acker = await session();
    const acked = outcome(acker.query(`select jobs.ack(${dep}::bigint) as a`));
    await doneOrBlocked(sql, acker, acked);
    await holder.query('commit');
    expect(await published).toEqual([{ id: expect.any(String) }]);  // 'error 40001' before
    await publisher.query('commit');
    expect(await acked).toEqual([{ a: true }]);
    expect(await sql(`select waiting_deps from jobs.job_queue where task = 'p.job'`)).toEqual([{ waiting_deps: 0 }]);
  });

  const CHANGES = {
    'a bound set': [`max_size => 10`, `select jobs.publish('w.job', queue => 'q')`, 'max_size'],
    'max_running changed': [`max_running => 2`, `select job_id from jobs.consume(1, queue => 'q')`, 'max_running'],
  } as const;
  for (const [what, [args, inFlight, column]] of Object.entries(CHANGES)) {
    it(`jobs.create_queue, ${what}, the queue paused meanwhile: both succeed`, async () => {
      await sql(`select jobs.publish('q.run', queue => 'q')`);
      const app = await session();
      await app.query('begin');
      await app.query(inFlight);  // a writer / a claim in flight
      const admin = await session();
      await admin.query('begin isolation level repeatable read');
      await admin.query('select 1');  // its snapshot
      const changed = outcome(admin.query(`select jobs.create_queue('q', ${args})::text as r`));
      await blockedBy(sql, admin, app);  // for the writers / claims in flight
      const pauser = await session();
      const paused = outcome(pauser.query(`select jobs.pause_queue('q')::text as r`));
      await doneOrBlocked(sql, pauser, paused);
      await app.query('commit');
      expect(await changed).toEqual([{ r: '' }]);  // 'error 40001' before
      await admin.query('commit');
      expect(await paused).toEqual([{ r: 'true' }]);
      expect(await sql(`select ${column} as v, paused from jobs.queue where name = 'q'`))
        .toEqual([{ v: Number(args.split(' => ')[1]), paused: true }]);
    });
  }
});
