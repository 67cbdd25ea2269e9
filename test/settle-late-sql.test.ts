// A SQL consumer whose lease passed while it ran: another consume took the
// job (attempt 2). Its late ack or nack by id alone settles that newer
// delivery; given consume's attempt, it settles only its own and answers false.
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const HOUR = `now() + interval '1 hour'`;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
});

/** A job consumed by A (attempt 1), its lease passed, and consumed again by B (attempt 2). */
async function handedOutTwice(maxRetries: number): Promise<string> {
  const { id } = (await sql<{ id: string }>(`select jobs.publish('late.settle', null, null, 60, 0, $1) as id`, [maxRetries]))[0]!;
  expect(await sql(`select attempt from jobs.consume(1)`)).toEqual([{ attempt: 1 }]);
  expect(await sql(`select attempt from jobs.consume(1, ${HOUR})`)).toEqual([{ attempt: 2 }]);
  return id;
}

describe('ack and nack with attempt', () => {
  it("a late ack of attempt 1 leaves attempt 2's delivery running: false, and its own ack lands", async () => {
    const id = await handedOutTwice(3);
    expect(await sql(`select jobs.ack($1::bigint, '"A"', ${HOUR}, attempt => 1) as ok`, [id])).toEqual([{ ok: false }]);
    expect(await sql(`select attempt, lease_until is not null as leased from jobs.job_queue`)).toEqual([{ attempt: 2, leased: true }]);
    expect(await sql(`select jobs.ack($1::bigint, '"B"', ${HOUR}, attempt => 2) as ok`, [id])).toEqual([{ ok: true }]);
    expect(await sql(`select status, result, attempts from jobs.job`)).toEqual([{ status: 'success', result: 'B', attempts: 2 }]);
  });

  it("a late nack of attempt 1 on the last attempt does not fail the job that attempt 2 runs", async () => {
    const id = await handedOutTwice(1);
    expect(await sql(`select jobs.nack($1::bigint, 'A gave up', null, ${HOUR}, attempt => 1) as ok`, [id]))
      .toEqual([{ ok: false }]);
    expect(await sql(`select count(*)::int as n from jobs.job`)).toEqual([{ n: 0 }]);
    expect(await sql(`select jobs.ack($1::bigint, null, ${HOUR}, attempt => 2) as ok`, [id])).toEqual([{ ok: true }]);
    expect(await sql(`select status, attempts from jobs.job`)).toEqual([{ status: 'success', attempts: 2 }]);
  });

  it('the current attempt given settles as without it; an attempt never handed out settles nothing', async () => {
    const { id } = (await sql<{ id: string }>(`select jobs.publish('late.settle', null, null, 60, 0, 3) as id`))[0]!;
    await sql(`select * from jobs.consume(1)`);
    expect(await sql(`select jobs.nack($1::bigint, 'x', attempt => 0) as a, jobs.nack($1::bigint, 'x', attempt => 2) as b`, [id]))
      .toEqual([{ a: false, b: false }]);
    expect(await sql(`select jobs.nack($1::bigint, 'x', attempt => 1) as ok`, [id])).toEqual([{ ok: true }]);
    expect(await sql(`select attempt, last_error, lease_until is null as pending from jobs.job_queue`))
      .toEqual([{ attempt: 1, last_error: 'x', pending: true }]);
  });
});
