// Issue 7, feature 10: NOTIFY on queued / picked / completed, and waitFor.
import { spawnSync } from 'node:child_process';
import { getEventListeners } from 'node:events';
import { resolve } from 'node:path';
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { JOB_STATE_SQL } from '../../src/db/job-outcome.js';
import { createQueue, type QueueEvent, type TaskMap } from '../../src/index.js';
import { testDb } from '../support/db.js';
import { until } from '../support/drain-process.js';
import { tcpProxy } from '../support/tcp-proxy.js';

const db = await testDb();
const sql = db.sql;
const deadline = () => Date.now() + 120_000;
// waitFor needs LISTEN: a queue built from a connection string (node-postgres).
const queueWith = (tasks: TaskMap = {}) => createQueue({ connectionString: db.url, tasks });

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

/** A raw LISTEN session that counts notifications per channel. */
async function listen() {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  const got: Record<'pgdrain_queued' | 'pgdrain_picked' | 'pgdrain_completed', string[]> & Record<string, string[] | undefined> =
    { pgdrain_queued: [], pgdrain_picked: [], pgdrain_completed: [] };
  let marks = 0;
  client.on('notification', (n) => (n.channel === 'test_mark' ? marks++ : got[n.channel]?.push(n.payload ?? '')));
  await client.query('listen pgdrain_queued; listen pgdrain_picked; listen pgdrain_completed; listen test_mark');
  /**
   * Resolves once every notification committed before it has arrived: a NOTIFY sent now comes after them
   * (a listener gets them in commit order). Not a fixed wait: one that a loaded machine delivers late would
   * be missed, and a check that none came would pass without looking.
   */
  const caughtUp = async () => {
    const mark = marks + 1;
    await sql('notify test_mark');
    await until(async () => marks >= mark, 'the LISTEN session to catch up');
  };
  return { got, caughtUp, close: () => client.end() };
}

describe('NOTIFY', () => {
  it('one notification per statement, not per job: 2,000 jobs in batches of 500', async () => {
    const l = await listen();
    const q = queueWith({ t: () => null });
    try {
      await q.publishBulk(Array.from({ length: 2000 }, () => ({ task: 't' })));
      const report = await q.drain(500, deadline());
      await l.caughtUp();
      expect(report.succeeded).toBe(2000);
      expect(l.got.pgdrain_queued).toEqual(['default']);
      const picked = l.got.pgdrain_picked.flatMap((p) => p.split(','));
      const completed = l.got.pgdrain_completed.flatMap((p) => p.split(','));
      expect(new Set(picked).size).toBe(2000);
      expect(new Set(completed).size).toBe(2000);
      // 500 ids per notification at most: ~4 claims and ~4 settles, never thousands.
      expect(l.got.pgdrain_picked.length).toBeLessThanOrEqual(report.batches);
      expect(l.got.pgdrain_completed.length).toBeLessThanOrEqual(2 * report.batches + 2);
    } finally {
      await l.close();
      await q.close();
    }
  });

  it('ids of 19 digits fit: a claim of 500 of them notifies in payloads under 8,000 bytes, and succeeds', async () => {
    const l = await listen();
    await sql(`alter table jobs.job_queue alter column job_id restart with 9000000000000000000`);
    try {
      await sql(`select jobs.publish_arrays(array_fill('t.big'::text, array[500]))`);
      expect(await sql(`select count(*)::int as n from jobs.consume(500)`)).toEqual([{ n: 500 }]);
      await l.caughtUp();
      expect(l.got.pgdrain_picked.length).toBeGreaterThan(1);
      expect(Math.max(...l.got.pgdrain_picked.map((p) => p.length))).toBeLessThan(8000);
      expect(new Set(l.got.pgdrain_picked.flatMap((p) => p.split(','))).size).toBe(500);
    } finally {
      await sql(`alter table jobs.job_queue alter column job_id restart with 1000`);
      await l.close();
    }
  });

  it('nothing is notified for a rolled-back publish', async () => {
    const l = await listen();
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query('begin');
    await client.query(`select jobs.publish('t')`);
    await client.query('rollback');
    await client.end();
    await l.caughtUp();
    expect(l.got.pgdrain_queued).toEqual([]);
    await l.close();
  });
});

