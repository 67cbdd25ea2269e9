// A failed job whose own dead-letter queue (publish's dead_letter) was
// deleted since goes back without it: it follows its queue's, as
// docs/managing-jobs.md says ("a failed job redriven after its dead-letter
// queue was deleted goes to its queue's"), and getJob's deadLetter is null
// ("null when its queue's applies"). Before: it went back still naming the
// deleted queue: getJob showed it, and a queue made again under that name
// got its copy when it failed.
import { describe, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });

describe('redrive of a job whose own dead-letter queue is gone', () => {
  it('goes back without it: deadLetter null, and its next failure goes to its queue\'s', async () => {
    await sql(`select jobs.create_queue('mail_dead'), jobs.create_queue('own_dead')`);
    await sql(`select jobs.create_queue('mail', dead_letter => 'mail_dead')`);
    const { id } = (await sql<{ id: string }>(
      `select jobs.publish('mail.send', queue => 'mail', dead_letter => 'own_dead', max_retries => 0)::text as id`))[0]!;
    await sql(`select jobs.fail(array[$1::bigint], 'first')`, [id]);
    await sql(`select jobs.purge_queue('own_dead')`); // its copy
    await sql(`select jobs.delete_queue('own_dead')`);
    expect(await queue.redrive({ ids: [id] })).toEqual({ redriven: 1, heldByKey: 0, serialLater: 0 });
    expect((await queue.getJob(id))!.deadLetter).toBeNull();
    // A queue made again under the old name is not its dead letter.
    await sql(`select jobs.create_queue('own_dead')`);
    await sql(`select jobs.fail(array[$1::bigint], 'second')`, [id]);
    expect(await sql(`select queue, attributes->'dead_letter'->>'job_id' as of from jobs.job_queue order by job_id`))
      .toEqual([{ queue: 'mail_dead', of: id }]);
    // And it keeps one that still exists.
    const { kept } = (await sql<{ kept: string }>(
      `select jobs.publish('mail.send', queue => 'mail', dead_letter => 'own_dead', max_retries => 0)::text as kept`))[0]!;
    await sql(`select jobs.fail(array[$1::bigint], 'x')`, [kept]);
    expect(await queue.redrive({ ids: [kept] })).toMatchObject({ redriven: 1 });
    expect((await queue.getJob(kept))!.deadLetter).toBe('own_dead');
  });
});
