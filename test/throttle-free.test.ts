// Throttle windows let go as pg-boss lets a singletonSeconds slot go
// (sql/0032_throttle.sql): a cancelled job holds none (pg-boss's slot index
// leaves cancelled jobs out), whichever way it was cancelled; a job whose
// history is deleted by maintenance's retention takes its window with it;
// an archived one still exists and keeps it. Jobs that succeeded or failed
// hold theirs. Times are injected (`now =>`), never slept.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const one = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await sql<R>(text, params))[0]!;
// A fixed clock: windows are measured from it.
const T = '2030-01-01T00:00:00Z';
const at = (seconds: number) => `'${T}'::timestamptz + make_interval(secs => ${seconds})`;
/** A throttled publish of key at T + now seconds; extra: more named arguments. */
const throttled = async (key: string, now: number, seconds = 60, extra = '') =>
  (await one<{ id: string }>(`select jobs.publish('sync.user', '{"n":1}', now => ${at(now)}, dedupe_key => '${key}',
                                                 throttle_seconds => ${seconds}${extra})::text as id`)).id;
const windowOf = (key: string) => one(`select job_id::text as id, until from jobs.throttle where dedupe_key = $1`, [key]);
const endedAs = (id: string) => one(`select status from jobs.job where job_id = $1`, [id]);
/** Claims the pending jobs at T + now seconds (up to 10); answers their ids. */
const claim = async (now: number) => (await sql<{ id: string }>(`select job_id::text as id from jobs.consume(10, ${at(now)})`)).map((r) => r.id);
const queue = () => createQueue({ driver: { ...db.driver, close: async () => {} } });

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.job_archive, jobs.dependency, jobs.throttle');
});

