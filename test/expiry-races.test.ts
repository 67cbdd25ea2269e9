// Expiry of waiting jobs against what runs beside it: serial keys held by
// another transaction, a dedupe key held by an expired job, a claim that
// waited for a lock past an expiry, and reschedule.
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sqlErrorOf, testDb } from './support/db.js';
import { until } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const T0 = Date.parse('2030-01-01T00:00:00Z');
const at = (s: number) => new Date(T0 + s * 1000).toISOString();
const clients: pg.Client[] = [];

/** A session of its own (for a transaction held open), closed after the test. */
async function session(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  clients.push(c);
  return c;
}

/** Whether the backend `pid` waits for a lock. */
const waitsOnLock = async (pid: number) =>
  (await sql<{ w: string | null }>(`select wait_event_type as w from pg_stat_activity where pid = $1`, [pid]))[0]?.w === 'Lock';
const pidOf = async (c: pg.Client) => (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency, jobs.running_slot');
  await sql(`delete from jobs.queue where name <> 'default'`);
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.end().catch(() => undefined)));
});

describe('expiry and serial keys', () => {
  it("a job waiting behind its key's running head expires without the key's lock: no deadlock with a transaction holding the key and acking the head", async () => {
    const head = (await sql<{ id: string }>(`select jobs.publish('k.run', null, serial_key => 'K')::text as id`))[0]!.id;
    const [claimed] = await sql<{ job_id: string; attempt: number }>(`select job_id::text, attempt from jobs.consume(1)`);
    expect(claimed!.job_id).toBe(head);
    const waiting = (await sql<{ id: string }>(
      `select jobs.publish('k.run', null, serial_key => 'K', expires_at => now() + interval '1 hour')::text as id`))[0]!.id;
    await sql(`update jobs.job_queue set expires_at = now() - interval '1 second' where job_id = $1`, [waiting]);

    // A holds K's lock (a publish of the key), as a transactional handler would before acking the head.
    const a = await session();
    await a.query('begin');
    await a.query(`select jobs.publish('k.run', null, serial_key => 'K')`);
    // B's expiry ends the waiting job: it must not wait for K's lock while holding that job's row.
    const b = await session();
    const bPid = await pidOf(b);
    let bDone = false;
    const expired = b.query('select jobs.expire() as n').then((r) => { bDone = true; return r.rows[0].n as number; });
    await until(async () => bDone || await waitsOnLock(bPid), 'the expiry to end or wait for a lock');
    expect(bDone).toBe(true);
    expect(await expired).toBe(1);
    // A acks the head and commits: the next job of K (A's) gets its turn.
    await a.query(`select jobs.settle_arrays(array[$1::bigint], array[$2::integer], array['ack'])`, [head, claimed!.attempt]);
    await a.query('commit');
    expect(await sql(`select job_id::text as id, status, error from jobs.job order by job_id`)).toEqual([
      { id: head, status: 'success', error: null },
      { id: waiting, status: 'failure', error: expect.stringMatching(/^expired: not started before /) }]);
    expect(await sql(`select count(*)::int as n from jobs.job_queue where serial_key = 'K' and not serial_wait`)).toEqual([{ n: 1 }]);
  });
});

