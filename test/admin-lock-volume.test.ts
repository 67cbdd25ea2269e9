// Admin calls over thousands of serial keys take a bounded number of key locks.
// Ending a serial key's head takes the key's lock until commit (to hand the key
// on): one entry of PostgreSQL's shared lock table each. jobs.cancel / jobs.fail
// (and jobs.delete_jobs) of a waiting job with thousands of keyed dependants, jobs.cancel_bulk and
// jobs.purge_queue of thousands of keyed heads, and jobs.redrive of thousands of
// keyed dead letters used to take every key at once and fail whole with 53200
// ("out of shared memory"), filling the table every session needs meanwhile.
// Now a call ends at most 500 keyed heads (and its cascade at most 500 in all);
// the cancelled heads past them end through the next claims' expiry (or
// jobs.maintain), as a drain's cascade defers them; jobs.redrive puts back at
// most 500 keys per call; jobs.fail refuses more than 500 keyed heads of its own.
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { expectLocksNotToFit, useSmallLockTable, type Sql } from './support/small-lock-table.js';

const KEYS = 8000; // distinct serial keys: more than the small lock table holds
const SECONDS = KEYS / 10; // keys k:0, k:10, ... have a later, independent job

describe('admin calls over thousands of serial keys, on a server with a small lock table', () => {
  const locks = useSmallLockTable();
  const sql = locks.sql;
  const count = async (text: string, params?: unknown[]) => Number((await sql<{ n: string }>(text, params))[0]!.n);

  beforeAll(async () => {
    await sql(`select jobs.create_queue('bulk')`);
    // One statement taking every key's lock does not fit this lock table.
    await expectLocksNotToFit(locks.url, KEYS);
  }, 60_000);

  /** KEYS jobs of task `task`, keys k:0 .. k:7999, depending on `parent` when given. */
  async function publishKeyed(task: string, opts: { parent?: string; queue?: string; dedupe?: boolean } = {}) {
    for (let from = 0; from < KEYS; from += 250) {
      await sql(`select count(jobs.publish($1, jsonb_build_object('n', g), serial_key => 'k:' || g, timeout_seconds => 10,
                   depends_on => case when $4::bigint is null then null else array[$4::bigint] end,
                   queue => $5, dedupe_key => case when $6 then 'd:' || g end))
                 from generate_series($2::int, $3::int) g`,
        [task, from, from + 249, opts.parent ?? null, opts.queue ?? 'default', opts.dedupe ?? false]);
    }
  }

  /** A later job of keys k:0, k:10, ...: each waits for its key's job before it. */
  async function publishSeconds(waiting = true) {
    for (let from = 0; from < SECONDS; from += 400) {
      await sql(`select jobs.publish_arrays(array_fill('second'::text, array[400]), timeouts => array_fill(10::numeric, array[400]),
                   serial_keys => (select array_agg('k:' || (g * 10)) from generate_series($1::int, $1::int + 399) g))`, [from]);
    }
    expect(await count(`select count(*) as n from jobs.job_queue where task = 'second' and serial_wait`)).toBe(waiting ? SECONDS : 0);
  }

  /** Drains every queue until no job is left; counts the runs of each task. */
  async function drainAll(runs: Map<string, number>): Promise<void> {
    const run = (task: string) => async () => {
      runs.set(task, (runs.get(task) ?? 0) + 1);
      return null;
    };
    const queue = createQueue({ connectionString: locks.url, tasks: {
      parent: run('parent'), child: run('child'), grand: run('grand'), head: run('head'), second: run('second'), dead: run('dead'),
    } });
    try {
      let drains = 0;
      while (await count('select count(*) as n from jobs.job_queue') > 0) {
        expect(++drains).toBeLessThanOrEqual(40);
        for (const name of ['default', 'bulk']) await queue.drain(500, Date.now() + 60_000, { queue: name });
      }
    } finally {
      await queue.close();
    }
  }

  /** Every `task` job ended cancelled with `error`; every second job ran once, after its key's job ended. */
  async function expectCancelledThenSeconds(task: string, error: string) {
    expect(await count(`select count(*) as n from jobs.job where task = $1 and status = 'cancelled' and error = $2
                          and attempts = 0 and started_at is null`, [task, error])).toBe(KEYS);
    expect(await count(`select count(*) as n from jobs.job where task = 'second' and status = 'success' and attempts = 1`)).toBe(SECONDS);
    expect(await count(`select count(*) as n from jobs.job s join jobs.job c on c.serial_key = s.serial_key and c.task = $1
                          where s.task = 'second' and s.started_at >= c.ended_at`, [task])).toBe(SECONDS);
    expect(await count('select count(*) as n from jobs.job_queue')).toBe(0);
  }

  /** A waiting parent with KEYS keyed dependants; its last dependant has 5 keyed dependants of its own. */
  async function parentWithDependants(): Promise<{ parent: string; lastChild: string }> {
    const parent = (await sql<{ id: string }>(`select jobs.publish('parent', timeout_seconds => 10, scheduled_at => now() + interval '1 hour') as id`))[0]!.id;
    await publishKeyed('child', { parent });
    const lastChild = (await sql<{ id: string }>(`select max(job_id) as id from jobs.job_queue where task = 'child'`))[0]!.id;
    await sql(`select count(jobs.publish('grand', serial_key => 'g:' || g, depends_on => array[$1::bigint], timeout_seconds => 10))
               from generate_series(1, 5) g`, [lastChild]);
    await publishSeconds();
    return { parent, lastChild };
  }

  async function expectDependantsCancelled(parent: string, lastChild: string) {
    expect(await count(`select count(*) as n from jobs.job where task = 'child' and status = 'cancelled' and error = $1`,
      [`cancelled: dependency ${parent} did not succeed`])).toBe(KEYS);
    expect(await count(`select count(*) as n from jobs.job where task = 'grand' and status = 'cancelled' and error = $1`,
      [`cancelled: dependency ${lastChild} did not succeed`])).toBe(5);
    await expectCancelledThenSeconds('child', `cancelled: dependency ${parent} did not succeed`);
  }

  it('jobs.cancel of a waiting job with thousands of keyed dependants cancels it and, in the end, each of them', async () => {
    const { parent, lastChild } = await parentWithDependants();
    expect(await sql('select jobs.cancel($1) as r', [parent])).toEqual([{ r: 'cancelled' }]);
    expect(await sql('select status, error from jobs.job where job_id = $1', [parent]))
      .toEqual([{ status: 'cancelled', error: 'cancelled: by request' }]);
    // 500 at once, their keys handed on; the rest cancel-requested, for the next claims' expiry.
    expect(await count(`select count(*) as n from jobs.job where task = 'child'`)).toBe(500);
    expect(await count(`select count(*) as n from jobs.job_queue where task = 'child' and cancel_requested_at is not null
                          and lease_until <= now() and attempt = 0`)).toBe(KEYS - 500);
    const runs = new Map<string, number>();
    await drainAll(runs);
    await expectDependantsCancelled(parent, lastChild);
    expect(Object.fromEntries(runs)).toEqual({ second: SECONDS });
  }, 180_000);

  it('jobs.fail of a waiting job with thousands of keyed dependants fails it and, in the end, cancels each of them', async () => {
    const { parent, lastChild } = await parentWithDependants();
    expect(await sql(`select jobs.fail(array[$1::bigint], 'gone') as n`, [parent])).toEqual([{ n: 1 }]);
    expect(await sql('select status, error from jobs.job where job_id = $1', [parent]))
      .toEqual([{ status: 'failure', error: 'failed: gone' }]);
    // jobs.maintain ends the deferred ones too, 500 keyed ends per expiry.
    for (let i = 0; i < 20 && await count(`select count(*) as n from jobs.job_queue where task in ('child', 'grand')`) > 0; i++) {
      await sql('select jobs.maintain()');
    }
    const runs = new Map<string, number>();
    await drainAll(runs);
    await expectDependantsCancelled(parent, lastChild);
    expect(Object.fromEntries(runs)).toEqual({ second: SECONDS });
  }, 180_000);

  it('jobs.delete_jobs of a waiting job with thousands of keyed dependants deletes it and, in the end, cancels each of them', async () => {
    const { parent, lastChild } = await parentWithDependants();
    expect(await sql(`select waiting, ended, running::text[] as running from jobs.delete_jobs(array[$1::bigint])`, [parent]))
      .toEqual([{ waiting: 1, ended: 0, running: [] }]);
    expect(await count('select count(*) as n from jobs.all where job_id = $1', [parent])).toBe(0);
    // As jobs.fail's cascade: 500 at once, the rest through the next claims' expiry.
    expect(await count(`select count(*) as n from jobs.job where task = 'child'`)).toBe(500);
    const runs = new Map<string, number>();
    await drainAll(runs);
    await expectDependantsCancelled(parent, lastChild);
    expect(Object.fromEntries(runs)).toEqual({ second: SECONDS });
  }, 180_000);

  it('jobs.cancel_bulk of thousands of keyed heads counts and cancels each; their keys go on to their next jobs', async () => {
    await publishKeyed('head', { dedupe: true });
    await publishSeconds();
    const ids = (await sql<{ id: string }>(`select job_id as id from jobs.job_queue where task = 'head'`)).map((r) => r.id);
    expect(await sql(`select jobs.cancel_bulk($1::bigint[], 'import undone') as n`, [ids])).toEqual([{ n: KEYS }]);
    // Those past the first 500 keys never run: a publish of their dedupe key writes a new job at once.
    expect(await count(`select count(*) as n from jobs.job where task = 'head'`)).toBe(500);
    const again = (await sql<{ id: string }>(`select jobs.publish('again', dedupe_key => 'd:7999') as id`))[0]!.id;
    expect(ids).not.toContain(again);
    await sql('delete from jobs.job_queue where job_id = $1', [again]);
    const runs = new Map<string, number>();
    await drainAll(runs);
    await expectCancelledThenSeconds('head', 'cancelled: import undone');
    expect(Object.fromEntries(runs)).toEqual({ second: SECONDS });
    // Each keeps its dedupe key in the history.
    expect(await count(`select count(*) as n from jobs.job where task = 'head' and dedupe_key = 'd:' || (body->>'n')`)).toBe(KEYS);
  }, 180_000);

  it('jobs.purge_queue of a queue of thousands of keyed heads ends each; the queue can then be deleted', async () => {
    await publishKeyed('head', { queue: 'bulk' });
    await publishSeconds(); // in the default queue: keys are global
    expect(await sql(`select jobs.purge_queue('bulk') as n`)).toEqual([{ n: KEYS }]);
    const runs = new Map<string, number>();
    await drainAll(runs);
    await expectCancelledThenSeconds('head', 'cancelled: purged');
    expect(Object.fromEntries(runs)).toEqual({ second: SECONDS });
    expect(await sql(`select jobs.delete_queue('bulk') as ok`)).toEqual([{ ok: true }]);
    await sql(`select jobs.create_queue('bulk')`);
  }, 180_000);

  it('jobs.redrive of thousands of keyed dead letters puts back 500 keys per call, says so, and all run in the end', async () => {
    await publishKeyed('dead');
    // Failed 500 keys at a time (one call fails at most 500 keyed heads).
    for (let i = 0; i < KEYS / 500; i++) {
      expect(await sql(`select jobs.fail(array(select job_id from jobs.job_queue where task = 'dead' order by job_id limit 500)) as n`))
        .toEqual([{ n: 500 }]);
    }
    await publishSeconds(false); // behind nothing now: they are their keys' heads; the dead letters go back behind them
    const notices: string[] = [];
    const client = new pg.Client({ connectionString: locks.url });
    client.on('notice', (n) => notices.push(n.message ?? ''));
    await client.connect();
    let total = 0;
    try {
      for (let calls = 1; ; calls++) {
        expect(calls).toBeLessThanOrEqual(KEYS / 500 + 1);
        const n = Number((await client.query(`select jobs.redrive(task => 'dead') as n`)).rows[0].n);
        if (n === 0) break;
        expect(n).toBe(500);
        total += n;
      }
    } finally {
      await client.end();
    }
    expect(total).toBe(KEYS);
    expect(notices[0]).toBe('pgdrain: 7500 matching dead letters of 7500 more serial keys left in place: one call puts back '
      + 'at most 500 serial keys (each takes a lock until commit); call jobs.redrive again');
    const runs = new Map<string, number>();
    await drainAll(runs);
    expect(Object.fromEntries(runs)).toEqual({ dead: KEYS, second: SECONDS });
    expect(await count(`select count(*) as n from jobs.job where task = 'dead' and status = 'success'`)).toBe(KEYS);
  }, 180_000);

  it('a cascade ends at once exactly the heads of the 500 keys it locked first, also when a waiting job becomes a head in it', async () => {
    // P <- H (key K), P <- A <- A2 <- W (key K: waits behind H), P <- a:1..300, A2 <- b:1..300 (keys of their own).
    // Level 1 ends H, A and the 300 a's; the cascade then hands K to W, which meets the b's at level 3 as a head.
    const one = async (text: string, params: unknown[] = []) => (await sql<{ id: string }>(text, params))[0]!.id;
    const parent = await one(`select jobs.publish('parent', scheduled_at => now() + interval '1 hour') as id`);
    const h = await one(`select jobs.publish('child', serial_key => 'K', depends_on => array[$1::bigint]) as id`, [parent]);
    const a = await one(`select jobs.publish('child', depends_on => array[$1::bigint]) as id`, [parent]);
    const a2 = await one(`select jobs.publish('child', depends_on => array[$1::bigint]) as id`, [a]);
    const w = await one(`select jobs.publish('child', serial_key => 'K', depends_on => array[$1::bigint]) as id`, [a2]);
    for (const [prefix, on] of [['a:', parent], ['b:', a2]] as const) {
      await sql(`select count(jobs.publish('child', serial_key => $1 || g, depends_on => array[$2::bigint])) from generate_series(1, 300) g`,
        [prefix, on]);
    }
    expect(await sql('select job_id, serial_wait from jobs.job_queue where job_id in ($1, $2) order by job_id', [h, w]))
      .toEqual([{ job_id: h, serial_wait: false }, { job_id: w, serial_wait: true }]);
    const client = new pg.Client({ connectionString: locks.url });
    await client.connect();
    try {
      await client.query('begin');
      const keys = (await client.query(`select jobs.ending_keys(array[$1::bigint]) as k`, [parent])).rows[0].k as string[];
      expect(keys).toHaveLength(500); // K, the 300 a's, the first 199 b's
      expect((await client.query('select jobs.cancel($1) as r', [parent])).rows).toEqual([{ r: 'cancelled' }]);
      // It holds those keys' locks and no other.
      const held = (await client.query(`select objid::bigint::text as h from pg_locks
        where pid = pg_backend_pid() and locktype = 'advisory' and classid = 736038 order by 1`)).rows.map((r) => r.h);
      const locked = (await client.query(`select distinct (hashtext(k)::bigint & 4294967295)::text as h from unnest($1::text[]) k order by 1`,
        [keys])).rows.map((r) => r.h);
      expect(held).toEqual(locked);
      // Every job of those keys ended (W too, its key held); the other heads wait for an expiry.
      const ended = async (held: boolean) => Number((await client.query(`select count(*) as n from jobs.job
        where serial_key is not null and (serial_key = any($1)) = $2`, [keys, held])).rows[0].n);
      expect([await ended(true), await ended(false)]).toEqual([501, 0]);
      expect(Number((await client.query(`select count(*) as n from jobs.job_queue
        where cancel_requested_at is not null and lease_until is not null and attempt = 0`)).rows[0].n)).toBe(101);
      await client.query('commit');
    } finally {
      await client.end();
    }
    const runs = new Map<string, number>();
    await drainAll(runs);
    expect(await count(`select count(*) as n from jobs.job where task = 'child' and status = 'cancelled'`)).toBe(604);
    expect(Object.fromEntries(runs)).toEqual({});
  }, 180_000);

  it('jobs.fail of more than 500 keyed heads is refused, naming job_ids and the rule; nothing changes', async () => {
    await publishKeyed('head');
    await expect(sql(`select jobs.fail(array(select job_id from jobs.job_queue where task = 'head' order by job_id limit 501))`))
      .rejects.toMatchObject({ code: 'PD005', column: 'job_ids', message: 'job_ids: at most 500 of the jobs one call fails may '
        + 'head their serial keys (each takes its key\'s lock until commit, from PostgreSQL\'s shared lock table), got 501: '
        + 'fail them in several calls' });
    expect(await count(`select count(*) as n from jobs.job`)).toBe(0);
  });

  it('jobs.cancel_bulk of more than 500 keyed heads that ran before is refused, naming job_ids; nothing changes', async () => {
    for (const [from, to] of [[1, 500], [501, 501]]) {
      await sql(`select jobs.publish_arrays(array_fill('head'::text, array[$2::int - $1::int + 1]),
                   serial_keys => (select array_agg('r:' || g) from generate_series($1::int, $2::int) g))`, [from, to]);
    }
    // Each ran once and waits for its retry (attempt 1, pending): a deferred cancel would be settled by a late delivery.
    const claimed = await sql<{ job_id: string; attempt: number }>('select job_id, attempt from jobs.consume(501)');
    expect(claimed).toHaveLength(501);
    await sql(`select jobs.settle_arrays($1::bigint[], $2::int[], array_fill('nack'::text, array[501]))`,
      [claimed.map((r) => r.job_id), claimed.map((r) => r.attempt)]);
    expect(await count(`select count(*) as n from jobs.job_queue where attempt = 1 and lease_until is null`)).toBe(501);
    await expect(sql(`select jobs.cancel_bulk(array(select job_id from jobs.job_queue))`))
      .rejects.toMatchObject({ code: 'PD005', column: 'job_ids' });
    await expect(sql(`select jobs.purge_queue('default')`)).rejects.toMatchObject({ code: 'PD009', column: 'name' });
    expect(await count(`select count(*) as n from jobs.job`)).toBe(0);
  });
});