describe('waitFor', () => {
  it('many waiters at once: their checks go one at a time (pg warns of queries queued on a client)', () => {
    // In a fresh process: Node prints a deprecation once per process.
    const script = `
      import { createQueue } from ${JSON.stringify(resolve('dist/src/index.js'))};
      const q = createQueue({ connectionString: process.env.DATABASE_URL, tasks: { t: () => 1 } });
      const ids = await q.publishBulk(Array.from({ length: 4 }, () => ({ task: 't', timeoutSeconds: 5 })));
      const waits = Promise.all(ids.map((id) => q.waitFor(id)));
      await q.drain(10, Date.now() + 30000);
      console.log((await waits).map((o) => o.status).join(','));
      await q.close();`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script],
                        { encoding: 'utf8', env: { ...process.env, DATABASE_URL: db.url }, timeout: 60_000 });
    expect(r.stdout.trim(), r.stderr).toBe('success,success,success,success');
    expect(r.stderr).not.toMatch(/DeprecationWarning/);
  });

  it('resolves with the outcome when a drain elsewhere completes the job', async () => {
    const q = queueWith({ sum: (b: { a: number; b: number }) => b.a + b.b });
    try {
      const id = await q.publish('sum', { a: 2, b: 3 });
      const waiting = q.waitFor(id);
      let done = false;
      void waiting.then(() => (done = true));
      // Its first check of the job has answered (its LISTEN session idle after it), not a fixed 200 ms: a job
      // ended before would be answered by that check, without the NOTIFY this test is about.
      await until(async () => (await sql(`select 1 from pg_stat_activity where datname = current_database()
                                          and application_name = 'pgdrain-events' and state = 'idle' and query = $1`,
                                         [JOB_STATE_SQL])).length, 'waitFor to ask for the job');
      expect(done).toBe(false);
      const worker = queueWith({ sum: (b: { a: number; b: number }) => b.a + b.b });
      await worker.drain(10, deadline(), { workerId: 'other' });
      await worker.close();
      expect(await waiting).toMatchObject({ id, status: 'success', result: 5, attempts: 1, workerId: 'other', error: null });
    } finally {
      await q.close();
    }
  });

  it('answers at once for an ended job, reports failures and cancels, refuses unknown ids', async () => {
    const q = queueWith({ bad: () => { throw new Error('kaput'); } });
    try {
      const bad = await q.publish('bad', null, { maxRetries: 0 });
      await q.drain(10, deadline());
      const outcome = await q.waitFor(bad);
      expect(outcome.status).toBe('failure');
      expect(outcome.error).toMatch(/kaput/);
      const later = await q.publish('bad', null, { delaySeconds: 3600 });
      const waiting = q.waitFor(later);
      await q.cancel(later, 'not needed');
      expect(await waiting).toMatchObject({ status: 'cancelled', error: 'cancelled: not needed' });
      await expect(q.waitFor('987654321')).rejects.toMatchObject({ field: 'jobId' });
      await expect(q.waitFor('x')).rejects.toMatchObject({ field: 'jobId' });
      const pending = await q.publish('bad', null, { delaySeconds: 3600 });
      // A string timeout made `Date.now() + '3000'` a string: a wait for ever.
      for (const [options, field] of [[{ timeoutMs: Number.NaN }, 'options.timeoutMs'], [{ timeoutMs: '3000' }, 'options.timeoutMs'],
                                      [{ timeoutMs: -1 }, 'options.timeoutMs'], [{ signal: {} }, 'options.signal']] as const) {
        await expect(q.waitFor(pending, options as never)).rejects.toMatchObject({ code: 'invalid_argument', field });
      }
      // A timeout past setTimeout's 24.8 days is a far one, not one that fires at once.
      let farSettled = false;
      const far = q.waitFor(pending, { timeoutMs: 3e9 }).finally(() => (farSettled = true));
      await expect(q.waitFor(pending, { timeoutMs: 200 })).rejects.toMatchObject({ code: 'timed_out', field: 'timeoutMs' });
      expect(farSettled).toBe(false);
      await q.cancel(pending);
      expect(await far).toMatchObject({ status: 'cancelled' });
    } finally {
      await q.close();
    }
  });

  it('waits that share one signal leave no listener on it once they end', async () => {
    const q = queueWith();
    try {
      const id = await q.publish('t');
      await sql(`select jobs.ack(job_id) from jobs.consume(1)`);
      const shared = new AbortController();
      for (let i = 0; i < 3; i++) expect(await q.waitFor(id, { signal: shared.signal })).toMatchObject({ status: 'success' });
      expect(getEventListeners(shared.signal, 'abort')).toHaveLength(0);
    } finally {
      await q.close();
    }
  });

  it('subscribe sees queued, picked and completed; a driver-built queue says waitFor needs LISTEN', async () => {
    const q = queueWith({ t: () => null });
    const events: QueueEvent[] = [];
    try {
      const stop = await q.subscribe((e) => events.push(e));
      const id = await q.publish('t');
      await q.drain(10, deadline());
      // A marker on a channel it listens to, sent after the drain's statements committed: its session gets them in
      // commit order, so once the marker is heard they all were (not a fixed wait, which a loaded machine outlasts).
      await sql(`select pg_notify('pgdrain_queued', 'test-mark')`);
      await until(async () => events.some((e) => e.event === 'queued' && e.queue === 'test-mark'), 'the marker');
      stop();
      expect(events.map((e) => e.event)).toEqual(['queued', 'picked', 'completed', 'queued']);
      expect(events[2]!.ids).toEqual([id]);
    } finally {
      await q.close();
    }
    const viaDriver = createQueue({ driver: { ...db.driver, close: async () => {} } });
    await expect(viaDriver.waitFor('1')).rejects.toMatchObject({ field: 'connectionString' });
  });
});

