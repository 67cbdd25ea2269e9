// consume (and extend_lease) called inside a user transaction that has been
// open for a while: the lease runs from the call, not from the transaction's
// start, so a job is not handed out again right after that transaction commits.
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { yearLike } from './support/future-year.js';

const db = await testDb();
const sql = db.sql;
let client: pg.Client;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
  client = new pg.Client({ connectionString: db.url });
  await client.connect();
});
afterEach(async () => {
  await client.end();
});

describe('a claim inside a long transaction', () => {
  it('leases from the claim: the lease ends a timeout after the call, not after the transaction began', async () => {
    await sql(`select jobs.publish('long.tx', null, null, 30)`);
    await client.query('begin');
    await client.query('select pg_sleep(0.2)');
    const { before } = (await client.query<{ before: Date }>('select clock_timestamp() as before')).rows[0]!;
    const { rows } = await client.query<{ ok: boolean }>(
      `select lease_until >= $1::timestamptz + interval '30 seconds' as ok from jobs.consume(1)`, [before]);
    await client.query('commit');
    expect(rows).toEqual([{ ok: true }]);
  });

  it('is not handed out again by the next consume once that transaction commits', async () => {
    const id = (await sql<{ id: string }>(`select jobs.publish('long.tx', null, null, 5) as id`))[0]!.id;
    await client.query('begin');
    // The transaction is now older than the job's timeout; the checks after its
    // commit have the whole timeout (5 s) to run, a margin for a loaded machine.
    await client.query('select pg_sleep(5.1)');
    const claimed = (await client.query<{ job_id: string; attempt: number }>('select job_id, attempt from jobs.consume(1)')).rows;
    await client.query('commit');
    expect(claimed).toEqual([{ job_id: id, attempt: 1 }]);
    // Still this consumer's: not expired, not handed out again.
    expect(await sql(`select job_id from jobs.expired`)).toEqual([]);
    expect(await sql(`select job_id, attempt from jobs.consume(1)`)).toEqual([]);
    expect(await sql(`select jobs.ack($1::bigint) as ok`, [id])).toEqual([{ ok: true }]);
    expect(await sql(`select status, attempts from jobs.job where job_id = $1`, [id])).toEqual([{ status: 'success', attempts: 1 }]);
  });

  it('extend_lease pushes the lease from the call, not from the transaction start', async () => {
    await sql(`select jobs.publish('long.tx', null, null, 1)`);
    const job = (await sql<{ job_id: string; attempt: number }>('select job_id, attempt from jobs.consume(1)'))[0]!;
    await client.query('begin');
    await client.query('select pg_sleep(0.2)');
    const { before } = (await client.query<{ before: Date }>('select clock_timestamp() as before')).rows[0]!;
    const { rows } = await client.query<{ ok: boolean }>(
      `select jobs.extend_lease($1, $2, 60) >= $3::timestamptz + interval '60 seconds' as ok`,
      [job.job_id, job.attempt, before]);
    await client.query('commit');
    expect(rows).toEqual([{ ok: true }]);
  });

  it('keeps an admin clock given as now: the lease runs from it', async () => {
    await sql(`select jobs.publish('long.tx', null, null, 10)`);
    // Ahead of the real clock: the job, published at now(), is due at that clock.
    const y = yearLike(2030);
    const rows = await sql(`select lease_until = '${y}-01-01T00:00:10Z'::timestamptz as ok
                            from jobs.consume(1, '${y}-01-01T00:00:00Z')`);
    expect(rows).toEqual([{ ok: true }]);
  });
});
