// dedupe_mode 'keep_waiting' (pg-boss's queue policy short): only a job that
// has not started yet holds its dedupe key (pg-boss's state 'created', its
// unique index job_i1); a running holder, or one waiting to retry, lets the
// new job take the key. With serial_key = the dedupe key it is pg-boss's
// stately (job_i3: one created, one active per key). On a real PostgreSQL;
// the CLI case runs dist/cli.mjs (npm run build first).
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue, publish, publishBulk, schedule, type JobContext } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';
import { runCli, until } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const one = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await sql<R>(text, params))[0]!;
const shared = { ...db.driver, close: async () => {} };
const queueWith = () => createQueue({ driver: shared, tasks: {} });
/** A keep_waiting publish of key user:1 (extra: more named arguments). */
const short = (body: string, extra = '') =>
  one<{ id: string }>(`select jobs.publish('sync.user', '${body}', dedupe_key => 'user:1', dedupe_mode => 'keep_waiting'${extra})::text as id`)
    .then((r) => r.id);
const rows = () => sql(`select job_id::text as id, body, dedupe_key, serial_key, serial_wait, attempt, lease_until is not null as running
                        from jobs.job_queue order by job_id`);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency, jobs.recurring, jobs.throttle');
});

describe('dedupe_mode keep_waiting (pg-boss short)', () => {
  it('a waiting holder (pending, scheduled or blocked) is answered and nothing is written, its body kept', async () => {
    const id = await short('{"n":1}');
    expect(await short('{"n":2}')).toBe(id);
    expect(await short('{"n":3}', `, scheduled_at => now() + interval '1 hour'`)).toBe(id);
    expect(await rows()).toEqual([
      { id, body: { n: 1 }, dedupe_key: 'user:1', serial_key: null, serial_wait: false, attempt: 0, running: false }]);
    // Scheduled, and blocked behind its serial key: still waiting, still the holder.
    await sql('truncate jobs.job_queue');
    const head = await one<{ id: string }>(`select jobs.publish('other', serial_key => 's')::text as id`);
    const later = await short('{"n":1}', `, scheduled_at => now() + interval '1 hour', serial_key => 's'`);
    expect(await short('{"n":2}')).toBe(later);
    expect(await sql(`select job_id::text as id from jobs.job_queue order by job_id`)).toEqual([{ id: head.id }, { id: later }]);
  });

  it('a running holder does not block: it finishes keyless, the new job holds the key (a third publish answers it)', async () => {
    const old = await short('{"n":1}');
    expect(await sql(`select job_id::text as id from jobs.consume(1)`)).toEqual([{ id: old }]);
    const fresh = await short('{"n":2}');
    expect(fresh).not.toBe(old);
    expect(await short('{"n":3}')).toBe(fresh);
    expect(await rows()).toEqual([
      { id: old, body: { n: 1 }, dedupe_key: null, serial_key: null, serial_wait: false, attempt: 1, running: true },
      { id: fresh, body: { n: 2 }, dedupe_key: 'user:1', serial_key: null, serial_wait: false, attempt: 0, running: false }]);
    // Both run (no serial key: side by side, as pg-boss short allows) and end; the old one keyless.
    expect(await sql(`select job_id::text as id from jobs.consume(1)`)).toEqual([{ id: fresh }]);
    await sql(`select jobs.ack($1::bigint), jobs.ack($2::bigint)`, [old, fresh]);
    expect(await sql(`select job_id::text as id, status, dedupe_key from jobs.job order by job_id`)).toEqual([
      { id: old, status: 'success', dedupe_key: null }, { id: fresh, status: 'success', dedupe_key: 'user:1' }]);
    // 'keep' on the same key still answers a running holder.
    const kept = await short('{"n":4}');
    await sql(`select jobs.consume(1)`);
    expect((await one<{ id: string }>(`select jobs.publish('sync.user', dedupe_key => 'user:1')::text as id`)).id).toBe(kept);
  });

  it('a holder waiting to retry (pg-boss state retry) does not block either: it retries keyless beside the new job', async () => {
    const old = await short('{"n":1}');
    await sql(`select jobs.consume(1)`);
    expect(await one(`select jobs.nack($1::bigint, 'boom', now() + interval '1 hour') as retried`, [old])).toEqual({ retried: true });
    const fresh = await short('{"n":2}');
    expect(fresh).not.toBe(old);
    expect(await short('{"n":3}')).toBe(fresh);
    expect(await rows()).toEqual([
      { id: old, body: { n: 1 }, dedupe_key: null, serial_key: null, serial_wait: false, attempt: 1, running: false },
      { id: fresh, body: { n: 2 }, dedupe_key: 'user:1', serial_key: null, serial_wait: false, attempt: 0, running: false }]);
    expect(await one(`select last_error from jobs.job_queue where job_id = $1`, [old])).toEqual({ last_error: 'boom' });
  });

  it("stately: with serial_key = the key, one waiting and one running per key; a failing running job's retry runs before the waiting one", async () => {
    const stately = (n: number) => short(`{"n":${n}}`, `, serial_key => 'user:1'`);
    const a = await stately(1);
    expect(await sql(`select job_id::text as id from jobs.consume(5)`)).toEqual([{ id: a }]);
    const b = await stately(2);
    expect(b).not.toBe(a);
    expect(await stately(3)).toBe(b);
    expect(await sql(`select job_id from jobs.consume(5)`)).toEqual([]); // b waits behind the running a
    // a fails and will retry: it keeps the serial key, so its retry comes before b; b still holds the dedupe key.
    expect(await one(`select jobs.nack($1::bigint, 'boom', now()) as retried`, [a])).toEqual({ retried: true });
    expect(await stately(4)).toBe(b);
    expect(await rows()).toEqual([
      { id: a, body: { n: 1 }, dedupe_key: null, serial_key: 'user:1', serial_wait: false, attempt: 1, running: false },
      { id: b, body: { n: 2 }, dedupe_key: 'user:1', serial_key: 'user:1', serial_wait: true, attempt: 0, running: false }]);
    expect(await sql(`select job_id::text as id from jobs.consume(5)`)).toEqual([{ id: a }]);
    await sql(`select jobs.ack($1::bigint)`, [a]);
    expect(await sql(`select job_id::text as id from jobs.consume(5)`)).toEqual([{ id: b }]);
    // b running: the next publish is a new waiting job behind it.
    const c = await stately(5);
    expect(c).not.toBe(b);
    expect(await one(`select serial_wait from jobs.job_queue where job_id = $1`, [c])).toEqual({ serial_wait: true });
    // A lone holder waiting to retry lets a new job take the key; it waits behind the retry (its serial key).
    await sql('truncate jobs.job_queue');
    const d = await stately(6);
    await sql(`select jobs.consume(1)`);
    await sql(`select jobs.nack($1::bigint, 'boom', now())`, [d]);
    const e = await stately(7);
    expect(e).not.toBe(d);
    expect(await sql(`select job_id::text as id from jobs.consume(5)`)).toEqual([{ id: d }]);
  });

  for (const bulk of [false, true])
  it(`race: concurrent keep_waiting publishes${bulk ? ' (bulk)' : ''} against drains lose nothing; a publish never gets a job that had started`, async () => {
    // One counter orders the handlers' starts and returns and the publishes' sends and answers.
    let tick = 0;
    const started = new Map<string, number>(); // job id -> when its handler began
    const q = createQueue({ driver: shared, tasks: { sync: { user: async (_: unknown, ctx: JobContext) => {
      started.set(ctx.job.id, ++tick);
      // Running while publishes arrive, so that publishes find running holders (and their settles).
      await new Promise((r) => setTimeout(r, 30));
    } } } });
    const sent: { id: string; before: number; after: number }[] = [];
    let publishing = true;
    const chains = Array.from({ length: 6 }, async () => {
      for (let k = 0; k < 25; k++) {
        const before = ++tick;
        const id = bulk ? (await publishBulk(db.driver, [{ task: 'sync.user', body: { k }, dedupeKey: 'user:1', dedupeMode: 'keep_waiting' }]))[0]!
          : await publish(db.driver, 'sync.user', { k }, { dedupeKey: 'user:1', dedupeMode: 'keep_waiting' });
        sent.push({ id, before, after: ++tick });
      }
    });
    const drains = Array.from({ length: 3 }, async () => {
      while (publishing) await q.drain(5, Date.now() + 120_000);
    });
    await Promise.all(chains).finally(() => (publishing = false));
    await Promise.all(drains);
    await q.drain(10, Date.now() + 120_000);
    const ids = new Set(sent.map((s) => s.id));
    expect(ids.size).toBeGreaterThan(1);
    expect(ids.size).toBeLessThan(sent.length);
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 0 });
    const ended = await sql<{ id: string; status: string }>(`select job_id::text as id, status from jobs.job`);
    expect(ended.map((e) => e.id).sort()).toEqual([...ids].sort());
    expect(ended.every((e) => e.status === 'success')).toBe(true);
    // Answered with a job, the publish came before that job's handler began (it had not started),
    // a bulk's too: a holder whose settle held its row is waited for, not answered.
    for (const s of sent) {
      expect(started.get(s.id)! > s.before, `${s.id}: started ${started.get(s.id)}, published ${s.before}-${s.after}`).toBe(true);
    }
  });

  it('bulk: publish_arrays dedupe_modes and publishBulk dedupeMode keep_waiting; keep positions unchanged', async () => {
    const waiting = await short('{"n":1}');
    const running = await one<{ id: string }>(`select jobs.publish('sync.user', dedupe_key => 'user:2')::text as id`);
    const keptRunning = await one<{ id: string }>(`select jobs.publish('sync.user', dedupe_key => 'user:3')::text as id`);
    await sql(`select jobs.consume(5)`);
    await sql(`update jobs.job_queue set lease_until = null, attempt = 0, started_at = null where job_id = $1`, [waiting]);
    const ids = (await one<{ ids: string[] }>(`select jobs.publish_arrays(array['a', 'b', 'c', 'd'],
        dedupe_keys => array['user:1', 'user:2', 'user:2', 'user:3'],
        dedupe_modes => array['keep_waiting', 'keep_waiting', null, null])::text[] as ids`)).ids;
    expect(ids[0]).toBe(waiting);
    expect(ids[1]).not.toBe(running.id);
    expect(ids[2]).toBe(ids[1]);
    expect(ids[3]).toBe(keptRunning.id);
    expect(await sql(`select job_id::text as id, task, dedupe_key from jobs.job_queue order by job_id`)).toEqual([
      { id: waiting, task: 'sync.user', dedupe_key: 'user:1' }, { id: running.id, task: 'sync.user', dedupe_key: null },
      { id: keptRunning.id, task: 'sync.user', dedupe_key: 'user:3' }, { id: ids[1], task: 'b', dedupe_key: 'user:2' }]);
    // TypeScript: the mode per job; a running holder of a keep_waiting key gives it up.
    await sql(`select jobs.consume(5)`);
    const got = await publishBulk(db.driver, [{ task: 'e', dedupeKey: 'user:1', dedupeMode: 'keep_waiting' },
                                              { task: 'f', dedupeKey: 'user:3', dedupeMode: 'keep' }]);
    expect(got[0]).not.toBe(waiting);
    expect(got[1]).toBe(keptRunning.id);
    expect(await one(`select task, dedupe_key from jobs.job_queue where job_id = $1`, [got[0]])).toEqual({ task: 'e', dedupe_key: 'user:1' });
    expect(await one(`select dedupe_key from jobs.job_queue where job_id = $1`, [waiting])).toEqual({ dedupe_key: null });
    // A holder waiting to retry lets go of a keep_waiting key in a bulk too, and keeps its serial key for the new job.
    const retrying = await one<{ id: string }>(`select jobs.publish('sync.user', dedupe_key => 'user:4', serial_key => 's4')::text as id`);
    await sql(`delete from jobs.job_queue where job_id <> $1`, [retrying.id]);
    await sql(`select jobs.consume(1)`);
    await sql(`select jobs.nack($1::bigint, 'boom', now() + interval '1 hour')`, [retrying.id]);
    const [next] = await publishBulk(db.driver, [{ task: 'g', dedupeKey: 'user:4', dedupeMode: 'keep_waiting' }]);
    expect(next).not.toBe(retrying.id);
    expect(await sql(`select job_id::text as id, dedupe_key, serial_key, serial_wait from jobs.job_queue where serial_key = 's4' order by job_id`))
      .toEqual([{ id: retrying.id, dedupe_key: null, serial_key: 's4', serial_wait: false },
                { id: next, dedupe_key: 'user:4', serial_key: 's4', serial_wait: true }]);
  });

  it('bulk: a keep_waiting key a concurrent publish is taking from its running holder waits for it and answers its new job, '
    + 'not the running one', async () => {
    const kw = (body: string) => `select jobs.publish('sync.user', '${body}', dedupe_key => 'user:1', dedupe_mode => 'keep_waiting')::text as id`;
    const bulk = `select (jobs.publish_arrays(array['sync.user'], dedupe_keys => array['user:1'],
                                              dedupe_modes => array['keep_waiting']))[1]::text as id`;
    const [a, b] = [new pg.Client({ connectionString: db.url }), new pg.Client({ connectionString: db.url })];
    await a.connect();
    await b.connect();
    try {
      const bPid = (await b.query('select pg_backend_pid() as pid')).rows[0].pid as number;
      for (const taker of [kw('{"n":2}'), bulk]) {
        await sql('truncate jobs.job_queue');
        const running = await short('{"n":1}');
        await sql(`select jobs.consume(1)`);
        // A takes the key from the running job (one publish, then a bulk), uncommitted.
        await a.query('begin');
        const fresh = (await a.query<{ id: string }>(taker)).rows[0]!.id;
        expect(fresh).not.toBe(running);
        // B's bulk waits for A (pg-boss's short: only a job not started yet is answered)...
        let answered: string | undefined;
        const second = b.query<{ id: string }>(bulk).then((r) => (answered = r.rows[0]!.id));
        await until(async () => answered !== undefined || (await sql<{ w: string | null }>(
          `select wait_event_type as w from pg_stat_activity where pid = $1`, [bPid]))[0]?.w === 'Lock', "B's bulk to wait for A");
        await a.query('commit');
        // ...and answers A's job, not the one that had started before it was sent.
        expect(await second).toBe(fresh);
        expect(await sql(`select job_id::text as id, dedupe_key from jobs.job_queue order by job_id`))
          .toEqual([{ id: running, dedupe_key: null }, { id: fresh, dedupe_key: 'user:1' }]);
      }
    } finally {
      await a.query('rollback').catch(() => {});
      await Promise.all([a.end(), b.end()]);
    }
  });

  it('a schedule with dedupe_mode keep_waiting: no job while its holder waits, a new one once it runs', async () => {
    const T0 = '2030-01-01T00:00:00Z';
    const minute = (k: number) => new Date(Date.parse(T0) + k * 60_000).toISOString();
    await sql(`select jobs.schedule('digest', '*/10 * * * *', 'mail.digest', dedupe_key => 'digest:all', dedupe_mode => 'keep_waiting',
               runner => 'drains', now => $1)`, [T0]);
    await sql(`select jobs.publish_due_schedules($1)`, [minute(10)]);
    await sql(`select jobs.publish_due_schedules($1)`, [minute(20)]);
    const first = await sql<{ id: string }>(`select job_id::text as id from jobs.job_queue`);
    expect(first).toHaveLength(1);
    await sql(`select jobs.claim(1, 'mail.digest', now => $1)`, [minute(21)]);
    await sql(`select jobs.publish_due_schedules($1)`, [minute(30)]);
    expect(await sql(`select dedupe_key, lease_until is not null as running from jobs.job_queue order by job_id`)).toEqual([
      { dedupe_key: null, running: true }, { dedupe_key: 'digest:all', running: false }]);
    expect(await schedule(db.driver, { name: 'b', cron: '@hourly', task: 'a.b', dedupeKey: 'k', dedupeMode: 'keep_waiting', runner: 'drains' }))
      .toBe('drains');
    expect(await one(`select dedupe_mode from jobs.recurring where name = 'b'`)).toEqual({ dedupe_mode: 'keep_waiting' });
  });

  it('bad input names the field and lists the modes; keep_waiting refuses throttle_seconds; nothing is written', async () => {
    const bad = (text: string) => sqlErrorOf(sql, text);
    expect(await bad(`select jobs.publish('t', dedupe_key => 'k', dedupe_mode => 'short')`)).toMatchObject({ code: 'PD011', column: 'dedupe_mode',
      message: "dedupe_mode: must be keep, keep_waiting, replace or replace_keep_time, got 'short'" });
    expect(await bad(`select jobs.publish('t', dedupe_key => 'k', dedupe_mode => 'keep_waiting', throttle_seconds => 60)`)).toMatchObject({
      code: 'PD011', column: 'throttle_seconds', message: expect.stringMatching(/^throttle_seconds: cannot be given with dedupe_mode keep_waiting/) });
    expect(await bad(`select jobs.publish_arrays(array['a', 'b'], dedupe_keys => array['k', 'l'], dedupe_modes => array['keep', 'replace'])`))
      .toMatchObject({ code: 'PD011', column: 'jobs[2].dedupe_mode',
        message: expect.stringMatching(/^jobs\[2\]\.dedupe_mode: must be keep or keep_waiting in a bulk publish .*got 'replace'$/) });
    expect(await bad(`select jobs.publish_arrays(array['a', 'b'], dedupe_keys => array['k', null], dedupe_modes => array[null, 'keep_waiting'])`))
      .toMatchObject({ code: 'PD011', column: 'jobs[2].dedupe_mode', message: 'jobs[2].dedupe_mode: needs a dedupe_key (the key whose job it keeps)' });
    expect(await bad(`select jobs.publish_arrays(array['a', 'b'], dedupe_modes => array['keep_waiting'])`)).toMatchObject({ code: 'PD017' });
    // Each distinct keep_waiting key of a bulk takes a lock until commit, as a serial key: at most 500.
    expect(await bad(`select jobs.publish_arrays(array_fill('t'::text, array[501]), dedupe_keys => array(select 'k' || g from generate_series(1, 501) g),
                                                 dedupe_modes => array_fill('keep_waiting'::text, array[501]))`)).toMatchObject({
      code: 'PD011', column: 'dedupe_modes', message: expect.stringMatching(/^dedupe_modes: must give keep_waiting to at most 500 distinct dedupe keys/) });
    await expect(publishBulk(db.driver, Array.from({ length: 501 }, (_, i) => ({ task: 't', dedupeKey: `k${i % 501}`, dedupeMode: 'keep_waiting' as const }))))
      .rejects.toMatchObject({ field: 'dedupeMode', message: expect.stringMatching(/^dedupeMode: must give keep_waiting to at most 500/) });
    expect(await bad(`select jobs.schedule('s', '@hourly', 't', dedupe_key => 'k', dedupe_mode => 'short')`)).toMatchObject({
      code: 'PD011', column: 'dedupe_mode', message: "dedupe_mode: must be keep, keep_waiting, replace or replace_keep_time, got 'short'" });
    const q = queueWith();
    await expect(q.publish('t', {}, { dedupeKey: 'k', dedupeMode: 'short' as 'keep' })).rejects.toMatchObject(
      { field: 'options.dedupeMode', message: "options.dedupeMode: must be 'keep', 'keep_waiting', 'replace' or 'replace_keep_time'" });
    await expect(q.publish('t', {}, { dedupeKey: 'k', dedupeMode: 'keep_waiting', throttleSeconds: 60 })).rejects.toMatchObject(
      { field: 'options.throttleSeconds', message: expect.stringMatching(/^options\.throttleSeconds: cannot be given with dedupeMode 'keep_waiting'/) });
    await expect(publishBulk(db.driver, [{ task: 't', dedupeMode: 'keep_waiting' }])).rejects.toMatchObject(
      { field: 'jobs[0].dedupeMode', message: expect.stringMatching(/needs a dedupe key/) });
    expect(await one(`select (select count(*) from jobs.job_queue) + (select count(*) from jobs.recurring) as n`)).toEqual({ n: '0' });
  });

  it('CLI publish and schedule add --dedupe-mode keep_waiting, and HTTP dedupeMode (one job and a bulk)', async () => {
    const a = await runCli(db.url, 'publish', 'sync.user', '{"n":1}', '--dedupe-key', 'user:1', '--dedupe-mode', 'keep_waiting');
    const b = await runCli(db.url, 'publish', 'sync.user', '{"n":2}', '--dedupe-key', 'user:1', '--dedupe-mode', 'keep_waiting');
    expect(a).toMatchObject({ code: 0 });
    expect(b.stdout).toBe(a.stdout);
    await sql(`select jobs.consume(1)`);
    const c = await runCli(db.url, 'publish', 'sync.user', '{"n":3}', '--dedupe-key', 'user:1', '--dedupe-mode', 'keep_waiting');
    expect(c.stdout).not.toBe(a.stdout);
    expect(await runCli(db.url, 'schedule', 'add', 'digest', '--cron', '@hourly', '--task', 'a.b', '--runner', 'drains',
                        '--dedupe-key', 'k', '--dedupe-mode', 'keep_waiting')).toMatchObject({ code: 0 });
    expect(await sql(`select dedupe_key, dedupe_mode from jobs.recurring`)).toEqual([{ dedupe_key: 'k', dedupe_mode: 'keep_waiting' }]);

    const token = 'keep-waiting-token-0123456789abc';
    const app = createApp({ queue: queueWith(), token });
    const post = async (body: unknown) => {
      const res = await app.request('/jobs', { method: 'POST', body: JSON.stringify(body),
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } });
      return { status: res.status, body: await res.json() as Record<string, any> };
    };
    expect(await post({ task: 'sync.user', dedupeKey: 'user:1', dedupeMode: 'keep_waiting' }))
      .toEqual({ status: 201, body: { id: c.stdout.trim() } });
    await sql(`select jobs.consume(1)`);
    const bulk = await post({ jobs: [{ task: 'sync.user', dedupeKey: 'user:1', dedupeMode: 'keep_waiting' }] });
    expect(bulk.status).toBe(201);
    expect(bulk.body.ids[0]).not.toBe(c.stdout.trim());
    expect(await sql(`select dedupe_key from jobs.job_queue order by job_id`))
      .toEqual([{ dedupe_key: null }, { dedupe_key: null }, { dedupe_key: 'user:1' }]);
  });
});
