// A keep publish (dedupe_mode keep or null) whose dedupe key a waiting job
// of the same queue holds is answered that job's id before any lock, as a
// holder with an expiry already was: a holder without one (jobs.key_holder's
// ends null, not false) went on through jobs.admit, so in a bounded queue it
// waited for the queue's publishers in flight, counted its waiting jobs and,
// the queue full, was refused with PD010 for a job it would not add. A
// holder in another queue still goes through jobs.admit (the publish's queue
// may not exist: PD009). Real sessions.
import { beforeEach, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { lockSessions, outcome, waits } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);
const one = async (text: string) => outcome((await session()).query(text));

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.queue_admits');
  await sql(`select jobs.create_queue('cap', max_size => 1)`);
});

for (const [name, expiry] of [['without an expiry', 'null'], ['with an expiry', `now() + interval '1 day'`]] as const) {
  it(`a keep publish whose key a waiting job ${name} holds in its full queue: that job's id, not PD010`, async () => {
    const { id } = (await sql<{ id: string }>(
      `select jobs.publish('a.run', queue => 'cap', dedupe_key => 'k', expires_at => ${expiry})::text as id`))[0]!;
    // Unfixed (without an expiry): error PD010 queue: queue 'cap' is full: 1 waiting job + 1 published > max_size 1; ...
    expect(await one(`select jobs.publish('a.run', queue => 'cap', dedupe_key => 'k')::text as id`)).toEqual([{ id }]);
  });

  it(`a keep publish whose key a waiting job ${name} holds waits for no publisher of its bounded queue`, async () => {
    await sql(`select jobs.create_queue('cap', max_size => 5)`);
    const { id } = (await sql<{ id: string }>(
      `select jobs.publish('a.run', queue => 'cap', dedupe_key => 'k', expires_at => ${expiry})::text as id`))[0]!;
    const [other, app] = [await session(), await session()];
    await other.query('begin');
    await other.query(`select jobs.publish('b.run', queue => 'cap')`);  // holds cap's publishers' lock
    const collide = outcome(app.query(`select jobs.publish('a.run', queue => 'cap', dedupe_key => 'k')::text as id`));
    const waited = await waits(sql, app, collide);
    await other.query('commit');
    // Unfixed (without an expiry): it waited for other's commit.
    expect(waited).toBe(false);
    expect(await collide).toEqual([{ id }]);
  });
}

it('a keep publish naming a queue that does not exist, whose key a job of another queue holds: still PD009', async () => {
  await sql(`select jobs.publish('a.run', dedupe_key => 'k')`);
  expect(await one(`select jobs.publish('a.run', queue => 'nope', dedupe_key => 'k')`))
    .toBe(`error PD009 queue: queue: no queue named 'nope'; create it with jobs.create_queue('nope')`);
});