describe('a dedupe key held by a job past its expiry', () => {
  it('is taken by a keep-mode publish: the new job is published and runs, the old one still ends as expired', async () => {
    const old = (await sql<{ id: string }>(`select jobs.publish('d.run', '{"v":1}', $1::timestamptz, now => $1::timestamptz,
      dedupe_key => 'D', expires_at => $2::timestamptz)::text as id`, [at(0), at(60)]))[0]!.id;
    // Before its expiry the key is held: the same id.
    expect((await sql(`select jobs.publish('d.run', '{"v":2}', now => $1::timestamptz, dedupe_key => 'D')::text as id`, [at(30)]))[0])
      .toEqual({ id: old });
    const fresh = (await sql<{ id: string }>(
      `select jobs.publish('d.run', '{"v":3}', now => $1::timestamptz, dedupe_key => 'D')::text as id`, [at(61)]))[0]!.id;
    expect(fresh).not.toBe(old);
    expect(await sql(`select job_id::text as id, body from jobs.consume(10, $1::timestamptz)`, [at(62)])).toEqual([{ id: fresh, body: { v: 3 } }]);
    expect(await sql(`select status, error, body from jobs.job where job_id = $1`, [old])).toEqual([
      { status: 'failure', error: 'expired: not started before 2030-01-01T00:01:00.000Z', body: { v: 1 } }]);
  });

  it('also in a bulk publish with dedupe keys (publish_arrays)', async () => {
    const old = (await sql<{ id: string }>(`select jobs.publish('d.run', '{"v":1}', $1::timestamptz, now => $1::timestamptz,
      dedupe_key => 'D', expires_at => $2::timestamptz)::text as id`, [at(0), at(60)]))[0]!.id;
    const ids = (await sql<{ ids: string[] }>(`select jobs.publish_arrays(array['d.run', 'd.run'], '[{"v":3}, {"v":4}]'::jsonb,
      dedupe_keys => array['D', 'E'], now => $1::timestamptz)::text[] as ids`, [at(61)]))[0]!.ids;
    expect(ids).toHaveLength(2);
    expect(ids).not.toContain(old);
    expect((await sql(`select job_id::text as id from jobs.consume(10, $1::timestamptz) order by job_id`, [at(62)])).map((r) => r.id))
      .toEqual(ids);
    expect(await sql(`select status from jobs.job where job_id = $1`, [old])).toEqual([{ status: 'failure' }]);
  });
});

describe('a claim that waited for a lock', () => {
  it('compares expiries with the clock as it picks, not as its statement began: a job that expired meanwhile is not handed out', async () => {
    await sql(`select jobs.create_queue('lim', max_running => 5)`);
    // A holds the queue's claim lock (as a transaction that claimed from it does).
    const a = await session();
    await a.query('begin');
    await a.query(`select pg_advisory_xact_lock(736043, hashtext('lim'))`);
    const id = (await sql<{ id: string }>(
      `select jobs.publish('l.run', null, queue => 'lim', expires_at => clock_timestamp() + interval '3 seconds')::text as id`))[0]!.id;
    const expires = (await sql<{ e: Date }>(`select expires_at as e from jobs.job_queue where job_id = $1`, [id]))[0]!.e;
    const b = await session();
    const bPid = await pidOf(b);
    const claimed = b.query(`select job_id::text as id from jobs.consume(10, null, 'lim')`);
    await until(() => waitsOnLock(bPid), 'the claim to wait for the queue\'s claim lock');
    // The claim began before the job's expiry...
    const began = (await sql<{ began: Date }>(`select query_start as began from pg_stat_activity where pid = $1`, [bPid]))[0]!.began;
    expect(began.getTime()).toBeLessThan(expires.getTime());
    // ...and picks after it.
    await until(async () => (await sql<{ past: boolean }>(`select clock_timestamp() > $1::timestamptz as past`, [expires]))[0]!.past,
                'the job\'s expiry to pass');
    await a.query('commit');
    expect((await claimed).rows).toEqual([]);
    await sql(`select jobs.expire()`);
    expect(await sql(`select status from jobs.job where job_id = $1`, [id])).toEqual([{ status: 'failure' }]);
  });
});

describe('reschedule', () => {
  it('refuses to move a job to or past its expiry (PD007 run_at), moving none of the call; before it is fine', async () => {
    const ids = await Promise.all([60, null].map(async (e) => (await sql<{ id: string }>(
      `select jobs.publish('r.run', null, $1::timestamptz, now => $1::timestamptz, expires_at => $2::timestamptz)::text as id`,
      [at(0), e === null ? null : at(e)]))[0]!.id));
    const e = await sqlErrorOf(sql, `select jobs.reschedule($1::bigint[], $2::timestamptz)`, [ids, at(60)]);
    expect([e.code, e.column]).toEqual(['PD007', 'run_at']);
    expect(e.message).toMatch(new RegExp(`^run_at: must be before the expiry of job ${ids[0]} \\(2030-01-01T00:01:00.000Z\\)`));
    expect(await sql(`select count(*)::int as n from jobs.job_queue where scheduled_at <> $1::timestamptz`, [at(0)])).toEqual([{ n: 0 }]);
    expect(await sql(`select jobs.reschedule($1::bigint[], $2::timestamptz) as n`, [ids, at(59)])).toEqual([{ n: 2 }]);
  });
});
