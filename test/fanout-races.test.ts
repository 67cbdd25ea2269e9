// jobs.publish_event against concurrent changes and other lock takers
// (sql/0033_fanout.sql), and the lock order of every caller that takes
// several bounded-queue (736037) or serial-key (736038) advisory locks.
// Forced interleavings, no timing: a holder session keeps a lock, each step
// waits until a session is seen waiting for a lock (or done), then the holder
// lets go. hashtext('q16584') = hashtext('q52834'): two names, one lock key;
// 'q16584' < 'q3' < 'q52834' by name, and hashtext('q54') is below theirs
// while 'q52834' < 'q54' by name. race_a and race_z (rs_a, rs_z) come in
// that order both by name and by lock key: the publish waits at the first.
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { blocked, doneOrBlocked, lockSessions, outcome } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);

/** The queue of each job id, in the order given. */
const queuesOf = async (ids: string[]) => (await sql<{ queue: string }>(
  `select queue from jobs.job_queue j join unnest($1::bigint[]) with ordinality x(id, o) on j.job_id = x.id order by x.o`,
  [ids])).map((r) => r.queue);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency, jobs.subscription');
  await sql(`delete from jobs.queue where name <> 'default'`);
});

it('the names chosen share a lock key, and their name order is not their lock order', async () => {
  expect(await sql(`select hashtext('q16584') = hashtext('q52834') as same, hashtext('q54') < hashtext('q52834') as below,
                           'q16584' < 'q3' and 'q3' < 'q52834' and 'q52834' < 'q54' as names,
                           hashtext('race_a') < hashtext('race_z') and hashtext('rs_a') < hashtext('rs_z') as first`))
    .toEqual([{ same: true, below: true, names: true, first: true }]);
});

describe('publish_event and a subscribed queue deleted meanwhile', () => {
  beforeEach(async () => {
    await sql(`select jobs.create_queue('race_a', max_size => 1000); select jobs.create_queue('race_z');
               select jobs.subscribe('race.ev', 'race_a', 't.a'); select jobs.subscribe('race.ev', 'race_z', 't.b')`);
  });

  it('deleted after its read: the delete waits for the publish, which writes into both queues', async () => {
    const [holder, publisher, deleter] = [await session(), await session(), await session()];
    // holder keeps race_a's bounded-queue lock: the publish has read its queues, and waits.
    await holder.query('begin');
    await holder.query(`select jobs.publish('t.h', queue => 'race_a')`);
    const published = outcome(publisher.query(`select jobs.publish_event('race.ev', '{"n":1}')::text[] as ids`));
    await blocked(sql, publisher);
    const deleted = outcome(deleter.query(`delete from jobs.queue where name = 'race_z' returning name`));
    await doneOrBlocked(sql, deleter, deleted);
    await holder.query('rollback');
    const answer = await published;
    // Before: error PD009 queue: no queue named 'race_z', a queue the publisher never named; nothing written.
    expect(answer).toEqual([{ ids: [expect.any(String), expect.any(String)] }]);
    expect(await deleted).toEqual([{ name: 'race_z' }]);
    expect(await queuesOf((answer as { ids: string[] }[])[0]!.ids)).toEqual(['race_a', 'race_z']);
  });

  it('deleted before its read (not yet committed): the publish waits, then leaves that queue out', async () => {
    const [deleter, publisher] = [await session(), await session()];
    await deleter.query('begin');
    await deleter.query(`delete from jobs.queue where name = 'race_z'`);
    const published = outcome(publisher.query(`select jobs.publish_event('race.ev', '{"n":1}')::text[] as ids`));
    await doneOrBlocked(sql, publisher, published);
    await deleter.query('commit');
    const answer = await published;
    // Before: it wrote a job into race_z, a queue gone once the delete committed.
    expect(answer).toEqual([{ ids: [expect.any(String)] }]);
    expect(await sql(`select queue, task from jobs.job_queue`)).toEqual([{ queue: 'race_a', task: 't.a' }]);
  });
});

describe('publish_event and its subscription\'s sql: task disallowed meanwhile', () => {
  it('the disallow waits for the publish, which writes into both queues', async () => {
    await sql(`create schema if not exists fan; create or replace function fan.run(b jsonb) returns jsonb language sql as 'select b';
               select jobs.allow_sql_task('fan.run');
               select jobs.create_queue('rs_a', max_size => 1000); select jobs.create_queue('rs_z');
               select jobs.subscribe('race.sql', 'rs_a', 't.a'); select jobs.subscribe('race.sql', 'rs_z', 'sql:fan.run')`);
    const [holder, publisher, admin] = [await session(), await session(), await session()];
    await holder.query('begin');
    await holder.query(`select jobs.publish('t.h', queue => 'rs_a')`);
    const published = outcome(publisher.query(`select jobs.publish_event('race.sql')::text[] as ids`));
    await blocked(sql, publisher);
    const disallowed = outcome(admin.query(`select jobs.disallow_sql_task('fan.run') as r`));
    await doneOrBlocked(sql, admin, disallowed);
    await holder.query('rollback');
    // Before: error PD018 jobs[1].task, a field no caller of publish_event has; nothing written.
    expect(await published).toEqual([{ ids: [expect.any(String), expect.any(String)] }]);
    expect(await disallowed).toEqual([{ r: true }]);
    expect(await sql(`select queue, task from jobs.job_queue order by queue`))
      .toEqual([{ queue: 'rs_a', task: 't.a' }, { queue: 'rs_z', task: 'sql:fan.run' }]);
    // Disallowed before a publish: refused naming the subscription (fanout.test.ts).
    await expect(sql(`select jobs.publish_event('race.sql')`)).rejects.toMatchObject({
      code: 'PD018', column: 'task', message: expect.stringMatching(/^task: queue 'rs_z' subscribes to 'race\.sql'/) });
  });
});

