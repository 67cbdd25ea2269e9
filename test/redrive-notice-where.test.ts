// The notice naming the ids a redrive did not put back says where each is.
// Before: a dead letter whose queue was deleted read "failure: filtered out,
// or being redriven" (nothing said its queue was gone, the one thing that
// keeps it), and a cancelled job passed over by another filter while
// include_cancelled was given read "cancelled: give include_cancelled" (the
// CLI: give --include-cancelled, to a call that gave it).
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { sqlErrorOf, testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const c = new pg.Client({ connectionString: db.url });
await c.connect();
afterAll(async () => { await c.end(); });

/** The notices of one statement on c. */
async function noticesOf(text: string, params: unknown[]): Promise<string[]> {
  const notices: string[] = [];
  const hear = (n: { message?: string }) => { notices.push(n.message!); };
  c.on('notice', hear);
  try {
    await c.query(text, params);
  } finally {
    c.off('notice', hear);
  }
  return notices;
}

async function one(text: string, params: unknown[] = []): Promise<string> {
  return String((await sql<{ id: string }>(text, params))[0]!.id);
}

describe('redrive\'s notice of the ids it left', () => {
  it('a dead letter of a deleted queue: says the queue is gone (SQL and CLI)', async () => {
    await sql(`select jobs.create_queue('gone')`);
    const id = await one(`select jobs.publish('t', queue => 'gone') as id`);
    await sql(`select jobs.fail(array[$1::bigint], 'boom')`, [id]);
    await sql(`select jobs.delete_queue('gone')`);
    const said = `pgdrain: not redriven: ${id} (failure of queue 'gone', which is gone: it goes back once the queue is created again)`;
    expect(await noticesOf(`select jobs.redrive(job_ids => $1::bigint[])`, [[id]])).toEqual([said]);
    const r = await runCli(db.url, 'redrive', '--ids', id);
    expect([r.code, r.stdout, r.stderr]).toEqual([0, '0\n', `${said}\n`]);
    // Made again, it goes back.
    await sql(`select jobs.create_queue('gone')`);
    expect(await sql(`select jobs.redrive(job_ids => $1::bigint[]) as n`, [[id]])).toEqual([{ n: 1 }]);
  });

  it('a cancelled job another filter passed over, include_cancelled given: filtered out, not "give include_cancelled"', async () => {
    const id = await one(`select jobs.publish('t.cancelled') as id`);
    await sql(`select jobs.cancel_bulk(array[$1::bigint])`, [id]);
    expect(await noticesOf(`select jobs.redrive(job_ids => $1::bigint[], task => 'other', include_cancelled => true)`, [[id]]))
      .toEqual([`pgdrain: not redriven: ${id} (cancelled: filtered out, or being redriven)`]);
    const r = await runCli(db.url, 'redrive', '--ids', id, '--task', 'other', '--include-cancelled');
    expect([r.code, r.stderr]).toEqual([0, `pgdrain: not redriven: ${id} (cancelled: filtered out, or being redriven)\n`]);
    // Without include_cancelled, as before.
    expect(await noticesOf(`select jobs.redrive(job_ids => $1::bigint[])`, [[id]]))
      .toEqual([`pgdrain: not redriven: ${id} (cancelled: give include_cancelled)`]);
  });
});

describe('redrive\'s job_ids holding a null', () => {
  it('PD005 naming job_ids, nothing put back (as jobs.cancel_bulk and jobs.fail refuse it)', async () => {
    const id = await one(`select jobs.publish('t.null', max_retries => 0) as id`);
    await sql(`select jobs.fail(array[$1::bigint], 'boom')`, [id]);
    for (const call of [`select jobs.redrive(job_ids => array[$1, null]::bigint[])`,
                        `select * from jobs.redrive_counts(job_ids => array[null, $1]::bigint[], include_cancelled => true, max_rows => 5)`]) {
      const e = await sqlErrorOf(sql, call, [id]);
      expect([e.code, e.column, e.message]).toEqual(['PD005', 'job_ids', 'job_ids: must be an array of job ids without nulls']);
    }
    expect(await sql(`select status from jobs.job where job_id = $1`, [id])).toEqual([{ status: 'failure' }]);
  });
});
