// Publishes, throttled publishes and nacks inside a user transaction that has
// been open for a while (psql, a PL/pgSQL loop, a trigger in an import): a
// queue's expire_in, a throttle window and a retry's backoff count from the
// call (jobs.call_time), not from the transaction's start, so none has
// already passed when the transaction commits; so does a relative delay, so
// a delayed job is not due early. Also: a nack or fail given no error
// records a default one.
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { publish, publishBulk, publishEvent, rescheduleJobs } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
let client: pg.Client;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.throttle, jobs.subscription');
  client = new pg.Client({ connectionString: db.url });
  await client.connect();
});
afterEach(async () => {
  await client.end();
});

describe('a publish inside a long transaction', () => {
  it('counts a queue\'s expire_in from the publish, on every publish path: the jobs run after the commit', async () => {
    await sql(`select jobs.create_queue('exp', expire_in => 3)`);
    await sql(`select jobs.subscribe('exp.event', 'exp')`);
    // A waiting job that a replace publish (below) rewrites.
    await sql(`select jobs.publish('replaced.old', queue => 'exp', dedupe_key => 'r', scheduled_at => now() + interval '1 hour')`);
    await client.query('begin');
    // The transaction is now older than the queue's expire_in; the checks after
    // its commit have the whole expire_in (3 s) to run, a margin for a loaded machine.
    await client.query('select pg_sleep(3.1)');
    await client.query(`select jobs.publish('one', queue => 'exp')`);
    await client.query(`select jobs.publish_arrays(array['arrays'], queue => 'exp')`);
    await client.query(`select jobs.publish_arrays(array['arrays.delayed'], delays => array[0.001], queue => 'exp')`);
    await client.query(`select jobs.publish_arrays(array['arrays.keyed'], dedupe_keys => array['k'], queue => 'exp')`);
    await client.query(`select jobs.publish_bulk(array[('bulk', null, null, null, null, null)]::jobs.bulk_job[], queue => 'exp')`);
    await client.query(`select jobs.publish_event('exp.event')`);
    await client.query(`select jobs.publish('replaced.new', queue => 'exp', dedupe_key => 'r', dedupe_mode => 'replace')`);
    await client.query('commit');
    // None expired: each is handed out, attempt 1, and no failure recorded.
    const claimed = await sql<{ task: string }>(`select task from jobs.consume(10, queue => 'exp') order by task`);
    expect(claimed.map((r) => r.task)).toEqual(
      ['arrays', 'arrays.delayed', 'arrays.keyed', 'bulk', 'exp.event', 'one', 'replaced.new']);
    expect(await sql(`select task, error from jobs.job`)).toEqual([]);
  });

  it('keeps scheduled_at and created_at at the transaction\'s time: the same transaction can consume what it published', async () => {
    await sql(`select jobs.create_queue('exp', expire_in => 60)`);
    await client.query('begin');
    await client.query('select pg_sleep(0.2)');
    const { id } = (await client.query<{ id: string }>(`select jobs.publish('same.tx', queue => 'exp')::text as id`)).rows[0]!;
    const { rows } = await client.query<{ at_tx: boolean; expiry_from_call: boolean }>(
      `select scheduled_at = now() and created_at = now() as at_tx,
              expires_at >= now() + interval '60.2 seconds' and expires_at <= clock_timestamp() + interval '60 seconds'
                as expiry_from_call
       from jobs.job_queue where job_id = $1`, [id]);
    const claimed = (await client.query<{ job_id: string }>(`select job_id::text from jobs.consume(1, queue => 'exp')`)).rows;
    await client.query('commit');
    expect(claimed).toEqual([{ job_id: id }]);
    expect(rows).toEqual([{ at_tx: true, expiry_from_call: true }]);
  });

  it('keeps an admin clock given as now: the expiry counts from it', async () => {
    await sql(`select jobs.create_queue('exp', expire_in => 10)`);
    await sql(`select jobs.publish('admin', queue => 'exp', now => '2030-01-01T00:00:00Z')`);
    await sql(`select jobs.publish_arrays(array['admin.arrays'], queue => 'exp', now => '2030-01-01T00:00:00Z')`);
    const rows = await sql(`select expires_at = '2030-01-01T00:00:10Z'::timestamptz as ok from jobs.job_queue`);
    expect(rows).toEqual([{ ok: true }, { ok: true }]);
  });
});

