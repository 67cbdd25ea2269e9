// A max_running set while a claim of the (until then unlimited) queue is in
// flight: that claim read the queue before the limit committed, took no lock
// and wrote no slot, so its jobs went uncounted while they ran, and the next
// claims handed out max_running more beside them. jobs.create_queue now waits
// for such claims (jobs.pick holds the queue's settings until it commits).
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
let claimer: pg.Client;

beforeAll(async () => {
  claimer = new pg.Client({ connectionString: db.url });
  await claimer.connect();
});
afterAll(async () => {
  await claimer.end();
});

const running = async () => Number((await sql<{ n: string }>(
  `select count(*) as n from jobs.job_queue where queue = 'mr' and lease_until is not null and attempt > 0`))[0]!.n);

describe('a limit set while a claim of the unlimited queue is in flight', () => {
  it('counts that claim\'s jobs once it commits: the queue never runs more than max_running beside them', async () => {
    await sql(`select jobs.create_queue('mr')`);
    await sql(`select jobs.publish('mr.job', jsonb_build_object('i', i), queue => 'mr') from generate_series(1, 20) i`);
    await claimer.query('begin');
    expect((await claimer.query(`select job_id from jobs.claim(5, queue => 'mr')`)).rows).toHaveLength(5);
    // The limit set while that claim is open: it waits for the claim (or, as
    // before, commits at once beside it).
    let done = false;
    const setting = sql(`select jobs.create_queue('mr', max_running => 2)`).then(() => (done = true));
    await until(async () => done || (await sql<{ n: string }>(
      `select count(*) as n from pg_stat_activity where datname = current_database() and wait_event = 'advisory'
         and query like '%create_queue%'`))[0]!.n !== '0', 'the limit set or waiting');
    await claimer.query('commit');
    await setting;
    expect(await running()).toBe(5);
    // Five of the queue's jobs run and the limit is 2: no claim may add one.
    const more = await sql(`select job_id from jobs.claim(5, queue => 'mr')`);
    expect(more).toHaveLength(0);
    expect(await running()).toBe(5);
  });

  it('a REPEATABLE READ claim whose snapshot predates the limit is refused (40001), not left uncounted', async () => {
    await sql(`select jobs.create_queue('rr')`);
    await sql(`select jobs.publish('rr.job', queue => 'rr') from generate_series(1, 5)`);
    await claimer.query('begin isolation level repeatable read');
    await claimer.query('select 1'); // the snapshot
    await sql(`select jobs.create_queue('rr', max_running => 1)`);
    const error = await claimer.query(`select job_id from jobs.claim(5, queue => 'rr')`).then(() => null, (e: pg.DatabaseError) => e);
    await claimer.query('rollback');
    expect(error?.code).toBe('40001');
    expect(await sql(`select job_id from jobs.claim(5, queue => 'rr')`)).toHaveLength(1);
  });
});
