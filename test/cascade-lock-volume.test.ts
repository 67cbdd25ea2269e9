// A failure's cascade takes a bounded number of serial-key locks. A job that
// fails or is cancelled cancels its dependants, and each cancelled dependant
// that heads a serial key takes the key's lock until commit (to hand the key
// on): one entry of PostgreSQL's lock table each. A job with more keyed
// dependants than that table holds could not end: its settle failed with
// 53200 ("out of shared memory"), and once its lease passed, the expiry that
// every claim of every queue runs first failed the same way: one job stalled
// every claim on the server. Now a cascade takes at most 500 key locks; the
// heads past them end through the expiry of the claims after it.
//
// Here, on a cluster with a small lock table: a job with more keyed
// dependants than the table holds ends, whether its drain fails it or its
// lease passes (cascade-lock-volume-deferred.test.ts: the bound itself, and
// the deferred dependants, on the shared test server).
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { expectLocksNotToFit, useSmallLockTable } from './support/small-lock-table.js';
import { count } from './support/sql-count.js';

const DEPENDANTS = 8000; // each with its own serial key: more keys than the small lock table holds
const SECONDS = DEPENDANTS / 10; // keys k:0, k:10, ... have a second, independent job behind the dependant
// The timeout of the jobs that run: a job whose claim takes longer is nacked
// unstarted. The claims that end thousands of dependants took up to 2.7 s on a
// loaded machine, and building them (beforeEach) up to 16 s.
const RUN_TIMEOUT = 30;