describe('several advisory locks are taken in lock-key order, not name order', () => {
  /**
   * holder keeps lock `held`; `first` is run and waits for it, then `second`
   * (which, taking its locks in name order, holds one `first` needs next);
   * then holder lets go. Both answer: none is chosen as a deadlock's victim.
   */
  async function crosswise(held: string, first: string, second: string) {
    const [holder, one, two] = [await session(), await session(), await session()];
    await holder.query('begin');
    await holder.query(held);
    const a = outcome(one.query(first));
    await blocked(sql, one);
    const b = outcome(two.query(second));
    await doneOrBlocked(sql, two, b);
    await holder.query('rollback');
    return [await a, await b];
  }

  it('two publish_event calls into bounded queues whose names share a lock key', async () => {
    await sql(`select jobs.create_queue(n, max_size => 1000) from unnest(array['q16584', 'q3', 'q52834']) n;
               select jobs.subscribe('ev.one', 'q16584'); select jobs.subscribe('ev.one', 'q3');
               select jobs.subscribe('ev.two', 'q3'); select jobs.subscribe('ev.two', 'q52834')`);
    const [two, one] = await crosswise(`select jobs.publish('t.h', queue => 'q3')`,
      `select jobs.publish_event('ev.two')::text[] as ids`, `select jobs.publish_event('ev.one')::text[] as ids`);
    // Before: one of them error 40P01 (deadlock detected).
    expect({ one, two }).toEqual({ one: [{ ids: [expect.any(String), expect.any(String)] }],
                                   two: [{ ids: [expect.any(String), expect.any(String)] }] });
    // Still answered in queue-name order.
    expect(await queuesOf((one as { ids: string[] }[])[0]!.ids)).toEqual(['q16584', 'q3']);
    expect(await queuesOf((two as { ids: string[] }[])[0]!.ids)).toEqual(['q3', 'q52834']);
  });

  it('two bulk publishes whose serial keys share a lock key (jobs.lock_serial_keys)', async () => {
    const [two, one] = await crosswise(`select jobs.publish('t.h', serial_key => 'q3')`,
      `select jobs.publish_arrays(array['t.x', 't.x'], serial_keys => array['q3', 'q52834'])::text[] as ids`,
      `select jobs.publish_arrays(array['t.x', 't.x'], serial_keys => array['q16584', 'q3'])::text[] as ids`);
    // Before: one of them error 40P01.
    expect({ one, two }).toEqual({ one: [{ ids: [expect.any(String), expect.any(String)] }],
                                   two: [{ ids: [expect.any(String), expect.any(String)] }] });
  });

  it('a settle handing two serial keys on (jobs.after_end) and a bulk publish of keys sharing their lock keys', async () => {
    await sql(`select jobs.publish('t.a', serial_key => 'q52834'), jobs.publish('t.b', serial_key => 'q54')`);
    const ids = (await sql<{ id: string }>(`select job_id::text as id from jobs.consume(10)`)).map((r) => r.id);
    expect(ids).toHaveLength(2);
    const [bulk, ack] = await crosswise(`select jobs.publish('t.h', serial_key => 'q54')`,
      `select jobs.publish_arrays(array['t.x', 't.x'], serial_keys => array['q54', 'q16584'])::text[] as ids`,
      `select jobs.ack($1::bigint[]) as r`.replace('$1', `'{${ids.join(',')}}'`));
    // Before: one of them error 40P01.
    expect({ bulk, ack }).toEqual({ bulk: [{ ids: [expect.any(String), expect.any(String)] }], ack: [{ r: expect.anything() }] });
    expect(await sql(`select count(*)::int as n from jobs.job where status = 'success'`)).toEqual([{ n: 2 }]);
  });

  it('a redrive into two bounded queues and a publish_event into queues sharing their lock keys', async () => {
    await sql(`select jobs.create_queue(n, max_size => 1000) from unnest(array['q16584', 'q52834', 'q54']) n;
               select jobs.subscribe('ev', 'q54'); select jobs.subscribe('ev', 'q16584');
               select jobs.fail(array[jobs.publish('t.a', queue => 'q52834'), jobs.publish('t.b', queue => 'q54')])`);
    const [published, redriven] = await crosswise(`select jobs.publish('t.h', queue => 'q54')`,
      `select jobs.publish_event('ev')::text[] as ids`, `select jobs.redrive() as n`);
    // Before: one of them error 40P01.
    expect({ published, redriven }).toEqual({ published: [{ ids: [expect.any(String), expect.any(String)] }],
                                              redriven: [{ n: 2 }] });
  });
});
