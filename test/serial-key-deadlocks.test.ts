// Three lock shapes around serial keys that deadlocked (40P01, one side
// rolled back), each forced on a real PostgreSQL with no timing: a session
// holds a lock, each step waits until a session is seen waiting for a lock
// (or done), then the lock is let go.
// a. A failed job's cascade took its serial key's lock, then the keys of
//    the dependants it cancelled (a second sorted run); a bulk publish of
//    both keys holds the lower one and waits for the higher.
// b. A transactional handler publishes with serial key S (holding its lock),
//    then acks its own job H, which is being cancelled; a publish of H's
//    dedupe key took the key over (holding H's row) and waited for S. So did
//    a replace or a keep_waiting publish (single or bulk) of H's key, H
//    cancelled or not.
// c. Two claims publishing drain-run ticks with serial keys, in tick order:
//    one takes S1 then wants S2, the other S2 then S1.
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { doneOrBlocked, lockSessions, outcome } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);

const one = async (text: string, params?: unknown[]) => (await sql(text, params))[0]!;
const id = async (text: string) => (await one(`select (${text})::text as id`)).id as string;

/** Two keys in their locks' order (jobs.lock_serial_keys: hashtext). */
async function keysInLockOrder(): Promise<[string, string]> {
  const rows = await sql<{ k: string }>(`select k from unnest(array['sa', 'sb']) k order by hashtext(k)`);
  return [rows[0]!.k, rows[1]!.k];
}

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency, jobs.recurring');
});

/**
 * Part b's race: a handler's transaction runs `handlerPublish` (taking a lock
 * until it commits), a publish taking over h's dedupe key waits (or is done),
 * then the handler acks h; each side commits unless it failed (40P01).
 * Answers the ack's rows (or error text) and the publish's rows (or error text).
 */
async function ackWhilePublishing(h: string, handlerPublish: string, publish: string): Promise<[unknown, unknown]> {
  const [handler, publisher] = [await session(), await session()];
  await handler.query('begin');
  await handler.query(handlerPublish);
  await publisher.query('begin');
  const published = outcome(publisher.query(publish));
  await doneOrBlocked(sql, publisher, published);
  const acked = await outcome(handler.query(`select jobs.ack(${h}::bigint) as ok`));
  await handler.query(typeof acked === 'string' ? 'rollback' : 'commit');
  const p = await published;
  await publisher.query(typeof p === 'string' ? 'rollback' : 'commit');
  return [acked, p];
}

describe('a. a cascade and a bulk publish of the same serial keys', () => {
  it('both commit; the dependant whose key the bulk held is deferred, then ends as cancelled', async () => {
    const [lo, hi] = await keysInLockOrder();
    const f = await id(`jobs.publish('f', serial_key => '${hi}', max_retries => 0)`);
    const d = await id(`jobs.publish('d', serial_key => '${lo}', depends_on => array[${f}])`);
    expect((await sql(`select job_id::text as id from jobs.consume(5)`)).map((r) => r.id)).toEqual([f]);

    const [holder, settle, bulk] = [await session(), await session(), await session()];
    await holder.query('begin');
    await holder.query(`select pg_advisory_xact_lock(736038, hashtext($1))`, [hi]);
    // f's failure waits for its own key (held), its cascade then wants d's.
    await settle.query('begin');
    const settled = outcome(settle.query(`select jobs.nack(${f}::bigint, 'f failed') as ok`));
    await doneOrBlocked(sql, settle, settled);
    // The bulk takes the lower key (d's), then waits for the higher.
    await bulk.query('begin');
    const published = outcome(bulk.query(`select jobs.publish_arrays(array['p1', 'p2'], serial_keys => array[$1, $2]) as ids`,
                                         [lo, hi]));
    await doneOrBlocked(sql, bulk, published);
    await holder.query('commit');

    const r1 = await settled;
    await settle.query(typeof r1 === 'string' ? 'rollback' : 'commit');
    const r2 = await published;
    await bulk.query(typeof r2 === 'string' ? 'rollback' : 'commit');
    expect([r1, typeof r2 === 'string' ? r2 : 'published']).toEqual([[{ ok: true }], 'published']); // 40P01 on one side before the fix

    // d was not ended here (its key was busy): its cancel is requested and its
    // lease passed, so the next expiry ends it and hands its key on.
    expect(await sql(`select task, attempt, cancel_requested_at is not null as cancelling, lease_until <= now() as passed,
                      serial_wait from jobs.job_queue order by job_id`)).toEqual([
      { task: 'd', attempt: 0, cancelling: true, passed: true, serial_wait: false },
      { task: 'p1', attempt: 0, cancelling: false, passed: null, serial_wait: true },
      { task: 'p2', attempt: 0, cancelling: false, passed: null, serial_wait: false },
    ]);
    await sql(`select jobs.expire()`);
    expect(await sql(`select task, status, error from jobs.job order by job_id`)).toEqual([
      { task: 'f', status: 'failure', error: 'f failed' },
      { task: 'd', status: 'cancelled', error: `cancelled: dependency ${f} did not succeed` },
    ]);
    expect(await sql(`select task, serial_key, serial_wait from jobs.job_queue order by job_id`)).toEqual([
      { task: 'p1', serial_key: lo, serial_wait: false },
      { task: 'p2', serial_key: hi, serial_wait: false },
    ]);
  });
});

