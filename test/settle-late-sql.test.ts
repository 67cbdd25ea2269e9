// A SQL consumer whose lease passed while it ran: another consume took the
// job (attempt 2). Its late ack or nack by id alone settles that newer
// delivery; given consume's attempt, it settles only its own and answers false.
// So for the array forms and release, given attempts (element i the attempt of id i).
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { migrate } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';

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

describe('the array ack and nack with attempts', () => {
  /** X handed out twice (A's attempt 1, then B's attempt 2); Y consumed once, by A, its lease still running. */
  async function lateAndCurrent(maxRetries: number): Promise<{ x: string; y: string }> {
    const x = await handedOutTwice(maxRetries);
    const y = (await sql<{ id: string }>(`select jobs.publish('late.settle', null, null, 60, 0, $1) as id`, [maxRetries]))[0]!.id;
    expect(await sql(`select job_id, attempt from jobs.consume(1)`)).toEqual([{ job_id: y, attempt: 1 }]);
    return { x, y };
  }

  it("A's late ack of both acks only its own running delivery: B's of X runs on, and B's ack lands", async () => {
    const { x, y } = await lateAndCurrent(3);
    expect(await sql(`select jobs.ack(array[$1, $2]::bigint[], array['"A"', '"A"']::jsonb[], attempts => array[1, 1]) as n`, [x, y]))
      .toEqual([{ n: 1 }]);
    expect(await sql(`select job_id, attempt, lease_until is not null as leased from jobs.job_queue`))
      .toEqual([{ job_id: x, attempt: 2, leased: true }]);
    expect(await sql(`select jobs.ack(array[$1]::bigint[], array['"B"']::jsonb[], ${HOUR}, array[2]) as n`, [x])).toEqual([{ n: 1 }]);
    expect(await sql(`select job_id, status, result, attempts from jobs.job order by attempts`))
      .toEqual([{ job_id: y, status: 'success', result: 'A', attempts: 1 }, { job_id: x, status: 'success', result: 'B', attempts: 2 }]);
  });

  it("A's late nack does not fail X on its last attempt, which B runs; Y's own nack retries it", async () => {
    const { x, y } = await lateAndCurrent(1);
    expect(await sql(`select jobs.nack(array[$1, $2]::bigint[], array['A gave up', 'A gave up'], attempts => array[1, 1]) as n`, [x, y]))
      .toEqual([{ n: 1 }]);
    expect(await sql(`select count(*)::int as n from jobs.job`)).toEqual([{ n: 0 }]);
    expect(await sql(`select job_id, attempt, last_error, lease_until is not null as leased from jobs.job_queue order by attempt desc`))
      .toEqual([{ job_id: x, attempt: 2, last_error: expect.stringMatching(/^timed out: /), leased: true }, { job_id: y, attempt: 1, last_error: 'A gave up', leased: false }]);
    expect(await sql(`select jobs.ack(array[$1]::bigint[], attempts => array[2]) as n`, [x])).toEqual([{ n: 1 }]);
    expect(await sql(`select job_id, status, attempts from jobs.job`)).toEqual([{ job_id: x, status: 'success', attempts: 2 }]);
  });

  it('a worker role may call both with attempts (jobs.create_roles grants them)', async () => {
    const prefix = `a${Date.now().toString(36)}`;
    await migrate(db.driver, { roles: prefix });
    const { x, y } = await lateAndCurrent(3);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      await client.query('begin');
      await client.query(`set local role ${prefix}_worker`);
      expect((await client.query(`select jobs.nack(array[$1, $2]::bigint[], array['e', 'e'], attempts => array[1, 1]) as a,
                                         jobs.ack(array[$1]::bigint[], attempts => array[2]) as b`, [x, y])).rows)
        .toEqual([{ a: 1, b: 1 }]);
    } finally {
      await client.query('rollback');
      await client.end();
    }
  });

  it('an attempts of another length than job_ids is refused, naming attempts, and settles nothing', async () => {
    const { x, y } = await lateAndCurrent(3);
    for (const call of [`jobs.ack(array[${x}, ${y}]::bigint[], attempts => array[2])`,
                        `jobs.nack(array[${x}, ${y}]::bigint[], array['e', 'e'], attempts => array[2, 1, 1])`]) {
      expect(await sqlErrorOf(sql, `select ${call}`), call)
        .toMatchObject({ code: 'PD008', column: 'attempts', message: expect.stringMatching(/^attempts: must be null or hold one element per job id/) });
    }
    expect(await sql(`select count(*)::int as n from jobs.job`)).toEqual([{ n: 0 }]);
    // A null element: that job's current delivery, as without attempts.
    expect(await sql(`select jobs.ack(array[$1, $2]::bigint[], attempts => array[null, 1]::integer[]) as n`, [x, y])).toEqual([{ n: 2 }]);
  });
});