describe('a cancelled job lets go of its throttle window', () => {
  it('cancelled waiting, by jobs.cancel, cancel_bulk, cancel_key and purge_queue: the next throttled publish writes a job, '
    + 'which opens the window anew; failed or completed, it holds the window', async () => {
    await sql(`select jobs.create_queue('purged')`);
    const jobs = {
      cancel: await throttled('cancel', 0),
      bulk: await throttled('bulk', 0),
      key: await throttled('key', 0),
      purge: await throttled('purge', 0, 60, `, queue => 'purged'`),
    };
    // Held while they wait, as ever.
    for (const [key, id] of Object.entries(jobs)) expect(await throttled(key, 1)).toBe(id);
    expect(await one(`select jobs.cancel($1::bigint, now => ${at(2)}) as r`, [jobs.cancel])).toEqual({ r: 'cancelled' });
    expect(await one(`select jobs.cancel_bulk($1::bigint[], now => ${at(2)}) as n`, [[jobs.bulk]])).toEqual({ n: 1 });
    expect(await one(`select jobs.cancel_key('key', now => ${at(2)}) as r`)).toEqual({ r: 'cancelled' });
    expect(await one(`select jobs.purge_queue('purged') as n`)).toEqual({ n: 1 });
    for (const [key, id] of Object.entries(jobs)) {
      expect(await endedAs(id)).toEqual({ status: 'cancelled' });
      const next = await throttled(key, 10);
      expect(next).not.toBe(id);
      expect(await windowOf(key)).toEqual({ id: next, until: new Date('2030-01-01T00:01:10Z') });
      expect(await throttled(key, 20)).toBe(next);
    }
    // Failed or completed while it waited: the window holds (pg-boss's slot index keeps those states).
    const failed = await throttled('failed', 0);
    const completed = await throttled('completed', 0);
    await sql(`select jobs.fail($1::bigint[], now => ${at(1)})`, [[failed]]);
    await sql(`select jobs.complete($1::bigint[], now => ${at(1)})`, [[completed]]);
    expect([await endedAs(failed), await endedAs(completed)]).toEqual([{ status: 'failure' }, { status: 'success' }]);
    expect([await throttled('failed', 10), await throttled('completed', 10)]).toEqual([failed, completed]);
  });

  it('a cancel frees only a window that still names the cancelled job', async () => {
    // The key's window names a job that succeeded; a plain publish's job of the key is then cancelled.
    const done = await throttled('k', 0);
    expect(await claim(0)).toEqual([done]);
    await sql(`select jobs.ack($1::bigint, null, ${at(1)})`, [done]);
    const plain = (await one<{ id: string }>(`select jobs.publish('sync.user', dedupe_key => 'k', now => ${at(2)})::text as id`)).id;
    expect(await throttled('k', 3)).toBe(plain); // the active job answers first
    await sql(`select jobs.cancel($1::bigint, now => ${at(4)})`, [plain]);
    expect(await throttled('k', 5)).toBe(done);
    expect(await windowOf('k')).toEqual({ id: done, until: new Date('2030-01-01T00:01:00Z') });
    // And the window of a cancelled job is free, whoever publishes meanwhile.
    const cancelled = await throttled('c', 0);
    await sql(`select jobs.cancel($1::bigint, now => ${at(1)})`, [cancelled]);
    expect(await throttled('c', 2)).not.toBe(cancelled);
  });

  it('a dependant the cascade cancels lets go of its window, at once too when the cascade defers its end', async () => {
    // At once: the failure of its dependency ends it as cancelled.
    const parent = (await one<{ id: string }>(`select jobs.publish('p', now => ${at(0)})::text as id`)).id;
    const child = await throttled('child', 0, 60, `, depends_on => array[${parent}::bigint]`);
    expect(await throttled('child', 1)).toBe(child);
    await sql(`select jobs.fail($1::bigint[], now => ${at(2)})`, [[parent]]);
    expect(await endedAs(child)).toEqual({ status: 'cancelled' });
    const next = await throttled('child', 3);
    expect(next).not.toBe(child);
    await sql('truncate jobs.job_queue, jobs.job, jobs.dependency, jobs.throttle');

    // Deferred: a key head past the cascade's 500 keys waits, cancel requested, for an expiry to end it.
    const root = (await one<{ id: string }>(`select jobs.publish('p', max_retries => 0, now => ${at(0)})::text as id`)).id;
    await sql(`select count(jobs.publish('child', serial_key => 'k:' || g, depends_on => array[$1::bigint], now => ${at(0)}))
               from generate_series(1, 500) g`, [root]);
    const doomed = await throttled('doomed', 0, 60, `, serial_key => 'k:501', depends_on => array[${root}::bigint]`);
    expect(await claim(0)).toEqual([root]);
    await sql(`select jobs.nack($1::bigint, 'broke', null, ${at(1)})`, [root]);
    expect(await one(`select cancel_requested_at is not null as deferred from jobs.job_queue where job_id = $1`, [doomed]))
      .toEqual({ deferred: true });
    const again = await throttled('doomed', 2);
    expect(again).not.toBe(doomed);
    expect(await windowOf('doomed')).toEqual({ id: again, until: new Date('2030-01-01T00:01:02Z') });
    // The expiry ends it as cancelled; the new job keeps key and window.
    await sql(`select jobs.expire(now => ${at(3)})`);
    expect(await endedAs(doomed)).toEqual({ status: 'cancelled' });
    expect(await throttled('doomed', 4)).toBe(again);
  });

  it('a running job: its window is free once its cancel is requested, and stays free once it ends cancelled, '
    + 'by its drain (whose claim and settle read no window) or by the claims\' expiry; one that failed or acked holds it', async () => {
    // Requested: a throttled publish takes over key and window, as a plain keep-mode publish takes the key.
    const running = await throttled('run', 0);
    expect(await claim(0)).toEqual([running]);
    expect(await one(`select jobs.cancel($1::bigint, now => ${at(1)}) as r`, [running])).toEqual({ r: 'cancelling' });
    const taken = await throttled('run', 2);
    expect(taken).not.toBe(running);
    expect(await windowOf('run')).toEqual({ id: taken, until: new Date('2030-01-01T00:01:02Z') });
    expect(await one(`select jobs.nack($1::bigint, 'stopped', null, ${at(3)}) as ok`, [running])).toEqual({ ok: true });
    expect(await endedAs(running)).toEqual({ status: 'cancelled' });
    expect(await throttled('run', 4)).toBe(taken);
    await sql('truncate jobs.job_queue, jobs.job, jobs.throttle');

    // Ended by its drain: claimed and settled in a batch with jobs that fail and succeed, which hold their windows.
    const [cancelled, acked, failed, askedAcked] = [await throttled('cancelled', 0), await throttled('acked', 0),
      await throttled('failed', 0, 60, ', max_retries => 0'), await throttled('askedAcked', 0)];
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    try {
      await c.query('begin');
      expect((await c.query(`select job_id from jobs.consume(10, ${at(0)})`)).rows).toHaveLength(4);
      await c.query(`select jobs.cancel_bulk($1::bigint[], now => ${at(1)})`, [[cancelled, askedAcked]]);
      const ids = [cancelled, acked, failed, askedAcked];
      await c.query(`select jobs.settle_arrays($1::bigint[], array[1, 1, 1, 1], array['release', 'ack', 'nack', 'ack'],
                                               null, null, null, null, ${at(2)})`, [ids]);
      // Counted for this transaction only: the claim and the settle read no throttle window.
      expect((await c.query(`select seq_scan + coalesce(idx_scan, 0) as reads from pg_stat_xact_user_tables
                             where relid = 'jobs.throttle'::regclass`)).rows).toEqual([{ reads: '0' }]);
      await c.query('commit');
    } finally {
      await c.query('rollback').catch(() => {});
      await c.end();
    }
    expect([await endedAs(cancelled), await endedAs(acked), await endedAs(failed), await endedAs(askedAcked)])
      .toEqual([{ status: 'cancelled' }, { status: 'success' }, { status: 'failure' }, { status: 'success' }]);
    expect(await throttled('cancelled', 5)).not.toBe(cancelled);
    expect([await throttled('acked', 5), await throttled('failed', 5), await throttled('askedAcked', 5)])
      .toEqual([acked, failed, askedAcked]);

    // Ended cancelled by an expiry of its lease (its drain gone), then published again.
    const byExpiry = await throttled('expiry', 0, 3600, `, timeout_seconds => 10, max_retries => 0`);
    expect(await claim(0)).toContain(byExpiry);
    await sql(`select jobs.cancel($1::bigint, now => ${at(1)})`, [byExpiry]);
    expect(await one(`select jobs.expire(now => ${at(20)}) as n`)).toEqual({ n: 1 });
    expect(await endedAs(byExpiry)).toEqual({ status: 'cancelled' });
    expect(await throttled('expiry', 30, 3600)).not.toBe(byExpiry);
  });
});