describe("b. a transactional handler's ack of its cancelled job and a publish taking over its dedupe key", () => {
  const publishes = {
    single: `select array[jobs.publish('p', dedupe_key => 'dk')] as ids`,
    bulk: `select jobs.publish_arrays(array['p'], dedupe_keys => array['dk']) as ids`,
    // A replace takes the key of any running holder, cancelled or not.
    replace: `select array[jobs.publish('p', dedupe_key => 'dk', dedupe_mode => 'replace')] as ids`,
    'replace, not cancelled': `select array[jobs.publish('p', dedupe_key => 'dk', dedupe_mode => 'replace')] as ids`,
    // keep_waiting takes it from a running holder as a replace does, in one publish or a bulk.
    'keep_waiting, not cancelled': `select array[jobs.publish('p', dedupe_key => 'dk', dedupe_mode => 'keep_waiting')] as ids`,
    'keep_waiting bulk, not cancelled':
      `select jobs.publish_arrays(array['p'], dedupe_keys => array['dk'], dedupe_modes => array['keep_waiting']) as ids`,
  };
  for (const [how, publish] of Object.entries(publishes)) {
    it(`${how}: both commit; the publish waits for the handler, then writes its job`, async () => {
      const h = await id(`jobs.publish('h', dedupe_key => 'dk', serial_key => 's2')`);
      expect((await sql(`select job_id::text as id from jobs.consume(1)`)).map((r) => r.id)).toEqual([h]);
      if (!how.endsWith('not cancelled')) await sql(`select jobs.cancel(${h})`);

      // The handler's transaction publishes the next job of its series (serial key s2), while a
      // publish of h's dedupe key takes it over and wants s2; then the handler acks its own job.
      const [acked, p] = await ackWhilePublishing(h, `select jobs.publish('next', serial_key => 's2')`, publish);
      expect([acked, typeof p]).toEqual([[{ ok: true }], 'object']); // 40P01 on one side before the fix

      expect(await sql(`select task, status from jobs.job order by job_id`)).toEqual([{ task: 'h', status: 'success' }]);
      // h ended before the publish took its key: nothing to take over, nothing to wait behind.
      expect(await sql(`select task, dedupe_key, serial_key, serial_wait from jobs.job_queue order by job_id`)).toEqual([
        { task: 'next', dedupe_key: null, serial_key: 's2', serial_wait: false },
        { task: 'p', dedupe_key: 'dk', serial_key: null, serial_wait: false },
      ]);
    });
  }

  // The same with a bounded queue's lock in place of the serial key (h has
  // none): a cancelling holder's key taken over by a publish, one or a bulk;
  // a running one's by a replace or a keep_waiting publish (one or a bulk).
  const bounded = {
    single: `select array[jobs.publish('p', queue => 'bq', dedupe_key => 'dk')] as ids`,
    bulk: `select jobs.publish_arrays(array['p'], queue => 'bq', dedupe_keys => array['dk']) as ids`,
    'replace, not cancelled':
      `select array[jobs.publish('p', queue => 'bq', dedupe_key => 'dk', dedupe_mode => 'replace')] as ids`,
    'keep_waiting, not cancelled':
      `select array[jobs.publish('p', queue => 'bq', dedupe_key => 'dk', dedupe_mode => 'keep_waiting')] as ids`,
    'keep_waiting bulk, not cancelled': `select jobs.publish_arrays(array['p'], queue => 'bq', dedupe_keys => array['dk'],
                                                                   dedupe_modes => array['keep_waiting']) as ids`,
  };
  for (const [how, publish] of Object.entries(bounded)) {
    it(`a bounded queue's lock, ${how}: the publish waits for the handler, then writes its job`, async () => {
      await sql(`select jobs.create_queue('bq', max_size => 100) where not exists (select from jobs.queue where name = 'bq')`);
      const h = await id(`jobs.publish('h', dedupe_key => 'dk')`);
      expect((await sql(`select job_id::text as id from jobs.consume(1)`)).map((r) => r.id)).toEqual([h]);
      if (!how.endsWith('not cancelled')) await sql(`select jobs.cancel(${h})`);

      // The handler publishes into the bounded queue (holding its lock until commit), a publish
      // into it takes h's key over and waits for that lock, then the handler acks its own job.
      const [acked, p] = await ackWhilePublishing(h, `select jobs.publish('next', queue => 'bq')`, publish);
      expect([acked, typeof p]).toEqual([[{ ok: true }], 'object']); // 40P01 on one side before the fix
      expect(await sql(`select task, queue, dedupe_key from jobs.job_queue order by job_id`)).toEqual([
        { task: 'next', queue: 'bq', dedupe_key: null }, { task: 'p', queue: 'bq', dedupe_key: 'dk' }]);
    });
  }
});

