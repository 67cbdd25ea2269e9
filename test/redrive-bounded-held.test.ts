// jobs.redrive_counts into a bounded queue (max_size) counts toward its room
// only the dead letters it puts back: one whose dedupe key a job took while
// the redrive waited for its serial key's lock is left (held_by_key), and
// was counted before, so a queue with room for the others refused the whole
// redrive (PD010). Forced with a session of its own: a publish of that key
// and serial key, not committed, which the redrive finds free of the key
// and then waits for (the serial key's lock). Past max_size it is still
// refused: test/features/dead-letters-tracking.test.ts.
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { doneOrBlocked, lockSessions, outcome } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

/** A dead letter of queue 'small' (dedupe key and serial key as given). */
async function deadLetter(key: string | null, serial: string | null): Promise<string> {
  const { id } = (await sql<{ id: string }>(`select jobs.publish('mail.send', max_retries => 0, queue => 'small',
    dedupe_key => $1, serial_key => $2)::text as id`, [key, serial]))[0]!;
  await sql(`select jobs.fail(array[$1::bigint], 'boom')`, [id]);
  return id;
}

describe('redrive into a nearly full bounded queue', () => {
  it('a dead letter whose key a job took meanwhile is left, and not counted toward max_size', async () => {
    await sql(`select jobs.create_queue('small', max_size => 1)`);
    const free = await deadLetter(null, null);
    const taken = await deadLetter('k', 's');
    const [publisher, redriver] = [await session(), await session()];
    // A job of k and s in another queue, not committed: the redrive finds k free, then waits for s.
    await publisher.query('begin');
    await publisher.query(`select jobs.publish('other', dedupe_key => 'k', serial_key => 's')`);
    const redrive = outcome(redriver.query(`select * from jobs.redrive_counts(queue => 'small')`));
    // Before: refused at once (2 dead letters counted against a max_size of 1), before waiting for s.
    await doneOrBlocked(sql, redriver, redrive);
    await publisher.query('commit');
    expect(await redrive).toEqual([{ redriven: 1, held_by_key: 1, serial_later: 0 }]);
    expect(await sql(`select job_id::text as id from jobs.job_queue where queue = 'small'`)).toEqual([{ id: free }]);
    expect(await sql(`select job_id::text as id, status from jobs.job`)).toEqual([{ id: taken, status: 'failure' }]);
  });
});