describe('maintenance\'s retention and throttle windows', () => {
  /** A throttled job of key, run and acked (or cancelled while it waited) at T + ended seconds. */
  const endedJob = async (key: string, ended: number, how: 'ack' | 'cancel' = 'ack') => {
    const id = await throttled(key, ended - 1, 3600);
    if (how === 'cancel') {
      await sql(`select jobs.cancel($1::bigint, now => ${at(ended)})`, [id]);
    } else {
      expect(await claim(ended - 1)).toEqual([id]);
      await sql(`select jobs.ack($1::bigint, null, ${at(ended)})`, [id]);
    }
    return id;
  };
  const maintain = (now: number, args = '') =>
    one<{ r: Record<string, number> }>(`select jobs.maintain(retention => '100 seconds', now => ${at(now)}${args}) as r`)
      .then((x) => x.r);

  it('a deleted job takes its window with it: the next throttled publish writes a job; at most max_rows a pass', async () => {
    const [a, b, c] = [await endedJob('a', 1), await endedJob('b', 2), await endedJob('c', 500)];
    expect(await throttled('a', 10, 3600)).toBe(a);
    expect(await maintain(300, ', max_rows => 1')).toEqual({ expired: 0, ticks: 0, deleted: 1, archived: 0, windows: 0, misses: 0, left: 0 });
    expect(await sql(`select dedupe_key from jobs.throttle order by 1`)).toEqual([{ dedupe_key: 'b' }, { dedupe_key: 'c' }]);
    const next = await throttled('a', 310, 3600);
    expect(next).not.toBe(a);
    expect(await queue().getJob(a)).toBeNull(); // what the publish answered before: a job that is gone
    expect(await queue().getJob(next)).toMatchObject({ id: next, task: 'sync.user' });
    expect(await throttled('b', 310, 3600)).toBe(b); // not deleted yet
    await maintain(310);
    expect(await throttled('b', 320, 3600)).not.toBe(b);
    expect(await throttled('c', 320, 3600)).toBe(c); // ended too recently: kept, and so is its window
  });

  it('a deleted job takes only a window that still names it', async () => {
    const first = await throttled('k', 0, 10);
    expect(await claim(0)).toEqual([first]);
    await sql(`select jobs.ack($1::bigint, null, ${at(1)})`, [first]);
    const second = await throttled('k', 200, 3600); // the first window is over: a new job, a new window
    expect(await claim(200)).toEqual([second]);
    await sql(`select jobs.ack($1::bigint, null, ${at(201)})`, [second]);
    expect((await maintain(250)).deleted).toBe(1); // the first job only
    expect(await windowOf('k')).toEqual({ id: second, until: new Date('2030-01-01T01:03:20Z') });
    expect(await throttled('k', 260, 3600)).toBe(second);
    await maintain(400); // now the second: its window goes with it
    expect(await throttled('k', 410, 3600)).not.toBe(second);
  });

  it('a job that ended keyless (its key taken over while its cancel was requested) lets go of its window once deleted or archived, '
    + 'as it did while its history was there', async () => {
    for (const archive of [false, true]) {
      await sql('truncate jobs.job_queue, jobs.job, jobs.job_archive, jobs.throttle');
      const cancelled = await throttled('k', 0, 3600);
      expect(await claim(0)).toEqual([cancelled]);
      expect(await one(`select jobs.cancel($1::bigint, now => ${at(1)}) as r`, [cancelled])).toEqual({ r: 'cancelling' });
      // A plain publish takes the key over (Cancellation): the cancelled job ends keyless, its window still names it.
      const plain = (await one<{ id: string }>(`select jobs.publish('sync.user', now => ${at(2)}, dedupe_key => 'k')::text as id`)).id;
      await sql(`select jobs.nack($1::bigint, 'stopped', null, ${at(3)})`, [cancelled]);
      expect(await claim(4)).toEqual([plain]);
      await sql(`select jobs.ack($1::bigint, null, ${at(5)})`, [plain]);
      expect(await one(`select status, dedupe_key from jobs.job where job_id = $1`, [cancelled])).toEqual({ status: 'cancelled', dedupe_key: null });
      expect(await windowOf('k')).toMatchObject({ id: cancelled });
      expect(await maintain(300, `, archive => ${archive}`)).toMatchObject({ deleted: archive ? 0 : 2, archived: archive ? 2 : 0 });
      // Gone (or archived as cancelled): the window is free, not answered with the cancelled job's id.
      const next = await throttled('k', 310, 3600);
      expect(next, `archive => ${archive}`).not.toBe(cancelled);
      expect(await windowOf('k')).toEqual({ id: next, until: new Date('2030-01-01T01:05:10Z') });
    }
  });

  it('an archived job still exists and keeps its window (getJob finds it), unless it was cancelled or expired unstarted', async () => {
    const done = await endedJob('done', 1);
    const cancelled = await endedJob('cancelled', 1, 'cancel');
    const expired = (await one<{ id: string }>(`select jobs.publish('sync.user', now => ${at(0)}, dedupe_key => 'expired',
      throttle_seconds => 3600, expires_at => ${at(1)})::text as id`)).id;
    expect(await one(`select jobs.expire(now => ${at(2)}) as n`)).toEqual({ n: 1 });
    expect(await maintain(300, ', archive => true')).toEqual({ expired: 0, ticks: 0, deleted: 0, archived: 3, windows: 0, misses: 0, left: 0 });
    expect(await throttled('done', 310, 3600)).toBe(done);
    expect(await queue().getJob(done)).toMatchObject({ id: done, state: 'success' });
    for (const [key, id] of [['cancelled', cancelled], ['expired', expired]] as const) {
      const next = await throttled(key, 310, 3600);
      expect(next).not.toBe(id);
      expect(await windowOf(key)).toEqual({ id: next, until: new Date('2030-01-01T01:05:10Z') });
    }
  });
});
