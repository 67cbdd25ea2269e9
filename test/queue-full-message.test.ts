// A full queue's refusal (PD010) says what would be exceeded: the waiting
// jobs plus those the call adds, against max_size, and which call it was.
// Before, a redrive of two dead letters into a queue with one waiting job
// and max_size 2 said "is full: 1 waiting jobs, max_size 2" (1 < 2: not
// full, as it read), and "publish later" to a redrive.
import { beforeEach, describe, expect, it } from 'vitest';
import { sqlErrorOf, testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
  await sql(`select jobs.create_queue('two', max_size => 2)`);
});

describe('PD010 says what would be exceeded', () => {
  it('a redrive: 1 waiting job + 2 redriven > max_size 2; nothing moves', async () => {
    await sql(`select jobs.fail(array[jobs.publish('t', max_retries => 0, queue => 'two'),
                                      jobs.publish('t', max_retries => 0, queue => 'two')], 'boom')`);
    await sql(`select jobs.publish('t', queue => 'two')`);
    const e = await sqlErrorOf(sql, `select jobs.redrive()`);
    expect([e.code, e.column, e.message]).toEqual(['PD010', 'queue', "queue: queue 'two' is full: 1 waiting job + 2 redriven "
      + "> max_size 2; redrive later or raise it with jobs.create_queue('two', max_size => ...)"]);
    expect(await sql(`select count(*)::int as n from jobs.job where status = 'failure'`)).toEqual([{ n: 2 }]);
  });

  it('a bulk publish into an empty queue: 0 waiting jobs + 3 published > max_size 2', async () => {
    const e = await sqlErrorOf(sql, `select jobs.publish_arrays(array['t', 't', 't'], queue => 'two')`);
    expect([e.code, e.message]).toEqual(['PD010', "queue: queue 'two' is full: 0 waiting jobs + 3 published "
      + "> max_size 2; publish later or raise it with jobs.create_queue('two', max_size => ...)"]);
  });
});
