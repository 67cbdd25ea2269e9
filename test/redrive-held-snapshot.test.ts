// jobs.redrive_counts without max_rows counts the dead letters whose dedupe
// key an active job holds, and locks the others, in one snapshot. Counted
// in one statement and locked in the next, a key freed between them was
// counted held and redriven anyway (redriven 1 and held_by_key 1 of one
// dead letter), and a key taken between them left its dead letter in
// neither count (0 and 0). Forced with a session holding jobs.job in
// EXCLUSIVE mode: a plain read of it (the count) goes on, a FOR UPDATE (the
// lock) waits; that session then frees or takes the key, and commits.
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { blockedOn, lockSessions } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);
const one = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await sql<R>(text, params))[0]!;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

/** A dead letter of dedupe key k. */
async function deadLetter(): Promise<string> {
  const { id } = await one<{ id: string }>(`select jobs.publish('mail.send', max_retries => 0, dedupe_key => 'k')::text as id`);
  await sql(`select jobs.fail(array[$1::bigint], 'boom')`, [id]);
  return id;
}

/** jobs.redrive_counts() run while `change` (in the session holding jobs.job) frees or takes key k. */
async function redriveAcross(change: string) {
  const [holder, redriver] = [await session(), await session()];
  await holder.query('begin');
  await holder.query('lock table jobs.job in exclusive mode');
  const result = redriver.query(`select * from jobs.redrive_counts()`);
  await blockedOn(sql, redriver, ['relation']);
  await holder.query(change);
  await holder.query('commit');
  return (await result).rows;
}

describe('redrive counts held dead letters and locks the others in one snapshot', () => {
  it('a key freed while it runs: the dead letter is redriven, not also counted held', async () => {
    const dead = await deadLetter();
    const { id: running } = await one<{ id: string }>(`select jobs.publish('holder', dedupe_key => 'k')::text as id`);
    await sql(`select * from jobs.consume(1)`);
    expect(await redriveAcross(`select jobs.ack(${running})`)).toEqual([{ redriven: 1, held_by_key: 0, serial_later: 0 }]);
    expect(await sql(`select job_id::text as id from jobs.job_queue`)).toEqual([{ id: dead }]);
  });

  it('a key taken while it runs: the dead letter stays, counted held', async () => {
    const dead = await deadLetter();
    expect(await redriveAcross(`select jobs.publish('holder', dedupe_key => 'k')`))
      .toEqual([{ redriven: 0, held_by_key: 1, serial_later: 0 }]);
    expect(await sql(`select job_id::text as id, status from jobs.job`)).toEqual([{ id: dead, status: 'failure' }]);
  });
});
