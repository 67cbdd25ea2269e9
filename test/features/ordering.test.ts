// Issue 7, features 3 and 4: dependencies and serialization keys; and the
// claim order as drain()'s claims see it (they start at a remembered head).
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createQueue, type TaskMap } from '../../src/index.js';
import { testDb } from '../support/db.js';
import { until } from '../support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const one = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await sql<R>(text, params))[0]!;
/** Whether a session waits for a serial key's lock: any other wait (an autovacuum truncating a table under the suite's load) is not one. */
const waitingOnKeyLock = async (pid: number) => (await sql(
  `select 1 from pg_locks where pid = $1 and not granted and locktype = 'advisory' and classid = 736038`, [pid])).length > 0;
const queueWith = (tasks: TaskMap = {}) => createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });
const deadline = () => Date.now() + 120_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

const consumed = async (n = 50) => (await sql<{ body: string }>(`select body from jobs.consume($1) order by job_id`, [n])).map((r) => r.body);
const ackAll = (bodies: string[]) => sql(`select jobs.ack(job_id) from jobs.job_queue where body = any($1::jsonb[])`,
  [bodies.map((b) => JSON.stringify(b))]);

describe('serialization key', () => {
  it('one running job per key, FIFO within the key, other keys and plain jobs not held back', async () => {
    for (const b of ['a1', 'a2', 'a3']) await sql(`select jobs.publish('t', to_jsonb($1::text), serial_key => 'acct:a')`, [b]);
    for (const b of ['b1', 'b2']) await sql(`select jobs.publish('t', to_jsonb($1::text), serial_key => 'acct:b')`, [b]);
    await sql(`select jobs.publish('t', '"p1"'), jobs.publish('t', '"p2"')`);
    expect(await consumed()).toEqual(['a1', 'b1', 'p1', 'p2']);
    expect(await consumed()).toEqual([]); // a2 waits for a1 even though nothing else is left
    await ackAll(['a1']);
    expect(await consumed()).toEqual(['a2']);
    // A retry keeps the key: a3 still waits while a2 is scheduled again.
    await sql(`select jobs.nack(job_id, 'later', now() + interval '1 hour') from jobs.job_queue where body = '"a2"'`);
    expect(await consumed()).toEqual([]);
    expect(await one(`select state from jobs.all where body = '"a3"'`)).toEqual({ state: 'blocked' });
    await sql(`update jobs.job_queue set scheduled_at = now() where body = '"a2"'`);
    expect(await consumed()).toEqual(['a2']);
    await ackAll(['a2', 'b1']);
    expect(await consumed()).toEqual(['a3', 'b2']);
  });

  it('a slow key with many waiting jobs costs the claim nothing: they are not in the claim index', async () => {
    await sql(`select jobs.publish('t', to_jsonb(i), serial_key => 'slow') from generate_series(1, 5000) i`);
    await sql(`select jobs.publish('t', '"fast"')`);
    expect(await consumed(10)).toEqual([1, 'fast']);
    const { n } = await one<{ n: number }>(`select count(*)::int as n from jobs.job_queue where serial_wait`);
    expect(n).toBe(4999);
  });

  it('a failed or cancelled head hands the key on; publishes racing the end never leave the key stuck', async () => {
    await sql(`select jobs.publish('t', '"x1"', serial_key => 'k', max_retries => 0)`);
    await sql(`select jobs.publish('t', '"x2"', serial_key => 'k')`);
    await sql(`select jobs.publish('t', '"x3"', serial_key => 'k')`);
    await sql(`select jobs.nack(job_id, 'bad') from jobs.consume(5)`);
    expect(await one(`select jobs.cancel(job_id) as r from jobs.job_queue where body = '"x2"'`)).toEqual({ r: 'cancelled' });
    expect(await consumed()).toEqual(['x3']);

    // Drains settling while others publish to the same keys.
    await sql('truncate jobs.job_queue, jobs.job');
    const q = queueWith({ t: async () => sleep(1) });
    const publishing = (async () => {
      for (let i = 0; i < 60; i++) await q.publish('t', i, { serialKey: `key${i % 3}` });
    })();
    const drains = (async () => {
      for (let i = 0; i < 15; i++) await q.drain(20, deadline());
    })();
    await Promise.all([publishing, drains]);
    await q.drain(20, deadline());
    await q.drain(20, deadline());
    await q.drain(20, deadline());
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 0 });
    expect(await one(`select count(*)::int as n from jobs.job where status = 'success'`)).toEqual({ n: 60 });
  });

  it('a head that ends while a waiting job of its key is cancelled: no deadlock, and the next one takes over', async () => {
    const [a, b] = [new pg.Client({ connectionString: db.url }), new pg.Client({ connectionString: db.url })];
    await Promise.all([a.connect(), b.connect()]);
    try {
      const publish = async (body: string) =>
        (await one<{ id: string }>(`select jobs.publish('t', $1::jsonb, serial_key => 'k')::text as id`, [JSON.stringify(body)])).id;
      const waitingOnLock = async (pid: number) => (await sql(
        `select 1 from pg_stat_activity where pid = $1 and wait_event_type = 'Lock'`, [pid])).length > 0;
      const pidOf = async (c: pg.Client) => (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
      const key = () => sql(`select body, serial_wait from jobs.job_queue where serial_key = 'k' order by job_id`);

      // 1. The cancel holds the waiting job's row while the head's ack waits for it.
      const head = await publish('h1');
      const w = await publish('w1');
      await publish('w2');
      expect(await consumed()).toEqual(['h1']);
      await b.query('begin');
      expect((await b.query(`select jobs.cancel($1::bigint) as r`, [w])).rows).toEqual([{ r: 'cancelled' }]);
      const aPid = await pidOf(a);
      const acked = a.query(`select jobs.ack($1::bigint) as ok`, [head]);
      await until(() => waitingOnLock(aPid), "the head's ack to wait on the cancelled job's row");
      await b.query('commit');
      expect((await acked).rows).toEqual([{ ok: true }]);
      expect(await key()).toEqual([{ body: 'w2', serial_wait: false }]);

      // 2. The head's end holds the key's lock when the cancel comes.
      await sql('truncate jobs.job_queue, jobs.job');
      const head2 = await publish('h2');
      const w3 = await publish('w3');
      await publish('w4');
      expect(await consumed()).toEqual(['h2']);
      await a.query('begin');
      await a.query(`select pg_advisory_xact_lock(736038, hashtext('k'))`);
      const bPid = await pidOf(b);
      let done = false;
      const cancelled = b.query(`select jobs.cancel($1::bigint) as r`, [w3]).finally(() => (done = true));
      await until(async () => done || waitingOnKeyLock(bPid), 'the cancel to end or to wait for the key');
      if (!done) {
        await a.query('rollback');
        await cancelled;
        throw new Error('the cancel waited for the key lock the ending head holds: with the ack next, a deadlock');
      }
      expect((await cancelled).rows).toEqual([{ r: 'cancelled' }]);
      expect((await a.query(`select jobs.ack($1::bigint) as ok`, [head2])).rows).toEqual([{ ok: true }]);
      await a.query('commit');
      expect(await key()).toEqual([{ body: 'w4', serial_wait: false }]);
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
  });

  it('cancelling a waiting job whose dependant waits on the same key takes no key lock: no deadlock with the head\'s end', async () => {
    const [a, b] = [new pg.Client({ connectionString: db.url }), new pg.Client({ connectionString: db.url })];
    await Promise.all([a.connect(), b.connect()]);
    try {
      const head = (await one<{ id: string }>(`select jobs.publish('t', '"h"', serial_key => 'k')::text as id`)).id;
      const w = (await one<{ id: string }>(`select jobs.publish('t', '"w"', serial_key => 'k')::text as id`)).id;
      await sql(`select jobs.publish('t', '"y"', serial_key => 'k', depends_on => array[$1::bigint])`, [w]);
      await sql(`select jobs.publish('t', '"z"', serial_key => 'k')`);
      expect(await consumed()).toEqual(['h']);
      // The head's end holds the key's lock (and would next wait for w's row, which the cancel holds).
      await a.query('begin');
      await a.query(`select pg_advisory_xact_lock(736038, hashtext('k'))`);
      const bPid = (await b.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
      let done = false;
      const cancelled = b.query(`select jobs.cancel($1::bigint) as r`, [w]).finally(() => (done = true));
      await until(async () => done || waitingOnKeyLock(bPid), 'the cancel to end or to wait for the key');
      if (!done) {
        await a.query('rollback');
        await cancelled;
        throw new Error("cancelling w (and its dependant y) waited for the key lock the ending head holds: with the ack next, a deadlock");
      }
      expect((await cancelled).rows).toEqual([{ r: 'cancelled' }]);
      expect((await a.query(`select jobs.ack($1::bigint) as ok`, [head])).rows).toEqual([{ ok: true }]);
      await a.query('commit');
      expect(await sql(`select body, serial_wait from jobs.job_queue order by job_id`)).toEqual([{ body: 'z', serial_wait: false }]);
      expect(await sql(`select body, status from jobs.job where body <> '"h"' order by job_id`))
        .toEqual([{ body: 'w', status: 'cancelled' }, { body: 'y', status: 'cancelled' }]);
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
  });

  it('drains: never two jobs of a key at once, each key in publish order, keys in parallel', async () => {
    const log: { key: string; i: number; start: number; end: number }[] = [];
    let maxParallel = 0;
    let now = 0;
    const q = queueWith({
      t: async (b: { key: string; i: number }) => {
        const start = ++now;
        maxParallel = Math.max(maxParallel, ++active);
        await sleep(5);
        active--;
        log.push({ ...b, start, end: ++now });
      },
    });
    let active = 0;
    for (let i = 0; i < 8; i++) for (const key of ['a', 'b', 'c']) await q.publish('t', { key, i }, { serialKey: key });
    await Promise.all([q.drain(10, deadline()), q.drain(10, deadline())]);
    expect(log).toHaveLength(24);
    for (const key of ['a', 'b', 'c']) {
      const runs = log.filter((r) => r.key === key).sort((x, y) => x.start - y.start);
      expect(runs.map((r) => r.i)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
      for (let k = 1; k < runs.length; k++) expect(runs[k]!.start).toBeGreaterThan(runs[k - 1]!.end);
    }
    expect(maxParallel).toBeGreaterThan(1); // unrelated keys ran side by side
  });
});

describe('dependencies', () => {
  it('a job waits until all its dependencies succeeded', async () => {
    const { a } = await one<{ a: string }>(`select jobs.publish('t', '"A"') as a`);
    const { b } = await one<{ b: string }>(`select jobs.publish('t', '"B"') as b`);
    await sql(`select jobs.publish('t', '"C"', depends_on => array[$1, $2]::bigint[])`, [a, b]);
    expect(await consumed()).toEqual(['A', 'B']);
    await ackAll(['A']);
    expect(await consumed()).toEqual([]);
    expect(await one(`select state from jobs.all where body = '"C"'`)).toEqual({ state: 'blocked' });
    await ackAll(['B']);
    expect(await consumed()).toEqual(['C']);
    // A dependency that already succeeded counts as met.
    const { d } = await one<{ d: string }>(`select jobs.publish('t', '"D"', depends_on => array[$1]::bigint[]) as d`, [a]);
    expect(await consumed()).toEqual(['D']);
    expect(d).toBeDefined();
  });

  it('a failed or cancelled dependency cancels its dependants, transitively', async () => {
    const { a } = await one<{ a: string }>(`select jobs.publish('t', '"A"', max_retries => 0) as a`);
    const { b } = await one<{ b: string }>(`select jobs.publish('t', '"B"', depends_on => array[$1]::bigint[]) as b`, [a]);
    const { c } = await one<{ c: string }>(`select jobs.publish('t', '"C"', depends_on => array[$1]::bigint[]) as c`, [b]);
    const { x } = await one<{ x: string }>(`select jobs.publish('t', '"X"') as x`);
    const { y } = await one<{ y: string }>(`select jobs.publish('t', '"Y"', depends_on => array[$1]::bigint[]) as y`, [x]);
    await sql(`select jobs.nack(job_id, 'broken') from jobs.consume(1)`); // A fails for good
    expect(await sql(`select job_id::text as id, status, error from jobs.job where job_id in ($1, $2) order by job_id`, [b, c])).toEqual([
      { id: b, status: 'cancelled', error: `cancelled: dependency ${a} did not succeed` },
      { id: c, status: 'cancelled', error: `cancelled: dependency ${b} did not succeed` },
    ]);
    await sql(`select jobs.cancel($1)`, [x]);
    expect(await one(`select status from jobs.job where job_id = $1`, [y])).toEqual({ status: 'cancelled' });
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 0 });
  });

  it.each(['ack', 'fail'] as const)('a dependant published while its dependency\'s %s waits on it is not stranded', async (outcome) => {
    // The publish holds the dependency's row (FOR KEY SHARE) and its uncommitted dependency row
    // while the settle's delete waits on it: the settle must see that row once it may go on.
    const publisher = new pg.Client({ connectionString: db.url });
    await publisher.connect();
    try {
      const { d } = await one<{ d: string }>(`select jobs.publish('t.dep', max_retries => 0)::text as d`);
      const { attempt } = await one<{ attempt: number }>('select attempt from jobs.consume(1)');
      await publisher.query('begin');
      const x = (await publisher.query<{ x: string }>(
        `select jobs.publish('t.dependant', depends_on => array[$1::bigint])::text as x`, [d])).rows[0]!.x;
      const settled = sql(`select jobs.settle_arrays(array[$1::bigint], array[$2::int], array[$3], null, array['boom'])`,
                          [d, attempt, outcome]);
      await until(async () => (await sql(`select 1 from pg_stat_activity where datname = current_database()
        and wait_event_type = 'Lock' and query like '%settle_arrays%' and pid <> pg_backend_pid()`)).length > 0,
        'the settle to wait on the publish');
      await publisher.query('commit');
      await settled;
      expect(await one(`select state from jobs.all where job_id = $1`, [x]))
        .toEqual({ state: outcome === 'ack' ? 'pending' : 'cancelled' });
      expect(await one(`select count(*)::int as n from jobs.dependency`)).toEqual({ n: 0 });
    } finally {
      await publisher.end();
    }
  });

  it('a dependency that succeeded and was archived by maintain counts as succeeded', async () => {
    const { a } = await one<{ a: string }>(`select jobs.publish('t.a')::text as a`);
    await sql(`select jobs.ack(job_id) from jobs.consume(1)`);
    await sql(`select jobs.maintain('0 seconds', true)`);
    expect(await one(`select count(*)::int as n from jobs.job_archive where job_id = $1`, [a])).toEqual({ n: 1 });
    const { b } = await one<{ b: string }>(`select jobs.publish('t.b', depends_on => array[$1::bigint])::text as b`, [a]);
    expect(await one(`select waiting_deps from jobs.job_queue where job_id = $1`, [b])).toEqual({ waiting_deps: 0 });
    await sql('truncate jobs.job_archive');
  });

  it('unknown or already failed dependencies are refused at publish, naming depends_on', async () => {
    await expect(sql(`select jobs.publish('t', depends_on => array[424242]::bigint[])`))
      .rejects.toMatchObject({ code: 'PD013', column: 'depends_on', message: "depends_on: job 424242 does not exist (never published, deleted by jobs.delete_jobs, or ended and deleted by jobs.maintain's retention)" });
    await sql(`select jobs.publish('t', max_retries => 0)`);
    const { id } = (await sql<{ id: string }>(`select job_id as id from jobs.consume(1)`))[0]!;
    await sql(`select jobs.nack($1::bigint, 'x')`, [id]);
    await expect(sql(`select jobs.publish('t', depends_on => array[$1]::bigint[])`, [id]))
      .rejects.toMatchObject({ code: 'PD013', message: `depends_on: job ${id} already ended as failure, so this job could never run` });
    await expect(queueWith().publish('t', null, { dependsOn: ['x1'] })).rejects.toMatchObject({ field: 'options.dependsOn.0' });
  });

  it('a FIFO chain and a small DAG run in order in one drain', async () => {
    const order: string[] = [];
    const q = queueWith({ step: (b: string) => void order.push(b) });
    const a = await q.publish('step', 'a');
    const b = await q.publish('step', 'b', { dependsOn: [a] });
    const c = await q.publish('step', 'c', { dependsOn: [b] });
    // DAG: d and e after c; f after d and e.
    const d = await q.publish('step', 'd', { dependsOn: [c] });
    const e = await q.publish('step', 'e', { dependsOn: [c] });
    await q.publish('step', 'f', { dependsOn: [d, e] });
    const report = await q.drain(10, deadline());
    expect(report.succeeded).toBe(6);
    expect(order.slice(0, 3)).toEqual(['a', 'b', 'c']);
    expect(order.slice(3, 5).sort()).toEqual(['d', 'e']);
    expect(order[5]).toBe('f');
  });
});

describe("drain()'s claims start at the head the session's last claim found", () => {
  // One session, so the claims share what it remembers; one `now` for all of
  // them, so a remembered head is never a second old unless a test says so.
  const session = new pg.Client({ connectionString: db.url });
  const at = new Date('2030-01-01T00:00:00Z');
  const later = (ms: number) => new Date(at.getTime() + ms);
  const ids = new Map<string, string>();

  beforeAll(async () => session.connect());
  afterAll(async () => session.end());

  beforeEach(async () => {
    await session.query(`select set_config('pgdrain.claim_head', '', false), set_config('pgdrain.lease_floor', '', false)`);
    ids.clear();
  });

  /** Publishes the jobs in claim order, one second apart, all due at `at`. */
  const publish = async (bodies: string[], priority = 0) => {
    for (const [i, b] of bodies.entries()) {
      const scheduledAt = new Date(at.getTime() - (bodies.length - i) * 1000 - 60_000);
      ids.set(b, (await one<{ id: string }>(`select jobs.publish('t', to_jsonb($1::text), scheduled_at => $2, priority => $3) as id`,
        [b, scheduledAt, priority])).id);
    }
  };
  /** drain()'s claim of n jobs at `now`: the bodies it got, sorted (its answer has no order). */
  const claim = async (n: number, now = at) => {
    const { rows } = await session.query<{ r: { jobs: { body: string[] } | null } }>(
      'select jobs.claim_json($1, now => $2) as r', [n, now]);
    return [...(rows[0]!.r.jobs?.body ?? [])].sort();
  };
  const release = (...bodies: string[]) => sql('select jobs.release($1::bigint[])', [bodies.map((b) => ids.get(b))]);

  it('a job released behind that head waits while newer jobs go first, and is never skipped', async () => {
    await publish(['j1', 'j2', 'j3', 'j4']);
    expect(await claim(2)).toEqual(['j1', 'j2']);
    expect(await claim(1)).toEqual(['j3']);
    await release('j1');
    expect(await claim(1)).toEqual(['j4']); // j1 is behind the head the last claim found (j3)
    expect(await claim(1)).toEqual(['j1']); // nothing ahead of it: the claim looks at the whole queue
    expect(await claim(1)).toEqual([]);
  });

  it('a claim that finds nothing ahead of the head takes the jobs behind it', async () => {
    await publish(['a1', 'a2', 'a3']);
    expect(await claim(1)).toEqual(['a1']);
    expect(await claim(1)).toEqual(['a2']);
    await release('a1');
    expect(await claim(5)).toEqual(['a3']); // it has jobs, and no lower priority waits: a1 waits for the next claim
    expect(await claim(5)).toEqual(['a1']);
  });

  it('…and so does one whose lower priorities hold only jobs not yet due', async () => {
    await publish(['a1', 'a2', 'a3']);
    for (const [b, priority] of [['later', -1], ['latest', -2]] as const) {
      await sql(`select jobs.publish('t', to_jsonb($1::text), scheduled_at => $2, priority => $3)`, [b, later(3_600_000), priority]);
    }
    expect(await claim(1)).toEqual(['a1']);
    expect(await claim(1)).toEqual(['a2']);
    await release('a1');
    expect(await claim(5)).toEqual(['a3']); // nothing below is due: a1 waits for the next claim
    expect(await claim(5)).toEqual(['a1']);
  });

  it('…but one with a due job at a lower priority reads behind the head first', async () => {
    await publish(['a1', 'a2', 'a3']);
    await sql(`select jobs.publish('t', to_jsonb('later'::text), scheduled_at => $1, priority => -1)`, [later(3_600_000)]);
    await publish(['low'], -2);
    expect(await claim(1)).toEqual(['a1']);
    expect(await claim(1)).toEqual(['a2']);
    await release('a1');
    expect(await claim(3)).toEqual(['a1', 'a3', 'low']);
  });

  it('…and so does one whose head is a job not yet due', async () => {
    await publish(['x1', 'x2']);
    ids.set('x3', (await one<{ id: string }>(`select jobs.publish('t', to_jsonb('x3'::text), scheduled_at => $1) as id`,
      [later(3_600_000)])).id);
    expect(await claim(1)).toEqual(['x1']);
    expect(await claim(1)).toEqual(['x2']);
    await release('x1');
    expect(await claim(5)).toEqual(['x1']); // the head it finds from x2 on is x3, due in an hour
  });

  it('…and so do jobs due at the same instant as the head with a smaller id', async () => {
    const due = new Date(at.getTime() - 60_000);
    for (const b of ['s1', 's2', 's3']) {
      ids.set(b, (await one<{ id: string }>(`select jobs.publish('t', to_jsonb($1::text), scheduled_at => $2) as id`, [b, due])).id);
    }
    expect(await claim(1)).toEqual(['s1']);
    expect(await claim(1)).toEqual(['s2']);
    await release('s1');
    expect(await claim(5)).toEqual(['s3']);
    expect(await claim(5)).toEqual(['s1']);
  });

  it('…and the jobs it took from the head are not counted twice: the room left goes to lower priorities', async () => {
    await publish(['h1', 'h2', 'h3', 'h4'], 1);
    const low = Array.from({ length: 10 }, (_, i) => `l${String(i).padStart(2, '0')}`);
    await publish(low, 0);
    expect(await claim(1)).toEqual(['h1']);
    expect(await claim(1)).toEqual(['h2']);
    await release('h1');
    expect(await claim(10)).toEqual(['h1', 'h3', 'h4', ...low.slice(0, 7)]);
  });

  it('a job behind the head waits a second at most while claims keep finding jobs ahead of it', async () => {
    await publish(['j1', 'j2', 'j3', 'j4', 'j5']);
    expect(await claim(1)).toEqual(['j1']); // reads the queue from its true head
    expect(await claim(1, later(500))).toEqual(['j2']);
    await release('j1');
    expect(await claim(1, later(900))).toEqual(['j3']);
    expect(await claim(1, later(1200))).toEqual(['j1']); // more than a second after the last read from the true head
  });

  it('a head remembered more than a second of `now` ago is not used', async () => {
    await publish(['j1', 'j2', 'j3', 'j4']);
    expect(await claim(2)).toEqual(['j1', 'j2']);
    expect(await claim(1)).toEqual(['j3']);
    await release('j1');
    expect(await claim(1, later(1500))).toEqual(['j1']);
  });

  it('a job of a greater priority goes first, wherever the head was', async () => {
    await publish(['p1', 'p2', 'p3']);
    expect(await claim(1)).toEqual(['p1']);
    await publish(['urgent'], 5);
    expect(await claim(1)).toEqual(['urgent']);
    expect(await claim(1)).toEqual(['p2']);
  });

  it('a lease that passed is taken back by the next claim, which probes only the leases passed since the last', async () => {
    await publish(['j1']);
    await sql(`update jobs.job_queue set timeout = 5 where job_id = $1`, [ids.get('j1')]);
    expect(await claim(1)).toEqual(['j1']); // lease until at + 5 s; none had passed up to `at`
    expect(await claim(1, later(3000))).toEqual([]);
    expect(await claim(1, later(6000))).toEqual(['j1']); // passed between the last two claims
  });

  it('a lease that passed before the last probe but was not there to see is taken back within ten seconds', async () => {
    await publish(['a', 'b']);
    expect(await claim(1)).toEqual(['a']); // the session found no lease passed up to `at`
    // A transaction that began five seconds earlier claims b with a 1 s timeout: its lease ended before `at`.
    await sql(`update jobs.job_queue set timeout = 1 where job_id = $1`, [ids.get('b')]);
    expect(await sql('select job_id from jobs.claim(1, now => $1)', [later(-5000)])).toEqual([{ job_id: ids.get('b') }]);
    expect(await claim(1, later(5000))).toEqual([]); // probes only the leases that passed after `at`
    expect(await claim(1, later(11_000))).toEqual(['b']); // ten seconds on, a probe from the start
  });

  it('the expiry a probe sets off takes back only the leases passed since the last probe found none', async () => {
    await publish(['a', 'c', 'b']);
    expect(await claim(1)).toEqual(['a']); // the session found no lease passed up to `at`
    await sql(`update jobs.job_queue set timeout = 7 where job_id = $1`, [ids.get('c')]);
    await sql(`update jobs.job_queue set timeout = 1 where job_id = $1`, [ids.get('b')]);
    // Other sessions claim c (lease until `at` + 4 s) and, in a transaction that began earlier, b (until `at` - 4 s).
    expect(await sql('select job_id from jobs.claim(1, now => $1)', [later(-3000)])).toEqual([{ job_id: ids.get('c') }]);
    expect(await sql('select job_id from jobs.claim(1, now => $1)', [later(-5000)])).toEqual([{ job_id: ids.get('b') }]);
    expect(await claim(2, later(5000))).toEqual(['c']); // c's lease passed after `at`: taken back and claimed; b's is behind
    expect(await claim(2, later(11_000))).toEqual(['b']); // ten seconds on, a probe from the start
  });

  it('a head remembered for another queue is not used', async () => {
    await sql(`insert into jobs.queue (name) values ('other') on conflict do nothing`);
    await publish(['j1', 'j2', 'j3', 'j4']);
    expect(await claim(2)).toEqual(['j1', 'j2']);
    expect(await claim(1)).toEqual(['j3']);
    await release('j1');
    await session.query(`select jobs.claim_json(1, now => $1, queue => 'other')`, [at]);
    expect(await claim(1)).toEqual(['j4']); // the default queue's head is still remembered…
    await session.query(`select jobs.remember_head('other', (0, now(), 1), $1, true)`, [at]);
    expect(await claim(1)).toEqual(['j1']); // …until a claim of another queue replaces it
  });
});