// Its own cluster, with a small lock table (support/small-lock-table.ts): 8,000 locks do not fit.
describe('a job with thousands of dependants of distinct serial keys, on a server with a small lock table', () => {
  const locks = useSmallLockTable();
  const sql = locks.sql;
  let parent: string;
  let lastChild: string;

  beforeAll(async () => {
    await sql(`select jobs.create_queue('other')`);
    // One statement taking every key's lock does not fit this lock table.
    await expectLocksNotToFit(locks.url, DEPENDANTS);
  }, 60_000);

  beforeEach(async () => {
    parent = (await sql<{ id: string }>(`select jobs.publish('parent', max_retries => 0, timeout_seconds => 10) as id`))[0]!.id;
    // Dependants k:0 .. k:7999, 250 per transaction (each publish holds its key's lock until commit).
    for (let from = 0; from < DEPENDANTS; from += 250) {
      await sql(`select count(jobs.publish('child', serial_key => 'k:' || g, depends_on => array[$1::bigint], timeout_seconds => 10))
                 from generate_series($2::int, $3::int) g`, [parent, from, from + 249]);
    }
    lastChild = (await sql<{ id: string }>(`select max(job_id) as id from jobs.job_queue where task = 'child'`))[0]!.id;
    // The last dependant (past the cascade's first 500 keys) has dependants of its own, keyed too.
    await sql(`select count(jobs.publish('grand', serial_key => 'g:' || g, depends_on => array[$1::bigint], timeout_seconds => 10))
               from generate_series(1, 5) g`, [lastChild]);
    // Later jobs of some keys, depending on nothing: they wait for their key's dependant.
    for (let from = 0; from < SECONDS; from += 400) {
      await sql(`select jobs.publish_arrays(array_fill('second'::text, array[400]), timeouts => array_fill(${RUN_TIMEOUT}::numeric, array[400]),
                   serial_keys => (select array_agg('k:' || (g * 10)) from generate_series($1::int, $1::int + 399) g))`, [from]);
    }
    await sql(`select jobs.publish_arrays(array_fill('other'::text, array[20]), timeouts => array_fill(${RUN_TIMEOUT}::numeric, array[20]), queue => 'other')`);
    expect(await count(sql, `select count(*) as n from jobs.job_queue where serial_wait`)).toBe(SECONDS);
  }, 180_000);

  /** A queue whose handlers count their runs by task; the parent fails. */
  function queueCounting(runs: Map<string, number>) {
    const run = (task: string, result: () => unknown) => async () => {
      runs.set(task, (runs.get(task) ?? 0) + 1);
      return result();
    };
    return createQueue({ connectionString: locks.url, tasks: {
      parent: run('parent', () => { throw new Error('parent broke'); }),
      child: run('child', () => null), grand: run('grand', () => null),
      second: run('second', () => null), other: run('other', () => null), late: run('late', () => null),
    } });
  }

  /** Drains the default queue until no job is left in it; a bounded number of drains. */
  async function drainAll(queue: ReturnType<typeof createQueue>): Promise<number> {
    let drains = 0;
    while (await count(sql, `select count(*) as n from jobs.job_queue where queue = 'default'`) > 0) {
      expect(++drains).toBeLessThanOrEqual(20);
      await queue.drain(500, Date.now() + 60_000);
    }
    return drains;
  }

  async function expectEveryoneEnded(parentError: RegExp): Promise<void> {
    const [p] = await sql<{ status: string; error: string }>('select status, error from jobs.job where job_id = $1', [parent]);
    expect(p!.status).toBe('failure');
    expect(p!.error).toMatch(parentError);
    expect(await count(sql, `select count(*) as n from jobs.job where task = 'child' and status = 'cancelled' and error = $1`,
      [`cancelled: dependency ${parent} did not succeed`])).toBe(DEPENDANTS);
    expect(await count(sql, `select count(*) as n from jobs.job where task = 'grand' and status = 'cancelled' and error = $1`,
      [`cancelled: dependency ${lastChild} did not succeed`])).toBe(5);
    expect(await count(sql, `select count(*) as n from jobs.job where task = 'second' and status = 'success' and attempts = 1`)).toBe(SECONDS);
    // Each second job ran after its key's dependant ended.
    expect(await count(sql, `select count(*) as n from jobs.job s join jobs.job c on c.serial_key = s.serial_key and c.task = 'child'
                             where s.task = 'second' and s.started_at >= c.ended_at`)).toBe(SECONDS);
    expect(await count(sql, 'select count(*) as n from jobs.job_queue')).toBe(0);
  }

  it('its failure in a drain ends it, cancels every dependant, and hands every key on; other queues claim throughout', async () => {
    const runs = new Map<string, number>();
    const queue = queueCounting(runs);
    try {
      // The parent's settle cancels its dependants: it used to fail whole, with 53200.
      const first = await queue.drain(500, Date.now() + 60_000);
      expect(first).toMatchObject({ failed: 1 });
      expect(await count(sql, `select count(*) as n from jobs.job where job_id = $1 and status = 'failure'`, [parent])).toBe(1);
      // Another queue's claims work while dependants are still to be ended.
      expect(await queue.drain(500, Date.now() + 60_000, { queue: 'other' })).toMatchObject({ succeeded: 20, failed: 0 });
      await drainAll(queue);
    } finally {
      await queue.close();
    }
    await expectEveryoneEnded(/parent broke/);
    expect(Object.fromEntries(runs)).toEqual({ parent: 1, second: SECONDS, other: 20 });
  }, 120_000);

  it('its lease passing unsettled fails no claim of any queue: the expiry ends it and its dependants', async () => {
    // Claimed, its drain gone: its lease passes with no settle.
    expect(await sql(`select job_id from jobs.consume(1)`)).toEqual([{ job_id: parent }]);
    await sql(`update jobs.job_queue set lease_until = now() - interval '1 second' where job_id = $1`, [parent]);
    const runs = new Map<string, number>();
    const queue = queueCounting(runs);
    try {
      // Every claim, of any queue, expires passed leases first: this one used to fail with 53200, as every one after it.
      expect(await queue.drain(500, Date.now() + 60_000, { queue: 'other' })).toMatchObject({ succeeded: 20, failed: 0 });
      expect(await count(sql, `select count(*) as n from jobs.job where job_id = $1 and status = 'failure'`, [parent])).toBe(1);
      // Dependants past the cascade's bound wait for the next claims' expiry, each still its key's
      // head: a job published for its key meanwhile waits behind it.
      const [waiting] = await sql<{ key: string }>(`select serial_key as key from jobs.job_queue
        where task = 'child' and cancel_requested_at is not null and lease_until <= now() and not serial_wait limit 1`);
      expect(waiting).toBeDefined();
      const [late] = await sql<{ id: string }>(`select jobs.publish('late', serial_key => $1, timeout_seconds => $2) as id`, [waiting!.key, RUN_TIMEOUT]);
      expect(await sql('select serial_wait from jobs.job_queue where job_id = $1', [late!.id])).toEqual([{ serial_wait: true }]);
      await drainAll(queue);
      expect(await count(sql, `select count(*) as n from jobs.job l join jobs.job c on c.serial_key = l.serial_key and c.task = 'child'
                               where l.job_id = $1 and l.status = 'success' and l.started_at >= c.ended_at
                                 and c.status = 'cancelled'`, [late!.id])).toBe(1);
    } finally {
      await queue.close();
    }
    await expectEveryoneEnded(/^timed out: no ack within 10 seconds/);
    expect(Object.fromEntries(runs)).toEqual({ second: SECONDS, other: 20, late: 1 });
  }, 120_000);
});