describe('publish, publishBulk and publishEvent inside a long transaction', () => {
  it('count expiresInSeconds from the call when runAt is left out: the jobs run after the commit', async () => {
    await sql(`select jobs.create_queue('exp')`);
    await sql(`select jobs.subscribe('exp.event', 'exp')`);
    await db.driver.transaction(async (tx) => {
      await tx.query('select pg_sleep(3.1)'); // older than the expiries (3 s: the margin for the checks after the commit)
      await publish(tx, 'ts.one', null, { queue: 'exp', expiresInSeconds: 3 });
      await publish(tx, 'ts.delayed', null, { queue: 'exp', expiresInSeconds: 3, delaySeconds: 0.001 });
      await publishBulk(tx, [{ task: 'ts.bulk', expiresInSeconds: 3 }], 'exp');
      await publishEvent(tx, 'exp.event', null, { expiresInSeconds: 3 });
    });
    const claimed = await sql<{ task: string }>(`select task from jobs.consume(10, queue => 'exp') order by task`);
    expect(claimed.map((r) => r.task)).toEqual(['exp.event', 'ts.bulk', 'ts.delayed', 'ts.one']);
    expect(await sql(`select task, error from jobs.job`)).toEqual([]);
  });
});

describe('a relative delay inside a long transaction', () => {
  // Each delayed job is due a second after its call (read before it: `before`),
  // not a second after the transaction's start, which was 1.5 s before that.
  const due = `select task, scheduled_at >= $1::timestamptz + interval '1 second' as from_call,
                      scheduled_at <= $2::timestamptz + interval '1 second' as by_commit,
                      created_at < $1::timestamptz as created_at_tx,
                      expires_at - scheduled_at as expiry_after_due
               from jobs.job_queue order by task`;
  const clock = async (q: { query(text: string): Promise<{ rows: unknown[] }> }) =>
    ((await q.query('select clock_timestamp()::text as t')).rows[0] as { t: string }).t;

  it('counts from the call in the SQL API: publish_arrays\' delays, publish_event\'s delay', async () => {
    await sql(`select jobs.create_queue('q')`);
    await sql(`select jobs.subscribe('sql.event', 'q')`);
    await client.query('begin');
    await client.query('select pg_sleep(1.5)');
    const before = await clock(client);
    await client.query(`select jobs.publish_arrays(array['sql.arrays'], delays => array[1], queue => 'q')`);
    await client.query(`select jobs.publish_arrays(array['sql.keyed'], delays => array[1], dedupe_keys => array['k'], queue => 'q')`);
    await client.query(`select jobs.publish_event('sql.event', delay => 1)`);
    const after = await clock(client);
    await client.query('commit');
    const row = { from_call: true, by_commit: true, created_at_tx: true, expiry_after_due: null };
    expect(await sql(due, [before, after])).toEqual(
      [{ task: 'sql.arrays', ...row }, { task: 'sql.event', ...row }, { task: 'sql.keyed', ...row }]);
  });

  it('counts from the call for publish, publishBulk, publishEvent and rescheduleJobs\' delaySeconds, the expiry after it', async () => {
    await sql(`select jobs.subscribe('ts.event', 'default')`);
    const moved = (await sql<{ id: string }>(`select jobs.publish('ts.rescheduled')::text as id`))[0]!.id;
    let before = '';
    let after = '';
    await db.driver.transaction(async (tx) => {
      await tx.query('select pg_sleep(1.5)');
      before = await clock(tx);
      await publish(tx, 'ts.one', null, { delaySeconds: 1, expiresInSeconds: 2 });
      await publishBulk(tx, [{ task: 'ts.bulk', delaySeconds: 1, expiresInSeconds: 2 }, { task: 'ts.bulk.plain' }]);
      await publishEvent(tx, 'ts.event', null, { delaySeconds: 1, expiresInSeconds: 2 });
      expect(await rescheduleJobs(tx, [moved], { delaySeconds: 1 })).toBe(1);
      after = await clock(tx);
    });
    const row = { from_call: true, by_commit: true, created_at_tx: true, expiry_after_due: { seconds: 2 } };
    expect(await sql(due, [before, after])).toEqual([
      { task: 'ts.bulk', ...row },
      // No delay: due at the transaction's time, as before.
      { task: 'ts.bulk.plain', from_call: false, by_commit: true, created_at_tx: true, expiry_after_due: null },
      { task: 'ts.event', ...row }, { task: 'ts.one', ...row },
      // Published before the transaction: only its run time moved.
      { task: 'ts.rescheduled', from_call: true, by_commit: true, created_at_tx: true, expiry_after_due: null }]);
  });
});

