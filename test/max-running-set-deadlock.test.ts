// A limit set (jobs.create_queue) while a claim of the queue is in flight in
// a transaction that then publishes an event the queue subscribes to: the
// claim holds the claims' lock (736044, shared) until it commits and the
// event's publish key-share locks the queue's row. create_queue must not
// hold that row against the publish while it waits for the claim, nor wait
// for the claims' lock while it waits for a transaction that wrote the row
// (a pause) and then claims, or the two wait for each other (40P01, one of
// them rolled back).
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
let consumer: pg.Client;

beforeAll(async () => {
  consumer = new pg.Client({ connectionString: db.url });
  await consumer.connect();
});
afterAll(async () => {
  await consumer.end();
});

const waitingOnLock = async (like: string) => Number((await sql<{ n: string }>(
  `select count(*) as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'
     and query like $1`, [like]))[0]!.n) > 0;

describe('a limit set while a claim that also publishes to its queue is in flight', () => {
  it('claim then publish_event in one transaction: both commit, no deadlock', async () => {
    await sql(`select jobs.create_queue('dl')`);
    await sql(`select jobs.subscribe('dl.ev', 'dl', 'dl.next')`);
    await sql(`select jobs.publish('dl.job', queue => 'dl') from generate_series(1, 3)`);
    await consumer.query('begin');
    expect((await consumer.query(`select job_id from jobs.claim(1, queue => 'dl')`)).rows).toHaveLength(1);
    const setting = sql(`select jobs.create_queue('dl', max_running => 2)`).then(() => null, (e: pg.DatabaseError) => e);
    await until(() => waitingOnLock('%create_queue%'), 'the limit waiting for the claim');
    const published = await consumer.query(`select jobs.publish_event('dl.ev')`).then(() => null, (e: pg.DatabaseError) => e);
    await consumer.query(published ? 'rollback' : 'commit');
    const set = await setting;
    expect([published?.code, set?.code]).toEqual([undefined, undefined]);
    expect((await sql(`select max_running from jobs.queue where name = 'dl'`))[0]).toEqual({ max_running: 2 });
  });

  it('publish_event then claim in one transaction: both commit, no deadlock', async () => {
    await sql(`select jobs.create_queue('dm')`);
    await sql(`select jobs.subscribe('dm.ev', 'dm', 'dm.next')`);
    await sql(`select jobs.publish('dm.job', queue => 'dm') from generate_series(1, 3)`);
    await consumer.query('begin');
    await consumer.query(`select jobs.publish_event('dm.ev')`);
    let done = false;
    const setting = sql(`select jobs.create_queue('dm', max_running => 2)`).then(() => null, (e: pg.DatabaseError) => e)
      .finally(() => { done = true; });
    // It waits for the publish (the row) or for nothing; give it the time to take what it takes.
    // (Done is read from its promise: its idle connection may run the next probe, its query text gone.)
    await until(async () => done || (await waitingOnLock('%create_queue%')), 'the limit waiting or done');
    const claimed = await consumer.query(`select job_id from jobs.claim(1, queue => 'dm')`).then(() => null, (e: pg.DatabaseError) => e);
    await consumer.query(claimed ? 'rollback' : 'commit');
    const set = await setting;
    expect([claimed?.code, set?.code]).toEqual([undefined, undefined]);
  });

  it('pause then claim in one transaction: both commit, no deadlock', async () => {
    await sql(`select jobs.create_queue('dp')`);
    await sql(`select jobs.publish('dp.job', queue => 'dp') from generate_series(1, 3)`);
    await consumer.query('begin');
    await consumer.query(`select jobs.pause_queue('dp')`);
    const setting = sql(`select jobs.create_queue('dp', max_running => 2)`).then(() => null, (e: pg.DatabaseError) => e);
    await until(() => waitingOnLock('%create_queue%'), 'the limit waiting for the pause');
    const claimed = await consumer.query(`select job_id from jobs.claim(1, queue => 'dp')`).then(() => null, (e: pg.DatabaseError) => e);
    await consumer.query(claimed ? 'rollback' : 'commit');
    const set = await setting;
    expect([claimed?.code, set?.code]).toEqual([undefined, undefined]);
  });
});
