// A transactional ack that waits for its job's row as its timeout fires: the
// drain nacks it, the nack queues behind the ack, the ack commits and its
// COMMIT's answer is lost with the connection. The drain asks whether the
// job ended as this delivery's success: it did, so the job counts once, as
// succeeded, the nack (stale) is no failure, and the counts add up.
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Driver } from '../src/db/driver.js';
import { pgDriver } from '../src/db/pg.js';
import { createQueue, defineTask } from '../src/index.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';
import { replyDropProxy, type ReplyDropProxy } from './support/reply-drop-proxy.js';

const db = await testDb();
const sql = db.sql;
let proxy: ReplyDropProxy;
beforeAll(async () => { proxy = await replyDropProxy(db.url); });
afterAll(async () => { await proxy.close(); });

const waiting = async (text: string) => Number((await sql<{ n: string }>(
  `select count(*) as n from pg_stat_activity
   where datname = current_database() and wait_event_type = 'Lock' and query like $1`, [`%${text}%`]))[0]!.n);

it("a lost COMMIT answer of an ack that raced its timeout's nack: counted once, as succeeded, no failure", async () => {
  const driver = pgDriver(proxy.url, { max: 10 });
  afterAll(() => driver.close());
  let go!: () => void;
  const mayReturn = new Promise<void>((r) => (go = r));
  let letHoldEnd!: () => void;
  const holdEnds = new Promise<void>((r) => (letHoldEnd = r));
  // The drain's question how the COMMIT ended (settler.ts endedAsSuccess): settled, answered or failed.
  let commitAsked = false;
  const query = (async (text, params, options) => {
    try {
      return await driver.query(text, params, options);
    } finally {
      if (text.includes("worker_id = $3 and status = 'success'")) commitAsked = true;
    }
  }) as Driver['query'];
  const tx = defineTask('tx.late', async () => { await mayReturn; return 'done'; }, { transactional: true });
  const hold = defineTask('hold', async () => { await holdEnds; });
  const q = createQueue({ driver: { ...driver, query, close: async () => {} }, tasks: { tx, hold } });
  const id = await q.publish('tx.late', null, { maxRetries: 3, timeoutSeconds: 1 });
  await q.publish('hold', null, { timeoutSeconds: 30 });
  const drained = q.drain(5, Date.now() + 60_000);
  await until(async () => (await sql('select 1 from jobs.job_queue where job_id = $1 and lease_until is not null', [id])).length > 0,
    'the job to be claimed');
  const locker = new pg.Client({ connectionString: db.url });
  await locker.connect();
  let dropped: Promise<void>;
  try {
    await locker.query('begin');
    await locker.query('select 1 from jobs.job_queue where job_id = $1 for update', [id]);
    dropped = proxy.dropReplyTo('commit', 'greatest(clock_timestamp()');
    go();
    await until(async () => (await waiting('greatest(clock_timestamp()')) === 1, 'its ack to wait for the row');
    // Its timeout (1 s) fires: the drain's nack (a settle, or a claim's) waits behind the ack.
    await until(async () => (await waiting('settle_arrays')) + (await waiting('claim_json')) === 2, "the drain's nack to wait");
    await locker.query('commit');
  } finally {
    await locker.end();
  }
  await dropped!;
  await until(async () => (await waiting('settle_arrays')) + (await waiting('claim_json')) === 0, 'the nack to go');
  // The hold keeps the drain running until it has asked how its COMMIT ended (its answer is counted in the same turn).
  await until(async () => commitAsked, 'the drain to ask how its COMMIT ended');
  letHoldEnd();
  const report = await drained;
  expect(await sql('select status, result from jobs.job where job_id = $1', [id])).toEqual([{ status: 'success', result: 'done' }]);
  expect(report.failures).toEqual([]);
  expect(report).toMatchObject({ claimed: 2, succeeded: 2, failed: 0, retried: 0, released: 0, cancelled: 0, stale: 0, failuresOmitted: 0 });
}, 60_000);
