// jobs.redrive_counts into a bounded queue (max_size): the room it asks for
// (jobs.admit) leaves out the dead letters whose dedupe key an active job
// holds, and its insert asks the keys again in a later statement. A key
// taken after the dead letters were chosen (while the redrive waited for a
// serial key) and freed after the room was asked for let the insert put
// back a dead letter that room was never asked for: the queue past its
// max_size. Forced with sessions of their own: a publish to the queue, not
// committed, holding its bound's lock (the redrive waits for it after
// choosing), then one holding jobs.job in SHARE mode (the redrive's reads
// go on; its insert, which deletes from jobs.job, waits) while the key's
// holder leaves the queue (a raw delete stands in for its run ending).
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { blockedOn, doneOrBlocked, lockSessions, outcome } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);

/** A dead letter of queue 'small' (dedupe key as given). */
async function deadLetter(key: string | null): Promise<string> {
  const { id } = (await sql<{ id: string }>(`select jobs.publish('mail.send', max_retries => 0, queue => 'small',
    dedupe_key => $1)::text as id`, [key]))[0]!;
  await sql(`select jobs.fail(array[$1::bigint], 'boom')`, [id]);
  return id;
}

it('a key taken and freed again while the redrive ran: the queue stays within its max_size', async () => {
  await sql(`select jobs.create_queue('small', max_size => 1)`);
  const free = await deadLetter(null);
  const keyed = await deadLetter('k');
  const [publisher, locker, redriver] = [await session(), await session(), await session()];
  // A publish to the queue, not committed: the redrive chooses both dead letters (k free), then waits for its bound's lock.
  await publisher.query('begin');
  await publisher.query(`select jobs.publish('small.job', queue => 'small')`);
  const redrive = outcome(redriver.query(`select * from jobs.redrive_counts(queue => 'small')`));
  await doneOrBlocked(sql, redriver, redrive);
  // Meanwhile a job of another queue takes k: the room is asked for the keyless one only...
  const holder = (await sql<{ id: string }>(`select jobs.publish('other', dedupe_key => 'k')::text as id`))[0]!.id;
  await locker.query('begin');
  await locker.query('lock table jobs.job in share mode');
  await publisher.query('rollback');
  await blockedOn(sql, redriver, ['relation']); // at its insert, the room asked for
  // ...and leaves the queue before the insert: k is free again.
  await sql('delete from jobs.job_queue where job_id = $1', [holder]);
  await locker.query('commit');
  const answer = await redrive;
  // Before: both went back (redriven 2), two waiting jobs in a queue of max_size 1.
  expect(await sql(`select job_id::text as id, serial_wait from jobs.job_queue where queue = 'small' order by job_id`),
         JSON.stringify(answer)).toEqual([{ id: free, serial_wait: false }]);
  expect(answer).toEqual([{ redriven: 1, held_by_key: 1, serial_later: 0 }]);
  expect(await sql(`select job_id::text as id, status from jobs.job`)).toEqual([{ id: keyed, status: 'failure' }]);
});
