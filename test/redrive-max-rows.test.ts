// jobs.redrive's max_rows (TS queue.redrive({ maxRows })): at most that many
// dead letters go back per call, the oldest first, so a bounded call (the
// dashboard's click) gets through a million of them in turns.
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

async function deadLetters(n: number): Promise<string[]> {
  const ids = (await sql<{ id: string }>(`select jobs.publish('mail.send', max_retries => 0)::text as id from generate_series(1, $1)`, [n]))
    .map((r) => r.id);
  await sql(`select jobs.fail($1::bigint[], 'boom')`, [ids]);
  return ids;
}
const failures = async () => (await sql<{ id: string }>(`select job_id::text as id from jobs.job where status = 'failure' order by job_id`))
  .map((r) => r.id);

describe('redrive with max_rows', () => {
  it('puts back at most max_rows, the oldest first; the next call the next ones, until it returns 0', async () => {
    const ids = await deadLetters(5);
    expect(await sql(`select jobs.redrive(max_rows => 2) as n`)).toEqual([{ n: 2 }]);
    expect(await failures()).toEqual(ids.slice(2));
    expect(await queue.redrive({ maxRows: 2 })).toEqual({ redriven: 2, heldByKey: 0, serialLater: 0 });
    expect(await failures()).toEqual(ids.slice(4));
    expect(await queue.redrive({ maxRows: 2 })).toEqual({ redriven: 1, heldByKey: 0, serialLater: 0 });
    expect(await queue.redrive({ maxRows: 2 })).toEqual({ redriven: 0, heldByKey: 0, serialLater: 0 });
    // Without it: all, as before.
    await sql(`select jobs.fail(array(select job_id from jobs.job_queue), 'boom')`);
    expect(await queue.redrive()).toEqual({ redriven: 5, heldByKey: 0, serialLater: 0 });
  });

  it('a max_rows below 1 is refused naming it (PDC03), in SQL and TS', async () => {
    await deadLetters(1);
    const e = await sqlErrorOf(sql, `select jobs.redrive(max_rows => 0)`);
    expect(e.code).toBe('PDC03');
    expect(e.message).toMatch(/max_rows: must be null \(every match\) or at least 1, got 0/);
    for (const maxRows of [0, 1.5, -1]) {
      await expect(queue.redrive({ maxRows })).rejects.toThrow(/^filter\.maxRows: must be an integer between 1 and 2147483647/);
    }
    expect(await failures()).toHaveLength(1);
  });
});
