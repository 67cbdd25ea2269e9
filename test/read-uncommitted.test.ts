// PostgreSQL runs READ UNCOMMITTED exactly as READ COMMITTED (each statement
// sees what others committed before it), and pgdrain treats it so
// (jobs.read_committed). Compared with 'read committed' alone, such a
// transaction took the REPEATABLE READ paths: a claim of a queue with
// max_running and jobs.delete_queue refused it (0A000 "not READ
// UNCOMMITTED"), a tick into a bounded queue waited for no lock, and a full
// bounded queue's refusal spoke of a snapshot. Each
// case runs under both levels, same answers. Real sessions, real PostgreSQL.
import { beforeEach, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { lockSessions, outcome, waits } from './support/lock-sessions.js';
import { minute, T0 } from './support/schedule-clock.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring, jobs.tick_miss');
});

for (const level of ['read committed', 'read uncommitted']) {
  it(`${level}: a claim of a queue with max_running claims`, async () => {
    await sql(`select jobs.create_queue('capq', max_running => 2)`);
    await sql(`select jobs.publish('a', queue => 'capq')`);
    const app = await session();
    await app.query(`begin isolation level ${level}`);
    const answer = await outcome(app.query(`select count(*)::int as n from jobs.consume(1, queue => 'capq')`));
    await app.query('commit');
    // Unfixed (read uncommitted): error 0A000: must run in a READ COMMITTED transaction, not READ UNCOMMITTED.
    expect(answer).toEqual([{ n: 1 }]);
  });

  it(`${level}: jobs.delete_queue deletes an empty queue`, async () => {
    await sql(`select jobs.create_queue('gone')`);
    const app = await session();
    await app.query(`begin isolation level ${level}`);
    const answer = await outcome(app.query(`select jobs.delete_queue('gone') as ok`));
    await app.query('commit');
    // Unfixed (read uncommitted): error 0A000: jobs.delete_queue must run in a READ COMMITTED transaction.
    expect(answer).toEqual([{ ok: true }]);
  });

  it(`${level}: a full bounded queue's refusal counts what is waiting now, and says nothing of a snapshot`, async () => {
    await sql(`select jobs.create_queue('fullq', max_size => 1)`);
    await sql(`select jobs.publish('a', queue => 'fullq')`);
    const app = await session();
    await app.query(`begin isolation level ${level}`);
    const answer = await outcome(app.query(`select jobs.publish('b', queue => 'fullq')`));
    await app.query('rollback');
    // Unfixed (read uncommitted): '… (counted in this READ UNCOMMITTED transaction's snapshot, …)'.
    expect(answer).toBe("error PD010 queue: queue: queue 'fullq' is full: 1 waiting job + 1 published > max_size 1; "
      + "publish later or raise it with jobs.create_queue('fullq', max_size => ...)");
  });

  it(`${level}: jobs.maintain's tick into a bounded queue waits for its publishers' lock, then publishes`, async () => {
    await sql(`select jobs.create_queue('boundq', max_size => 10)`);
    await sql(`select jobs.schedule('t', '*/10 * * * *', 't.run', queue => 'boundq', runner => 'drains', now => $1)`, [T0]);
    const [app, pass] = await Promise.all([session(), session()]);
    await app.query('begin');
    await app.query(`select jobs.publish('x.run', queue => 'boundq')`);  // holds the queue's publishers' lock
    await pass.query(`set pgdrain.tick_wait_ms = 60000`);  // the wait as long as the test needs
    await pass.query(`begin isolation level ${level}`);
    const answer = outcome(pass.query(`select jobs.maintain(now => '${minute(20)}')->>'ticks' as ticks`));
    const waited = await waits(sql, pass, answer);
    await app.query('commit');
    const ticks = await answer;
    await pass.query('commit');
    // Unfixed (read uncommitted): waited false, ticks '0' (its publish took only a free lock, the tick left due).
    expect({ waited, ticks }).toEqual({ waited: true, ticks: [{ ticks: '1' }] });
    expect(await sql(`select task, scheduled_at from jobs.job_queue where task = 't.run'`))
      .toEqual([{ task: 't.run', scheduled_at: new Date(minute(10)) }]);
  });
}
