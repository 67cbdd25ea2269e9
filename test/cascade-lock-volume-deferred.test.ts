// A failure's cascade takes at most 500 serial-key locks (cascade-lock-volume.test.ts
// says why): the key heads past them are deferred, their cancel requested and
// their lease passed, until the expiry of a later claim (or jobs.maintain)
// ends them. Here, on the shared test server: that bound, and what such a
// deferred dependant must and must not do meanwhile.
import { describe, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import type { Sql } from './support/small-lock-table.js';
import { count } from './support/sql-count.js';

const db = await testDb();

describe('on the shared test server', () => {
  const sql: Sql = db.sql;

  it('an end cancels at most 500 key heads at once; jobs.maintain ends the rest, which then hand their keys on', async () => {
    const parent = (await sql<{ id: string }>(`select jobs.publish('parent', max_retries => 0) as id`))[0]!.id;
    await sql(`select count(jobs.publish('child', serial_key => 'k:' || g, depends_on => array[$1::bigint])) from generate_series(1, 600) g`,
      [parent]);
    for (const from of [1, 301]) {
      await sql(`select jobs.publish_arrays(array_fill('second'::text, array[300]),
                   serial_keys => (select array_agg('k:' || g) from generate_series($1::int, $1::int + 299) g))`, [from]);
    }
    expect(await sql('select job_id from jobs.consume(1)')).toEqual([{ job_id: parent }]);
    expect(await sql(`select jobs.nack($1::bigint, 'broke') as ok`, [parent])).toEqual([{ ok: true }]);
    const states = async () => Object.fromEntries((await sql<{ task: string; state: string; n: string }>(
      `select task, state, count(*) as n from jobs.all where task in ('child', 'second') group by 1, 2`))
      .map((r) => [`${r.task} ${r.state}`, Number(r.n)]));
    // The first 500 (job_id order) ended, their keys handed on; the last 100 wait for an expiry, still their keys' heads.
    expect(await states()).toEqual({ 'child cancelled': 500, 'child expired': 100, 'second pending': 500, 'second blocked': 100 });
    expect(await count(sql, `select count(*) as n from jobs.job_queue where task = 'child' and cancel_requested_at is not null
                             and job_id > (select max(job_id) from jobs.job where task = 'child')`)).toBe(100);
    expect(await sql(`select (jobs.maintain()->>'expired')::int as n`)).toEqual([{ n: 100 }]);
    expect(await states()).toEqual({ 'child cancelled': 600, 'second pending': 600 });
    expect(await count(sql, `select count(*) as n from jobs.job where task = 'child' and status = 'cancelled' and error = $1`,
      [`cancelled: dependency ${parent} did not succeed`])).toBe(600);
  });
});

// What a deferred dependant (a key head past the cascade's bound: cancel requested, lease passed,
// attempt 0, never run) must not do until its expiry ends it: hold its dedupe key, take a
// max_running slot, count as running, be settled, or hold back an expired lease; and a claim
// that settles keyed jobs ends none in its expiry (one run of at most 500 key locks).
describe('dependants a cascade deferred, on the shared test server', () => {
  const sql: Sql = db.sql;
  const truncate = () => sql('truncate jobs.job_queue, jobs.job, jobs.dependency, jobs.running_slot');

  /** A failed parent (task p) with `keyed` dependants of keys `${prefix}g`, published 500 per statement; the last `keyed - 500` are deferred. */
  async function failParent(task: string, keyed: number, opts: { queue?: string; prefix?: string; dedupe?: boolean; now?: string } = {}) {
    const queue = opts.queue ?? 'default';
    const parent = (await sql<{ id: string }>(`select jobs.publish('p', max_retries => 0, queue => $1) as id`, [queue]))[0]!.id;
    for (let from = 1; from <= keyed; from += 500) {
      await sql(`select count(jobs.publish($2, jsonb_build_object('n', g), serial_key => $5 || g, depends_on => array[$1::bigint],
                   queue => $6, dedupe_key => case when $7 then $2 || ':' || g end))
                 from generate_series($3::int, $4::int) g`,
        [parent, task, from, Math.min(keyed, from + 499), opts.prefix ?? 'k:', queue, opts.dedupe ?? false]);
    }
    return parent;
  }
  async function nack(parent: string, now?: string) {
    expect(await sql(`select jobs.nack($1::bigint, 'broke', null, ${now ?? 'null'}) as ok`, [parent])).toEqual([{ ok: true }]);
  }
  const deferred = (task: string) => count(sql, `select count(*) as n from jobs.job_queue
    where task = $1 and cancel_requested_at is not null and lease_until is not null and attempt = 0`, [task]);

  it('frees its dedupe key at once: publishing the key again writes a new job, which runs; the history keeps the key', async () => {
    await truncate();
    const parent = await failParent('dd', 501, { dedupe: true });
    expect(await sql('select job_id from jobs.consume(1)')).toEqual([{ job_id: parent }]);
    await nack(parent);
    expect(await deferred('dd')).toBe(1);
    const doomed = (await sql<{ id: string }>(`select job_id as id from jobs.job_queue where serial_key = 'k:501'`))[0]!.id;
    const queue = createQueue({ connectionString: db.url, tasks: { dd: async () => 'ran' } });
    try {
      const again = await queue.publish('dd', { n: 501 }, { dedupeKey: 'dd:501' });
      expect(again).not.toBe(doomed);
      // While both are in the queue, a publish of the key answers the new job.
      expect(await queue.publish('dd', { n: 501 }, { dedupeKey: 'dd:501' })).toBe(again);
      expect(await queue.drain(10, Date.now() + 120_000)).toMatchObject({ succeeded: 1, failed: 0 }); // 60 s timeouts fit
      expect(await sql('select job_id, status, error, dedupe_key, attempts from jobs.job where job_id in ($1, $2) order by job_id',
        [doomed, again])).toEqual([
        { job_id: doomed, status: 'cancelled', error: `cancelled: dependency ${parent} did not succeed`, dedupe_key: 'dd:501', attempts: 0 },
        { job_id: again, status: 'success', error: null, dedupe_key: 'dd:501', attempts: 1 }]);
    } finally {
      await queue.close();
    }
  });

  it('a claim of one job ends up to 500 of them: an expired lease behind 1,500 comes back within 4 claims', async () => {
    await truncate();
    const x = (await sql<{ id: string }>(`select jobs.publish('x', timeout_seconds => 60) as id`))[0]!.id;
    const parent = await failParent('dl', 2000);
    expect((await sql<{ job_id: string }>('select job_id from jobs.consume(2)')).map((r) => r.job_id).sort()).toEqual([x, parent].sort());
    // Deferred a minute ago; x's drain crashed, its lease passed a second ago: behind all 1,500 of them.
    await nack(parent, `now() - interval '1 minute'`);
    expect(await deferred('dl')).toBe(1500);
    await sql(`update jobs.job_queue set lease_until = now() - interval '1 second' where job_id = $1`, [x]);
    const queue = createQueue({ connectionString: db.url, tasks: { x: async () => 'again' } });
    let drains = 0;
    try {
      while (await count(sql, 'select count(*) as n from jobs.job where job_id = $1', [x]) === 0) {
        expect(++drains).toBeLessThanOrEqual(4); // it used to take 300 drains of 5
        await queue.drain(5, Date.now() + 120_000);
      }
    } finally {
      await queue.close();
    }
    expect(await sql('select status, attempts from jobs.job where job_id = $1', [x])).toEqual([{ status: 'success', attempts: 2 }]);
    expect(await count(sql, `select count(*) as n from jobs.job where task = 'dl' and status = 'cancelled'`)).toBe(2000);
  });

  it('takes no max_running slot when a limit is set: the queue claims its other jobs', async () => {
    await truncate();
    await sql(`select jobs.create_queue('cap')`);
    const parent = await failParent('cd', 1100, { queue: 'cap' });
    expect(await sql(`select job_id from jobs.consume(1, queue => 'cap')`)).toEqual([{ job_id: parent }]);
    await nack(parent);
    expect(await deferred('cd')).toBe(600);
    await sql(`select jobs.publish_arrays(array_fill('work'::text, array[20]), queue => 'cap')`);
    await sql(`select jobs.create_queue('cap', max_running => 5)`);
    expect(await count(sql, `select count(*) as n from jobs.running_slot where queue = 'cap'`)).toBe(0);
    const queue = createQueue({ connectionString: db.url, tasks: { work: async () => null } });
    try {
      // Its first claim's expiry ends 500 of them; the 100 left used to fill the 5 slots: nothing claimed, "at max_running".
      expect(await queue.drain(5, Date.now() + 120_000, { queue: 'cap' }))
        .toMatchObject({ claimed: 20, succeeded: 20, queueAtMaxRunning: false });
    } finally {
      await queue.close();
    }
  });

  it("jobs.delete_queue names them apart from running jobs and says what ends them; jobs.maintain does", async () => {
    await truncate();
    await sql(`select jobs.create_queue('gone')`);
    const parent = await failParent('dq', 501, { queue: 'gone' });
    // One more that runs on while the parent fails (claimed with it: a claim after would end the deferred one).
    const runs = (await sql<{ id: string }>(`select jobs.publish('r', queue => 'gone', priority => -1) as id`))[0]!.id;
    expect(await sql(`select job_id from jobs.consume(2, queue => 'gone')`)).toEqual([{ job_id: parent }, { job_id: runs }]);
    await nack(parent);
    expect(await sql(`select jobs.purge_queue('gone') as n`)).toEqual([{ n: 0 }]);
    // A purge ends neither: the hint names what does (it named the purge, whatever the queue held).
    await expect(sql(`select jobs.delete_queue('gone')`)).rejects.toMatchObject({ code: 'PD009',
      message: `name: queue 'gone' still has 0 waiting and 1 running jobs (job ${runs} first), and 1 cancelled dependants to end: `
        + 'any claim or jobs.maintain() ends them; let its running jobs end, or cancel them (jobs.cancel_bulk), first' });
    expect(await sql(`select jobs.ack($1::bigint) as ok`, [runs])).toEqual([{ ok: true }]);
    await expect(sql(`select jobs.delete_queue('gone')`)).rejects.toMatchObject({ code: 'PD009',
      message: "name: queue 'gone' still has 0 waiting and 0 running jobs, and 1 cancelled dependants to end: any claim or " +
        'jobs.maintain() ends them' });
    expect(await sql(`select (jobs.maintain()->>'expired')::int as n`)).toEqual([{ n: 1 }]);
    expect(await sql(`select jobs.delete_queue('gone') as ok`)).toEqual([{ ok: true }]);
  });

  it('an outcome for attempt 0 is stale: a settle never ends one (its own dependant does not run)', async () => {
    await truncate();
    const parent = await failParent('ds', 501);
    const last = (await sql<{ id: string }>(`select max(job_id) as id from jobs.job_queue where task = 'ds'`))[0]!.id;
    const grand = (await sql<{ id: string }>(`select jobs.publish('grand', depends_on => array[$1::bigint]) as id`, [last]))[0]!.id;
    expect(await sql('select job_id from jobs.consume(1)')).toEqual([{ job_id: parent }]);
    await nack(parent);
    expect(await deferred('ds')).toBe(1);
    for (const outcome of ['ack', 'nack', 'fail', 'release']) {
      expect(await sql(`select jobs.settle(jsonb_build_array(jsonb_build_object('id', $1::bigint, 'attempt', 0, 'outcome', $2::text))) as r`,
        [last, outcome])).toEqual([{ r: { succeeded: 0, failed: 0, cancelled: 0, retried: 0, released: 0, stale: 1, stale_ids: `${last}:0` } }]);
    }
    expect(await deferred('ds')).toBe(1);
    // The next claim's expiry ends it, and its dependant with it.
    expect(await sql('select job_id from jobs.consume(5)')).toEqual([]);
    expect(await sql('select job_id, status, attempts from jobs.job where job_id in ($1, $2) order by job_id', [last, grand]))
      .toEqual([{ job_id: last, status: 'cancelled', attempts: 0 }, { job_id: grand, status: 'cancelled', attempts: 0 }]);
  });

  it('a claim that settles a keyed job still ends a crashed keyed job in its expiry: the key\'s next job runs', async () => {
    await truncate();
    // A drain that keeps settling keyed jobs must still end a keyed job whose lease passed with no retry left
    // (reviewer R4: with keyed ends skipped after a keyed settle, it never did, and its key stayed blocked).
    const crashed = (await sql<{ id: string }>(`select jobs.publish('c', serial_key => 'crash', max_retries => 0) as id`))[0]!.id;
    const next = (await sql<{ id: string }>(`select jobs.publish('c', serial_key => 'crash') as id`))[0]!.id;
    const busy = (await sql<{ id: string }>(`select jobs.publish('b', serial_key => 'busy') as id`))[0]!.id;
    expect((await sql<{ job_id: string }>('select job_id from jobs.consume(5)')).map((r) => r.job_id).sort())
      .toEqual([crashed, busy].sort());
    await sql(`update jobs.job_queue set lease_until = now() - interval '1 second' where job_id = $1`, [crashed]);
    const { r } = (await sql<{ r: { count: number; settled: { succeeded: number } } }>(
      `select jobs.claim_json(10, ids => array[$1::bigint], attempts => array[1], outcomes => array['ack']) as r`, [busy]))[0]!;
    expect(r).toMatchObject({ settled: { succeeded: 1 } });
    expect(await sql('select status from jobs.job where job_id = $1', [crashed])).toEqual([{ status: 'failure' }]);
    // The crashed job's key went on to its next job, which this claim handed out.
    expect(await sql('select attempt from jobs.job_queue where job_id = $1', [next])).toEqual([{ attempt: 1 }]);
  });

  it('one a second dependency\'s cascade ends keeps its dedupe key in the history', async () => {
    await truncate();
    const parent = await failParent('dh', 501, { dedupe: true });
    const other = (await sql<{ id: string }>(`select jobs.publish('p2', max_retries => 0) as id`))[0]!.id;
    const doomed = (await sql<{ id: string }>(`select job_id as id from jobs.job_queue where serial_key = 'k:501'`))[0]!.id;
    await sql('insert into jobs.dependency (depends_on, job_id) values ($1, $2)', [other, doomed]);
    await sql('update jobs.job_queue set waiting_deps = waiting_deps + 1 where job_id = $1', [doomed]);
    expect(await sql('select job_id from jobs.consume(2) order by job_id')).toEqual([{ job_id: parent }, { job_id: other }]);
    await nack(parent);
    expect(await deferred('dh')).toBe(1);
    // The other dependency fails before any expiry: its cascade ends the deferred job.
    await nack(other);
    expect(await sql('select status, dedupe_key from jobs.job where job_id = $1', [doomed]))
      .toEqual([{ status: 'cancelled', dedupe_key: 'dh:501' }]);
  });
});