describe('release with attempts', () => {
  /** X handed out twice (A's attempt 1, then B's attempt 2); Y consumed once, by A, its lease still running. */
  async function lateAndCurrent(): Promise<{ x: string; y: string }> {
    const x = await handedOutTwice(3);
    const y = (await sql<{ id: string }>(`select jobs.publish('late.settle', null, null, 60, 0, 3) as id`))[0]!.id;
    expect(await sql(`select job_id, attempt from jobs.consume(1)`)).toEqual([{ job_id: y, attempt: 1 }]);
    return { x, y };
  }

  it("A's late release of both gives back only its own delivery: B's of X runs on, and B's ack lands", async () => {
    const { x, y } = await lateAndCurrent();
    expect(await sql(`select jobs.release(array[$1, $2]::bigint[], attempts => array[1, 1]) as n`, [x, y])).toEqual([{ n: 1 }]);
    expect(await sql(`select job_id, attempt, lease_until is not null as leased from jobs.job_queue order by attempt desc`))
      .toEqual([{ job_id: x, attempt: 2, leased: true }, { job_id: y, attempt: 0, leased: false }]);
    expect(await sql(`select jobs.ack($1::bigint, '"B"', ${HOUR}, attempt => 2) as ok`, [x])).toEqual([{ ok: true }]);
    expect(await sql(`select job_id, status, result, attempts from jobs.job`)).toEqual([{ job_id: x, status: 'success', result: 'B', attempts: 2 }]);
  });

  it('without attempts (the one-argument call) it gives back each current delivery, whoever holds it', async () => {
    const { x, y } = await lateAndCurrent();
    expect(await sql(`select jobs.release(array[$1, $2]::bigint[]) as n`, [x, y])).toEqual([{ n: 2 }]);
    expect(await sql(`select job_id, attempt from jobs.job_queue where lease_until is null order by attempt desc`))
      .toEqual([{ job_id: x, attempt: 1 }, { job_id: y, attempt: 0 }]);
  });

  it('an attempts of another length than job_ids is refused, naming attempts, and releases nothing', async () => {
    const { x, y } = await lateAndCurrent();
    expect(await sqlErrorOf(sql, `select jobs.release(array[${x}, ${y}]::bigint[], attempts => array[2])`))
      .toMatchObject({ code: 'PD008', column: 'attempts', message: expect.stringMatching(/^attempts: must be null or hold one element per job id/) });
    expect(await sql(`select count(*)::int as n from jobs.job_queue where lease_until is null`)).toEqual([{ n: 0 }]);
  });

  it('a worker role may call it with attempts (jobs.create_roles grants it)', async () => {
    const prefix = `r${Date.now().toString(36)}`;
    await migrate(db.driver, { roles: prefix });
    const { x, y } = await lateAndCurrent();
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      await client.query('begin');
      await client.query(`set local role ${prefix}_worker`);
      expect((await client.query(`select jobs.release(array[$1, $2]::bigint[], attempts => array[2, 1]) as n`, [x, y])).rows)
        .toEqual([{ n: 2 }]);
    } finally {
      await client.query('rollback');
      await client.end();
    }
  });
});