describe('c. two claims publishing ticks of serial-key schedules crosswise', () => {
  it('both claims answer; a tick whose key is busy stays due for the next claim', async () => {
    const T0 = '2030-01-01T00:00:00Z';
    const at = (s: number) => new Date(Date.parse(T0) + s * 1000).toISOString();
    // Ticks in order: a (s1), c (s2) due for the first claim; b (s2), d (s1) for the second.
    for (const [name, key, s] of [['a', 's1', 10], ['c', 's2', 20], ['b', 's2', 30], ['d', 's1', 40]] as const) {
      await sql(`select jobs.schedule($1, '0 0 1 1 *', $1 || '.t', serial_key => $2, runner => 'drains', now => $3)`,
                [name, key, T0]);
      await sql(`update jobs.recurring set next_run_at = $2 where name = $1`, [name, at(s)]);
    }
    const [holder, first, second] = [await session(), await session(), await session()];
    await holder.query('begin');
    await holder.query(`select pg_advisory_xact_lock(736038, hashtext('s1'))`);
    // The first claim takes a and c, and waits at a's key; the second takes b and d.
    await first.query('begin');
    const c1 = outcome(first.query(`select jobs.claim_json(1, now => $1) as r`, [at(25)]));
    await doneOrBlocked(sql, first, c1);
    await second.query('begin');
    const c2 = outcome(second.query(`select jobs.claim_json(1, now => $1) as r`, [at(45)]));
    await doneOrBlocked(sql, second, c2);
    await holder.query('commit');

    const r1 = await c1;
    await first.query(typeof r1 === 'string' ? 'rollback' : 'commit');
    const r2 = await c2;
    await second.query(typeof r2 === 'string' ? 'rollback' : 'commit');
    expect([typeof r1, typeof r2]).toEqual(['object', 'object']); // 40P01 on one side before the fix

    // The ticks left due are published by the next claim, none recorded as failed.
    await sql(`select jobs.publish_due_schedules($1)`, [at(45)]);
    expect(await sql(`select name, last_run_at, last_error from jobs.recurring order by name`)).toEqual(
      [['a', 10], ['b', 30], ['c', 20], ['d', 40]].map(([name, s]) => ({ name, last_run_at: new Date(at(s as number)), last_error: null })));
    expect(await sql(`select task, serial_key from jobs.job_queue order by task`)).toEqual([
      { task: 'a.t', serial_key: 's1' }, { task: 'b.t', serial_key: 's2' },
      { task: 'c.t', serial_key: 's2' }, { task: 'd.t', serial_key: 's1' },
    ]);
  });
});
