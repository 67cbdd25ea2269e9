// jobs.complete (sql/0036) over many serial keys, on a server with a small lock
// table (max_locks_per_transaction 10). Ending a key's
// head takes the key's lock until commit, one lock-table entry each: as
// jobs.fail, one call ends at most 500 heads and refuses more (PD005 job_ids;
// a success cannot be deferred to the next claims' expiry as a cancel is,
// which ends the job as cancelled). A success cancels no dependant, so the
// dependants it releases take no key, however many.
import { beforeAll, describe, expect, it } from 'vitest';
import { expectLocksNotToFit, useSmallLockTable } from './support/small-lock-table.js';

const KEYS = 8000; // more keys than the small lock table holds

describe('jobs.complete over many serial keys, on a server with a small lock table', () => {
  const locks = useSmallLockTable();
  const sql = locks.sql;
  const count = async (text: string, params?: unknown[]) => Number((await sql<{ n: string }>(text, params))[0]!.n);

  beforeAll(async () => {
    await expectLocksNotToFit(locks.url, KEYS);
  }, 60_000);

  /** n scheduled heads of keys h:1 .. h:n, each with a job waiting behind it (a bulk publish takes 500 keys). */
  async function headsWithNext(n: number) {
    for (const task of ['head', 'next']) {
      for (let from = 1; from <= n; from += 500) {
        const to = Math.min(n, from + 499);
        await sql(`select jobs.publish_arrays(array_fill($1::text, array[$3::int - $2::int + 1]),
                     scheduled_at => array_fill(now() + interval '1 hour', array[$3::int - $2::int + 1]),
                     serial_keys => (select array_agg('h:' || g) from generate_series($2::int, $3::int) g))`, [task, from, to]);
      }
    }
  }

  it('500 keyed heads end as successes and each key passes to its next job', async () => {
    await headsWithNext(500);
    expect(await sql(`select jobs.complete(array(select job_id from jobs.job_queue where task = 'head'), '1') as n`))
      .toEqual([{ n: 500 }]);
    expect(await count(`select count(*) as n from jobs.job where task = 'head' and status = 'success' and result = '1'`)).toBe(500);
    expect(await count(`select count(*) as n from jobs.job_queue where task = 'next' and not serial_wait`)).toBe(500);
  });

  it('more than 500 keyed heads is refused, naming job_ids and the rule; nothing changes', async () => {
    await headsWithNext(501);
    await expect(sql(`select jobs.complete(array(select job_id from jobs.job_queue where task = 'head'))`))
      .rejects.toMatchObject({ code: 'PD005', column: 'job_ids', message: 'job_ids: at most 500 of the jobs one call completes '
        + 'may head their serial keys (each takes its key\'s lock until commit, from PostgreSQL\'s shared lock table), got 501: '
        + 'complete them in several calls' });
    expect(await count('select count(*) as n from jobs.job')).toBe(0);
    // In two calls it works.
    expect(await sql(`select jobs.complete(array(select job_id from jobs.job_queue where task = 'head' order by job_id limit 250)) as n`))
      .toEqual([{ n: 250 }]);
    expect(await sql(`select jobs.complete(array(select job_id from jobs.job_queue where task = 'head')) as n`))
      .toEqual([{ n: 251 }]);
    expect(await count(`select count(*) as n from jobs.job_queue where task = 'next' and not serial_wait`)).toBe(501);
  });

  it(`a waiting job with ${KEYS} keyed dependants completes, and every dependant is due`, async () => {
    const parent = (await sql<{ id: string }>(`select jobs.publish('parent', scheduled_at => now() + interval '1 hour') as id`))[0]!.id;
    for (let from = 0; from < KEYS; from += 250) {
      await sql(`select count(jobs.publish('child', serial_key => 'k:' || g, depends_on => array[$3::bigint]))
                 from generate_series($1::int, $2::int) g`, [from, from + 249, parent]);
    }
    expect(await count(`select count(*) as n from jobs.job_queue where task = 'child' and waiting_deps = 1 and not serial_wait`)).toBe(KEYS);
    expect(await sql(`select jobs.complete(array[$1::bigint]) as n`, [parent])).toEqual([{ n: 1 }]);
    expect(await count(`select count(*) as n from jobs.job_queue where task = 'child' and waiting_deps = 0`)).toBe(KEYS);
    expect(await count('select count(*) as n from jobs.dependency')).toBe(0);
    expect(await count(`select count(*) as n from jobs.consume(1000)`)).toBe(1000);
  }, 120_000);
});