describe('the LISTEN session', () => {
  // Open sessions only (their LISTEN ran): these tests lose an open one; one lost while it opens is reopened too (test/events-opening.test.ts).
  const listenPids = async () => (await sql<{ pid: number }>(
    `select pid from pg_stat_activity where datname = current_database() and application_name = 'pgdrain-events'
       and query <> '' and not (state = 'active' and query like 'listen %')`)).map((r) => r.pid);

  it('lost (pg_terminate_backend): waitFor still answers and subscribers hear later events, on a new session', async () => {
    const q = queueWith({ t: () => 'ok' });
    try {
      const events: QueueEvent[] = [];
      await q.subscribe((e) => events.push(e));
      const id = await q.publish('t');
      const waiting = q.waitFor(id, { timeoutMs: 60_000 });
      const [first] = await until(async () => { const p = await listenPids(); return p.length === 1 && p; }, 'the LISTEN session');
      await sql('select pg_terminate_backend($1)', [first]);
      await until(async () => { const p = await listenPids(); return p.length === 1 && p[0] !== first; }, 'a new LISTEN session');
      await createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: { t: () => 'ok' } }).drain(10, deadline());
      expect(await waiting).toMatchObject({ id, status: 'success' });
      await until(async () => events.some((e) => e.event === 'completed' && e.ids.includes(id)), 'the completed event');
    } finally {
      await q.close();
    }
  });

  it('a waiter whose session another caller reopened within the reconnect delay still asks again', async () => {
    const q = queueWith();
    try {
      const a = await q.publish('t');
      const b = await q.publish('t');
      await sql(`select * from jobs.consume(2)`);
      const waiting = q.waitFor(a, { timeoutMs: 30_000 });
      const [first] = await until(async () => { const p = await listenPids(); return p.length === 1 && p; }, 'the LISTEN session');
      await sql('select pg_terminate_backend($1)', [first]);
      await sql('select jobs.ack($1::bigint)', [a]); // announced to no session
      const other = q.waitFor(b, { timeoutMs: 30_000 }); // reopens the session before the reconnect timer does
      expect(await waiting).toMatchObject({ id: a, status: 'success' });
      await sql('select jobs.ack($1::bigint)', [b]);
      expect(await other).toMatchObject({ id: b, status: 'success' });
    } finally {
      await q.close();
    }
  });

  it("a waiter's timeout and its session's loss hold while its check waits (here on a lock)", async () => {
    const q = queueWith();
    const locker = new pg.Client({ connectionString: db.url });
    await locker.connect();
    try {
      const id = await q.publish('t');
      await sql(`select * from jobs.consume(1)`);
      await q.subscribe(() => {}); // the session is open: the waits below block in their check
      await locker.query('begin; lock table jobs.job_queue in access exclusive mode');
      const timedOut = await q.waitFor(id, { timeoutMs: 300 }).then(() => 'answered', (e: unknown) => e);
      expect(timedOut).toMatchObject({ code: 'timed_out' });

      const waiting = q.waitFor(id, { timeoutMs: 30_000 });
      const [pid] = await until(async () => { const p = await listenPids(); return p.length === 1 && p; }, 'the LISTEN session');
      await until(async () => (await sql(`select 1 from pg_stat_activity where pid = $1 and wait_event_type = 'Lock'`, [pid])).length > 0,
        'the check to wait on the lock');
      await sql('select pg_terminate_backend($1)', [pid]); // lost under the check: asked again on the next session
      await locker.query('commit');
      await sql('select jobs.ack($1::bigint)', [id]);
      expect(await waiting).toMatchObject({ id, status: 'success' });
    } finally {
      await locker.query('rollback').catch(() => {});
      await locker.end();
      await q.close();
    }
  });

  it("a subscriber that throws does not keep the event from the others, nor break the session", async () => {
    const q = queueWith();
    const uncaught: unknown[] = [];
    const vitestOwn = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    process.on('uncaughtException', (e) => uncaught.push(e));
    try {
      await q.subscribe((e) => { if (e.event === 'queued') throw new Error('listener bug'); });
      const heard: string[] = [];
      await q.subscribe((e) => heard.push(e.event));
      const id = await q.publish('t');
      await until(async () => heard.includes('queued'), 'the other listener to hear it');
      await sql(`select jobs.ack(job_id) from jobs.consume(1)`);
      expect(await q.waitFor(id, { timeoutMs: 30_000 })).toMatchObject({ status: 'success' });
      await until(async () => uncaught.length > 0, 'the error, thrown outside the session');
      expect(uncaught).toMatchObject([{ message: 'listener bug' }]);
    } finally {
      process.removeAllListeners('uncaughtException');
      for (const l of vitestOwn) process.on('uncaughtException', l);
      await q.close();
    }
  });

  it('close() ends it at once on a server that stopped answering, and while it is still opening', async () => {
    const target = new URL(db.url);
    const proxy = await tcpProxy(target.hostname, Number(target.port));
    try {
      const via = new URL(db.url);
      via.port = String(proxy.port);
      const q = createQueue({ connectionString: via.href, tasks: {} });
      await q.subscribe(() => {});
      proxy.freeze();
      await q.close(); // with client.end() waiting on the silent server, this never returned
      await proxy.close(); // the server's end of that session goes with it

      const opening = createQueue({ connectionString: db.url, tasks: {} });
      const subscribed = opening.subscribe(() => {}).then(() => 'subscribed', (e: unknown) => e);
      await opening.close();
      expect(await subscribed).toMatchObject({ message: 'these job events are closed' });
      await until(async () => (await listenPids()).length === 0, 'no LISTEN session left');
    } finally {
      await proxy.close();
    }
  });
});

describe('turning events off', () => {
  it.each(['off', 'OFF', 'false', '0'])('pgdrain.events = %s silences every channel', async (spelling) => {
    const l = await listen();
    const client = new pg.Client({ connectionString: db.url, options: `-c pgdrain.events=${spelling}` });
    await client.connect();
    try {
      await client.query(`select jobs.publish('t')`);
      await client.query(`select jobs.claim_json(10, ids => null)`);
      await client.query(`select jobs.settle(jsonb_agg(jsonb_build_object('id', job_id, 'attempt', attempt, 'outcome', 'ack')))
                          from jobs.job_queue`);
      await l.caughtUp();
      expect(await sql(`select status from jobs.job`)).toEqual([{ status: 'success' }]);
      expect(l.got).toEqual({ pgdrain_queued: [], pgdrain_picked: [], pgdrain_completed: [] });
    } finally {
      await client.end();
      await l.close();
    }
  });
});