describe('a throttle window opened or read inside a long transaction', () => {
  it('opens from the publish: a second publish right after the commit is throttled', async () => {
    await client.query('begin');
    await client.query('select pg_sleep(3.1)'); // older than the window (3 s: the margin for the publish after the commit)
    const first = (await client.query<{ id: string }>(
      `select jobs.publish('thr', dedupe_key => 't', throttle_seconds => 3)::text as id`)).rows[0]!.id;
    // Run and ended at once: only the window holds the key now.
    await client.query(`select jobs.ack(job_id) from jobs.consume(1)`);
    await client.query('commit');
    const second = (await sql<{ id: string }>(
      `select jobs.publish('thr', dedupe_key => 't', throttle_seconds => 3)::text as id`))[0]!.id;
    expect(second).toBe(first);
    expect(await sql(`select count(*)::int as n from jobs.job_queue`)).toEqual([{ n: 0 }]);
  });

  it('reads it at the publish: a window that ended while the transaction was open lets the publish through', async () => {
    const first = (await sql<{ id: string }>(
      `select jobs.publish('thr', dedupe_key => 't', throttle_seconds => 1)::text as id`))[0]!.id;
    await sql(`select jobs.ack(job_id) from jobs.consume(1)`);
    await client.query('begin');
    await client.query('select pg_sleep(1.2)'); // the window ends meanwhile
    const second = (await client.query<{ id: string }>(
      `select jobs.publish('thr', dedupe_key => 't', throttle_seconds => 1)::text as id`)).rows[0]!.id;
    await client.query('commit');
    expect(second).not.toBe(first);
  });
});

describe('a nack inside a long transaction', () => {
  it('waits its backoff from the nack: the retry is not due when the transaction commits', async () => {
    const id = (await sql<{ id: string }>(
      `select jobs.publish('nacked', retry_delay => 3, retry_backoff => 'fixed')::text as id`))[0]!.id;
    await client.query('begin');
    const { attempt } = (await client.query<{ attempt: number }>('select attempt from jobs.consume(1)')).rows[0]!;
    await client.query('select pg_sleep(3.1)'); // longer than the backoff (3 s: the margin for the consume after the commit)
    const { before } = (await client.query<{ before: Date }>('select clock_timestamp() as before')).rows[0]!;
    await client.query(`select jobs.nack($1::bigint, 'boom', attempt => $2)`, [id, attempt]);
    await client.query('commit');
    expect(await sql(`select scheduled_at >= $1::timestamptz + interval '3 seconds' as ok from jobs.job_queue`, [before]))
      .toEqual([{ ok: true }]);
    expect(await sql(`select job_id from jobs.consume(1)`)).toEqual([]);
  });
});

describe('a nack or fail without an error', () => {
  it('records a default error, on every settle path', async () => {
    const ids = (await sql<{ id: string }>(
      `select jobs.publish('e' || i, max_retries => case when i = 4 then 1 else 0 end)::text as id
       from generate_series(1, 5) i order by i`)).map((r) => r.id);
    const consumed = await sql<{ job_id: string; attempt: number }>(
      `select job_id::text, attempt from jobs.consume(5) order by job_id`);
    expect(consumed.map((c) => c.job_id)).toEqual(ids);
    expect(await sql(`select jobs.nack($1::bigint, null) as ok`, [ids[0]])).toEqual([{ ok: true }]);
    expect(await sql(`select jobs.nack(array[$1::bigint], array[null]::text[]) as n`, [ids[1]])).toEqual([{ n: 1 }]);
    await sql(`select jobs.settle(jsonb_build_array(jsonb_build_object('id', $1::bigint, 'attempt', 1, 'outcome', 'fail'),
                                                    jsonb_build_object('id', $2::bigint, 'attempt', 1, 'outcome', 'nack')))`,
              [ids[2], ids[3]]);
    expect(await sql(`select job_id::text as id, status, error from jobs.job order by job_id`)).toEqual([
      { id: ids[0], status: 'failure', error: 'nacked without an error' },
      { id: ids[1], status: 'failure', error: 'nacked without an error' },
      { id: ids[2], status: 'failure', error: 'failed without an error' },
    ]);
    // Retried: its last error says so too.
    expect(await sql(`select last_error from jobs.job_queue where job_id = $1`, [ids[3]]))
      .toEqual([{ last_error: 'nacked without an error' }]);
  });

  it('counts a settle sent again (its reply lost) as what it did, not as stale', async () => {
    const id = (await sql<{ id: string }>(`select jobs.publish('again', max_retries => 0)::text as id`))[0]!.id;
    const [c] = await sql<{ attempt: number }>(`select attempt from jobs.claim(1, worker_id => 'w1')`);
    const settle = `select jobs.settle_arrays(array[$1::bigint], array[$2::int], array['nack'], worker_id => 'w1') as r`;
    expect((await sql<{ r: { failed: number } }>(settle, [id, c!.attempt]))[0]!.r.failed).toBe(1);
    expect((await sql<{ r: { failed: number; stale: number } }>(settle, [id, c!.attempt]))[0]!.r)
      .toMatchObject({ failed: 1, stale: 0 });
  });
});
