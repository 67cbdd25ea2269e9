// pg_cron for real: the test server preloads pg_cron 1.4 with
// cron.database_name=postgres, and pg_cron runs jobs in that database only,
// so this file migrates the jobs schema into the server's `postgres`
// database and removes it (and every pgdrain pg_cron job) afterwards.
// Without pg_cron every test here fails: install postgresql-15-cron.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { checkCron, createQueue, nextTicks, ValidationError } from '../src/index.js';
import { sqlErrorOf } from './support/db.js';
import { PG_NET_STAND_IN } from './support/pg-net-stand-in.js';
import { migrateWithNoteTask } from './support/cron-fixture.js';
import { until } from './support/drain-process.js';

const serverUrl = inject('serverUrl'); // the server's `postgres` database
const pool = new pg.Pool({ connectionString: serverUrl, max: 4 });
const sql = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await pool.query(text, params)).rows as R[];
let createdExtension = false;

const sqlError = (text: string, params?: unknown[]) => sqlErrorOf(sql, text, params);

/** Whether a statement whose text contains `text` waits on a lock. */
const waitingOnLock = async (text: string) =>
  (await sql(`select 1 from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'
              and query like $1`, [`%${text}%`])).length > 0;

/** What a pg_cron command answers: its last statement's rows (a tick's command is two statements). */
const commandRows = async (text: string) => {
  const r = (await pool.query(text)) as unknown as pg.QueryResult | pg.QueryResult[];
  return (Array.isArray(r) ? r[r.length - 1]! : r).rows as Record<string, string | null>[];
};

const cronJob = async (name: string) =>
  (await sql<{ jobid: string; schedule: string; command: string; database: string; active: boolean }>(
    `select jobid, schedule, command, database, active from cron.job where jobname = $1`, [name]));

beforeAll(async () => {
  if (!inject('pgCron')) {
    throw new Error('pg_cron is not preloaded on the test server: install postgresql-15-cron (.ci/run does); these tests must not be skipped');
  }
  createdExtension = (await sql(`select 1 from pg_extension where extname = 'pg_cron'`)).length === 0;
  await sql('create extension if not exists pg_cron');
  await migrateWithNoteTask(serverUrl, sql);
});

afterAll(async () => {
  await sql(`select cron.unschedule(jobid) from cron.job where jobname like 'pgdrain:%'`).catch(() => {});
  await sql('drop schema if exists jobs, app, net cascade');
  if (createdExtension) await sql('drop extension if exists pg_cron');
  await pool.end();
});

describe('pg_cron', () => {
  it('jobs.schedule registers a pg_cron job that publishes; idempotent per name, listed, removable', async () => {
    expect(await sql(`select jobs.schedule('nightly', '0 3 * * *', 'report.daily', '{"d":1}', timeout => 30) as r`))
      .toEqual([{ r: 'pg_cron' }]);
    const [first] = await cronJob('pgdrain:schedule:nightly');
    expect(first).toMatchObject({ schedule: '0 3 * * *', command: "set transaction isolation level read committed; select jobs.run_schedule('nightly')",
                                  database: 'postgres', active: true });
    await sql(`select jobs.schedule('nightly', '0 3 * * *', 'report.daily', '{"d":1}', timeout => 30)`);
    await sql(`select jobs.schedule('nightly', '30 4 * * *', 'report.daily', '{"d":2}', timeout => 30)`);
    expect(await cronJob('pgdrain:schedule:nightly')).toEqual([{ ...first, schedule: '30 4 * * *' }]);
    const [listed] = await sql<{ next_run_at: Date }>(
      `select name, runner, pg_cron_job, body, next_run_at from jobs.schedules`);
    expect(listed).toMatchObject({ name: 'nightly', runner: 'pg_cron', pg_cron_job: 'pgdrain:schedule:nightly', body: { d: 2 } });
    expect(listed!.next_run_at).toEqual(nextTicks('30 4 * * *', 1, new Date())[0]);

    // What pg_cron runs at each tick, called directly.
    const { id } = (await sql<{ id: string }>(`select jobs.run_schedule('nightly') as id`))[0]!;
    expect(await sql(`select task, body, timeout::float8 as timeout from jobs.job_queue where job_id = $1`, [id]))
      .toEqual([{ task: 'report.daily', body: { d: 2 }, timeout: 30 }]);
    expect(await sql(`select last_job_id::text as id from jobs.recurring`)).toEqual([{ id }]);

    // Handing it to the drains removes the pg_cron job; unschedule removes the rest.
    expect(await sql(`select jobs.schedule('nightly', '30 4 * * *', 'report.daily', runner => 'drains') as r`)).toEqual([{ r: 'drains' }]);
    expect(await cronJob('pgdrain:schedule:nightly')).toEqual([]);
    await sql(`select jobs.schedule('nightly', '30 4 * * *', 'report.daily')`);
    expect(await cronJob('pgdrain:schedule:nightly')).toHaveLength(1);
    expect(await sql(`select jobs.unschedule('nightly') as r`)).toEqual([{ r: true }]);
    expect(await cronJob('pgdrain:schedule:nightly')).toEqual([]);
    expect(await sql(`select count(*)::int as n from jobs.schedules`)).toEqual([{ n: 0 }]);
    expect(await sql(`select jobs.unschedule('nightly') as r`)).toEqual([{ r: false }]);
  });

  it('@ names in any case register with pg_cron (which knows them in lower case); a tick that cannot publish is recorded', async () => {
    expect(await sql(`select jobs.schedule('up', '@HOURLY', 'a.b') as r`)).toEqual([{ r: 'pg_cron' }]);
    expect(await cronJob('pgdrain:schedule:up')).toMatchObject([{ schedule: '@hourly' }]);
    expect(await sql(`select cron from jobs.recurring where name = 'up'`)).toEqual([{ cron: '@hourly' }]);

    // A full queue: the tick publishes nothing and says why, where jobs.schedules shows it.
    await sql(`select jobs.create_queue('tiny', 1); select jobs.publish('a.b', queue => 'tiny')`);
    await sql(`select jobs.schedule('full', '@hourly', 'a.b', queue => 'tiny')`);
    expect(await sql(`select jobs.run_schedule('full') as id`)).toEqual([{ id: null }]);
    expect(await sql(`select last_error from jobs.schedules where name = 'full'`))
      .toEqual([{ last_error: expect.stringMatching(/^queue: queue 'tiny' is full.*\(SQLSTATE PD010\)/) }]);
    await sql(`select jobs.unschedule('up'), jobs.unschedule('full')`);
    await sql(`delete from jobs.job_queue where queue = 'tiny'; delete from jobs.queue where name = 'tiny'`);
  });

  it('every function that registers a pg_cron job takes an @ name in any case, padded: pg_cron gets it trimmed, in lower case', async () => {
    expect(await sql(`select jobs.schedule('pad', ' @HOURLY ', 'a.b') as r`)).toEqual([{ r: 'pg_cron' }]);
    expect(await cronJob('pgdrain:schedule:pad')).toMatchObject([{ schedule: '@hourly' }]);
    expect(await sql(`select cron from jobs.recurring where name = 'pad'`)).toEqual([{ cron: '@hourly' }]);
    await sql(`select jobs.unschedule('pad')`);

    await sql(`select jobs.schedule_maintenance(' @DAILY')`);
    expect(await cronJob('pgdrain:maintain')).toMatchObject([{ schedule: '@daily' }]);
    await sql(`select jobs.schedule_maintenance('@HOURLY')`);
    expect(await cronJob('pgdrain:maintain')).toMatchObject([{ schedule: '@hourly' }]);
    await sql(`select cron.unschedule(jobid) from cron.job where jobname in ('pgdrain:maintain', 'pgdrain:vacuum')`);
  });

  it('handing a schedule to the drains while pg_cron publishes its tick does not publish that tick twice', async () => {
    await sql('truncate jobs.job_queue');
    await sql(`select jobs.schedule('sw', '*/5 * * * *', 'sw.tick', runner => 'pg_cron', now => '2030-01-01 11:50Z')`);
    // pg_cron's tick of 12:00 is publishing (its transaction open) when a
    // schedule() that began just before 12:00 hands the schedule to the drains.
    const tick = await pool.connect();
    try {
      await tick.query(`begin; select jobs.run_schedule('sw', now => '2030-01-01 12:00:00.05Z')`);
      const handover = sql(`select jobs.schedule('sw', '*/5 * * * *', 'sw.tick', runner => 'drains',
                                                 now => '2030-01-01 11:59:59.99Z')`);
      await until(() => waitingOnLock('jobs.schedule('), 'the handover to wait for the tick');
      await tick.query('commit');
      await handover;
    } finally {
      tick.release();
    }
    const row = await sql(`select runner, next_run_at from jobs.recurring where name = 'sw'`);
    const due = await sql(`select jobs.publish_due_schedules('2030-01-01 12:00:01Z') as n`);
    // A tick pg_cron starts after the handover (or a pg_cron job left behind) publishes nothing.
    const late = await sql(`select jobs.run_schedule('sw', now => '2030-01-01 12:05:00.01Z') as id`);
    await sql(`select jobs.unschedule('sw')`);
    expect(row).toEqual([{ runner: 'drains', next_run_at: new Date('2030-01-01T12:05:00Z') }]);
    expect(due).toEqual([{ n: 0 }]);
    expect(late).toEqual([{ id: null }]);
    expect(await sql(`select count(*)::int as n from jobs.job_queue where task = 'sw.tick'`)).toEqual([{ n: 1 }]);
  });

  it('a change of runner never drops a due tick: drains → pg_cron publishes the one no drain did, pg_cron → drains the one pg_cron had not reached', async () => {
    await sql('truncate jobs.job_queue');
    // Drains ran it; the 12:00 tick is due, but no drain has claimed since. A deploy hands it to pg_cron.
    await sql(`select jobs.schedule('to-cron', '*/5 * * * *', 'to.cron', runner => 'drains', now => '2030-01-01 11:56Z')`);
    await sql(`select jobs.schedule('to-cron', '*/5 * * * *', 'to.cron', runner => 'pg_cron', now => '2030-01-01 12:00:30Z')`);
    // pg_cron ran it until 11:55; it has not reached 12:00 when the schedule goes to the drains.
    await sql(`select jobs.schedule('to-drains', '*/5 * * * *', 'to.drains', runner => 'pg_cron', now => '2030-01-01 11:50Z')`);
    await sql(`select jobs.run_schedule('to-drains', now => '2030-01-01 11:55:00.01Z')`);
    await sql(`select jobs.schedule('to-drains', '*/5 * * * *', 'to.drains', runner => 'drains', now => '2030-01-01 12:00:00.5Z')`);
    const late = await sql(`select jobs.run_schedule('to-drains', now => '2030-01-01 12:00:01Z') as id`); // pg_cron, late
    await sql(`select jobs.publish_due_schedules('2030-01-01 12:00:02Z')`);
    await sql(`select jobs.unschedule('to-cron'), jobs.unschedule('to-drains')`);
    expect(late).toEqual([{ id: null }]);
    expect(await sql(`select task, scheduled_at from jobs.job_queue order by task, scheduled_at`)).toEqual([
      { task: 'to.cron', scheduled_at: new Date('2030-01-01T12:00:00Z') },
      { task: 'to.drains', scheduled_at: new Date('2030-01-01T11:55:00.01Z') },
      { task: 'to.drains', scheduled_at: new Date('2030-01-01T12:00:00Z') }]);
  });

  it('a schedule name pg_cron cannot hold is refused, so two never share one pg_cron job', async () => {
    const name = 'a'.repeat(47);
    await expect(sql(`select jobs.schedule($1, '@hourly', 'a.b')`, [name])).rejects
      .toMatchObject({ code: 'PDC02', column: 'name', message: expect.stringMatching(/^name: must be 1 to 46 letters/) });
    await sql(`select jobs.schedule($1, '@hourly', 'a.b')`, ['b'.repeat(46)]);
    expect(await cronJob(`pgdrain:schedule:${'b'.repeat(46)}`)).toHaveLength(1);
    expect(await sql(`select jobs.unschedule($1) as r`, ['b'.repeat(46)])).toEqual([{ r: true }]);
    expect(await cronJob(`pgdrain:schedule:${'b'.repeat(46)}`)).toHaveLength(0);
  });

  it('two first schedule() calls for one name, pg_cron then drains, leave no pg_cron job behind', async () => {
    const first = await pool.connect();
    try {
      await first.query(`begin; select jobs.schedule('twice', '@hourly', 'a.b', runner => 'pg_cron')`);
      const second = sql(`select jobs.schedule('twice', '@hourly', 'a.b', runner => 'drains')`);
      await until(() => waitingOnLock(`jobs.schedule('twice'`), 'the second call to wait for the first');
      await first.query('commit');
      await second;
    } finally {
      first.release();
    }
    const runner = await sql(`select runner from jobs.recurring where name = 'twice'`);
    const left = await cronJob('pgdrain:schedule:twice');
    await sql(`select jobs.unschedule('twice')`);
    expect(runner).toEqual([{ runner: 'drains' }]);
    expect(left).toEqual([]);
  });

  it("overlap 'skip' under pg_cron: the command pg_cron runs publishes nothing while the schedule's job is active, then publishes again", async () => {
    await sql('truncate jobs.job_queue');
    expect(await sql(`select jobs.schedule('single', '* * * * *', 'cron.single', overlap => 'skip') as r`)).toEqual([{ r: 'pg_cron' }]);
    const [job] = await cronJob('pgdrain:schedule:single');
    expect(job!.command).toBe("set transaction isolation level read committed; select jobs.run_schedule('single')");
    // pg_cron's ticks, run as pg_cron runs them.
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await commandRows(job!.command))[0]!.run_schedule);
    expect(ids[0]).not.toBeNull();
    expect(ids.slice(1)).toEqual([null, null]);
    expect(await sql(`select job_id::text as id, dedupe_key from jobs.job_queue where task = 'cron.single'`))
      .toEqual([{ id: ids[0], dedupe_key: 'pgdrain:schedule:single' }]);
    expect(await sql(`select overlap, skipped_ticks::int, last_job_id::text as id, last_skipped_at is not null as skipped
                      from jobs.schedules where name = 'single'`))
      .toEqual([{ overlap: 'skip', skipped_ticks: 2, id: ids[0], skipped: true }]);
    await sql(`select jobs.ack(c.job_id) from jobs.claim(1, 'cron.single') c`);
    const next = (await commandRows(job!.command))[0]!.run_schedule;
    expect(next).not.toBeNull();
    expect(next).not.toBe(ids[0]);
    expect(await sql(`select count(*)::int as n from jobs.job_queue where task = 'cron.single'`)).toEqual([{ n: 1 }]);
    await sql(`select jobs.unschedule('single')`);
  });

  it('a dedupe key under pg_cron: the command pg_cron runs publishes with the key and mode (replace: one waiting job; keep: the holder)', async () => {
    await sql('truncate jobs.job_queue');
    expect(await sql(`select jobs.schedule('digest', '* * * * *', 'cron.digest', dedupe_key => 'digest:all', dedupe_mode => 'replace') as r`))
      .toEqual([{ r: 'pg_cron' }]);
    expect(await sql(`select jobs.schedule('kept', '* * * * *', 'cron.kept', dedupe_key => 'kept:all') as r`)).toEqual([{ r: 'pg_cron' }]);
    const [digest] = await cronJob('pgdrain:schedule:digest');
    const [kept] = await cronJob('pgdrain:schedule:kept');
    // pg_cron's ticks, run as pg_cron runs them.
    const ids: Record<string, (string | null)[]> = { digest: [], kept: [] };
    for (let i = 0; i < 2; i++) {
      ids.digest!.push((await commandRows(digest!.command))[0]!.run_schedule!);
      ids.kept!.push((await commandRows(kept!.command))[0]!.run_schedule!);
    }
    expect(ids.digest![0]).not.toBeNull();
    expect(ids.digest![1]).toBe(ids.digest![0]);
    expect(ids.kept![1]).toBe(ids.kept![0]);
    expect(await sql(`select job_id::text as id, task, dedupe_key from jobs.job_queue order by job_id`)).toEqual([
      { id: ids.digest![0], task: 'cron.digest', dedupe_key: 'digest:all' }, { id: ids.kept![0], task: 'cron.kept', dedupe_key: 'kept:all' }]);
    expect(await sql(`select name, dedupe_key, dedupe_mode, last_job_id::text as id, skipped_ticks::int from jobs.schedules
                      where name in ('digest', 'kept') order by name`)).toEqual([
      { name: 'digest', dedupe_key: 'digest:all', dedupe_mode: 'replace', id: ids.digest![0], skipped_ticks: 0 },
      { name: 'kept', dedupe_key: 'kept:all', dedupe_mode: null, id: ids.kept![0], skipped_ticks: 0 }]);
    await sql(`select jobs.unschedule('digest'), jobs.unschedule('kept')`);
  });

  it('a group under pg_cron: the command pg_cron runs publishes with it, and the queue\'s group_concurrency caps the ticks', async () => {
    await sql('truncate jobs.job_queue');
    await sql(`select jobs.create_queue('cron_gc', group_concurrency => 1)`);
    expect(await sql(`select jobs.schedule('tenant', '* * * * *', 'cron.tenant', queue => 'cron_gc', group_id => 'acme',
                                           group_tier => 'pro') as r`)).toEqual([{ r: 'pg_cron' }]);
    const [job] = await cronJob('pgdrain:schedule:tenant');
    // pg_cron's ticks, run as pg_cron runs them.
    for (let i = 0; i < 3; i++) await sql(job!.command);
    expect(await sql(`select group_id, group_tier from jobs.job_queue where queue = 'cron_gc'`))
      .toEqual(Array(3).fill({ group_id: 'acme', group_tier: 'pro' }));
    // No tier cap for pro: the group's, one at a time.
    expect(await sql(`select job_id from jobs.claim(10, queue => 'cron_gc')`)).toHaveLength(1);
    expect(await sql(`select job_id from jobs.claim(10, queue => 'cron_gc')`)).toEqual([]);
    await sql(`select jobs.unschedule('tenant')`);
    await sql(`delete from jobs.job_queue where queue = 'cron_gc'; delete from jobs.queue where name = 'cron_gc'`);
  });

  it('a schedule in a time zone goes to the drains (pg_cron 1.4 reads UTC only); forcing pg_cron is refused naming tz', async () => {
    const e = await sqlError(`select jobs.schedule('paris', '0 9 * * *', 'a.b', runner => 'pg_cron', tz => 'Europe/Paris')`);
    expect([e.code, e.column]).toEqual(['PDC03', 'tz']);
    expect(e.message).toMatch(/^tz: pg_cron 1\.4 reads schedules in UTC only/);
    expect(await cronJob('pgdrain:schedule:paris')).toEqual([]);
    // With pg_cron at hand, no runner given: drains. Handed over from pg_cron, its pg_cron job goes.
    await sql(`select jobs.schedule('paris', '0 9 * * *', 'a.b')`);
    expect(await cronJob('pgdrain:schedule:paris')).toHaveLength(1);
    expect(await sql(`select jobs.schedule('paris', '0 9 * * *', 'a.b', tz => 'Europe/Paris') as r`)).toEqual([{ r: 'drains' }]);
    expect(await cronJob('pgdrain:schedule:paris')).toEqual([]);
    expect(await sql(`select runner, tz from jobs.schedules where name = 'paris'`)).toEqual([{ runner: 'drains', tz: 'Europe/Paris' }]);
    // UTC by any name is no time zone: pg_cron may run it.
    expect(await sql(`select jobs.schedule('paris', '0 9 * * *', 'a.b', tz => 'Etc/UTC') as r`)).toEqual([{ r: 'pg_cron' }]);
    await sql(`select jobs.unschedule('paris')`);
  });

  // pg_cron 1.5+ reads schedules on the wall clock of cron.timezone, a
  // server setting. pg_cron 1.4.2 here has none, so the test sets it as a
  // session placeholder: jobs.schedule reads it the same way either way.
  it('while pg_cron reads another zone than UTC (cron.timezone), schedules go to the drains; forcing pg_cron is refused naming runner', async () => {
    const client = await pool.connect();
    const q = async (text: string) => (await client.query(text)).rows;
    try {
      await q(`set cron.timezone = 'Europe/Paris'`);
      const e = await q(`select jobs.schedule('zoned', '0 9 * * *', 'a.b', runner => 'pg_cron')`).then(() => null, (err) => err);
      expect([e?.code, e?.column]).toEqual(['PDC03', 'runner']);
      expect(e.message).toMatch(/^runner: pg_cron here reads schedules in time zone 'Europe\/Paris' \(cron\.timezone\)/);
      expect(await cronJob('pgdrain:schedule:zoned')).toEqual([]);
      expect(await q(`select jobs.schedule('zoned', '0 9 * * *', 'a.b') as r`)).toEqual([{ r: 'drains' }]);
      expect(await cronJob('pgdrain:schedule:zoned')).toEqual([]);
      // GMT, pg_cron's default, is UTC: pg_cron runs it again.
      await q(`set cron.timezone = 'GMT'`);
      expect(await q(`select jobs.schedule('zoned', '0 9 * * *', 'a.b') as r`)).toEqual([{ r: 'pg_cron' }]);
      expect(await cronJob('pgdrain:schedule:zoned')).toHaveLength(1);
      await q(`select jobs.unschedule('zoned')`);
    } finally {
      await client.query('reset cron.timezone').catch(() => undefined);
      client.release();
    }
  });

  it('a recurrence rule goes to the drains with pg_cron at hand; forcing pg_cron, or giving a rule to maintenance, is refused', async () => {
    const e = await sqlError(`select jobs.schedule('weekly', 'FREQ=WEEKLY;BYDAY=MO;BYHOUR=9', 'a.b', runner => 'pg_cron')`);
    expect([e.code, e.column]).toEqual(['PDC03', 'runner']);
    expect(e.message).toMatch(/^runner: pg_cron cannot fire a recurrence rule/);
    expect(await cronJob('pgdrain:schedule:weekly')).toEqual([]);
    // Handed over from pg_cron (a cron expression before), its pg_cron job goes.
    await sql(`select jobs.schedule('weekly', '0 9 * * mon', 'a.b')`);
    expect(await cronJob('pgdrain:schedule:weekly')).toHaveLength(1);
    expect(await sql(`select jobs.schedule('weekly', 'FREQ=WEEKLY;BYDAY=MO;BYHOUR=9', 'a.b') as r`)).toEqual([{ r: 'drains' }]);
    expect(await cronJob('pgdrain:schedule:weekly')).toEqual([]);
    await sql(`select jobs.unschedule('weekly')`);
    const before = await cronJob('pgdrain:maintain');
    const m = await sqlError(`select jobs.schedule_maintenance('FREQ=HOURLY')`);
    expect([m.code, m.column, m.message]).toEqual(['PDC01', 'cron', 'cron: pg_cron runs cron expressions only, not a recurrence rule (FREQ=...): give a cron expression']);
    expect(await cronJob('pgdrain:maintain')).toEqual(before);
  });

  it('a bad schedule registers nothing, in pg_cron or in the table', async () => {
    const e = await sqlError(`select jobs.schedule('bad', '*/5 * * *', 'a.b')`);
    expect([e.code, e.column]).toEqual(['PDC01', 'cron']);
    expect(await cronJob('pgdrain:schedule:bad')).toEqual([]);
    expect(await sql(`select count(*)::int as n from jobs.recurring`)).toEqual([{ n: 0 }]);
  });

  it('steps: pg_cron, jobs.schedule and checkCron take the same ones (any from 1, past the range too) and refuse the same', async () => {
    const taken = ['0 0 * * */7', '0 0 * * */8', '0 0 * * 3-6/8', '*/60 * * * *', '*/61 * * * *', '*/9999 * * * *',
                   '0 */25 * * *', '0 0 */32 * *', '0 0 1 */13 *', '1-5/2 * * * *', '0 0 * * 0-7/7'];
    for (const expr of taken) {
      expect(await sql(`select jobs.schedule('steps', $1, 'a.b', runner => 'pg_cron') as r`, [expr]), expr).toEqual([{ r: 'pg_cron' }]);
      expect(await cronJob('pgdrain:schedule:steps'), expr).toMatchObject([{ schedule: expr }]);
      expect(checkCron(expr)).toBe(expr);
    }
    await sql(`select jobs.unschedule('steps')`);
    for (const expr of ['*/0 * * * *', '0 0 * * 1-5/0', '5/10 * * * *']) {
      expect((await sqlError(`select cron.schedule('pgdrain:test:steps', $1, 'select 1')`, [expr])).message, expr)
        .toMatch(/^invalid schedule/);
      expect((await sqlError(`select jobs.schedule('steps', $1, 'a.b', runner => 'pg_cron')`, [expr])).code, expr).toBe('PDC01');
      expect(() => checkCron(expr), expr).toThrow(ValidationError);
    }
    expect(await cronJob('pgdrain:schedule:steps')).toEqual([]);
  });

  it('jobs.schedule_maintenance registers maintain and vacuum in one call; their commands run', async () => {
    const { ids } = (await sql<{ ids: string[] }>(`select jobs.schedule_maintenance('*/5 * * * *', '3 days', true) as ids`))[0]!;
    const [maintain] = await cronJob('pgdrain:maintain');
    const [vacuum] = await cronJob('pgdrain:vacuum');
    expect(maintain).toMatchObject({ schedule: '*/5 * * * *', command: "call jobs.run_maintenance('3 days'::interval, true, 50)" });
    expect(vacuum).toMatchObject({ schedule: '*/10 * * * *', command: 'vacuum (analyze) jobs.job_queue' });
    expect(ids.map(String)).toEqual([maintain!.jobid, vacuum!.jobid].map(String));
    expect((await sql<{ ids: string[] }>(`select jobs.schedule_maintenance('*/5 * * * *', '3 days', true) as ids`))[0]!.ids)
      .toEqual(ids); // idempotent
    const [result] = await sql<{ report: object }>(maintain!.command);
    expect(result!.report).toEqual({ expired: 0, ticks: 0, deleted: 0, archived: 0, windows: 0, misses: 0, left: 0, passes: 1, caughtUp: true });
    await sql(vacuum!.command);
  });

  it('jobs.schedule_http_drain says pg_net is missing; with pg_net it posts to the endpoint with the token', async () => {
    const e = await sqlError(`select jobs.schedule_http_drain('https://app.example/drain', 'secret')`);
    expect(e.code).toBe('0A000');
    expect(e.message).toMatch(/^pg_net is not installed in this database: jobs\.schedule_http_drain needs it/);
    expect(await cronJob('pgdrain:http:default')).toEqual([]);

    await sql(PG_NET_STAND_IN); // pg_net's signature, recording each request (test/support/pg-net-stand-in.ts)
    const bad = await sqlError(`select jobs.schedule_http_drain('ftp://x', 'secret')`);
    expect([bad.code, bad.column]).toEqual(['PDC03', 'url']);
    await sql(`select jobs.schedule_http_drain('https://app.example/drain', 'secret', '*/2 * * * *', body => '{"batchSize":50}')`);
    const [job] = await cronJob('pgdrain:http:default');
    expect(job).toMatchObject({ schedule: '*/2 * * * *', command: "set transaction isolation level read committed; select jobs.run_http_drain('default')" });
    expect(job!.command).not.toContain('secret');
    await sql(job!.command);
    // The body as given; timeout_ms by default over serve's default budget (90 s): pg_net hanging up stops the drain.
    expect(await sql(`select url, body, headers, timeout_milliseconds from net.requests`)).toEqual([{
      url: 'https://app.example/drain', body: { batchSize: 50 },
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer secret' }, timeout_milliseconds: 120000 }]);
    // One that gives it keeps it; one at or over timeout_ms is refused, naming body.budgetSeconds, and nothing is written.
    await sql(`select jobs.schedule_http_drain('https://app.example/drain', 'secret', name => 'short',
                                               body => '{"budgetSeconds":3.5}', timeout_ms => 5000)`);
    await sql(`select jobs.run_http_drain('short')`);
    const over = await sqlError(`select jobs.schedule_http_drain('https://app.example/drain', 'secret', name => 'over',
                                                                 body => '{"budgetSeconds":120}')`);
    expect([over.code, over.column, over.message]).toEqual(['PDC03', 'body.budgetSeconds',
      'body.budgetSeconds: must be under timeout_ms (120000): pg_net hanging up at timeout_ms stops the drain, got 120']);
    // Not a number of seconds above 0: POST /drain would refuse every tick's post (400), the drain never run.
    for (const [body, got] of [['{"budgetSeconds":"30"}', '"30"'], ['{"budgetSeconds":null}', 'null'],
                               ['{"budgetSeconds":0}', '0'], ['{"budgetSeconds":-5}', '-5']]) {
      const odd = await sqlError(`select jobs.schedule_http_drain('https://app.example/drain', 'secret', name => 'odd', body => $1::jsonb)`,
                                 [body]);
      expect([odd.code, odd.column, odd.message]).toEqual(['PDC03', 'body.budgetSeconds',
        `body.budgetSeconds: must be a number of seconds greater than 0, got ${got}`]);
    }
    expect(await cronJob('pgdrain:http:odd')).toEqual([]);
    await sql(`select jobs.schedule_http_drain('https://app.example/drain', 'secret', name => 'tiny', timeout_ms => 1000)`);
    await sql(`select jobs.run_http_drain('tiny')`);
    expect(await sql(`select body, timeout_milliseconds from net.requests where id > 1 order by id`)).toEqual([
      { body: { budgetSeconds: 3.5 }, timeout_milliseconds: 5000 }, { body: {}, timeout_milliseconds: 1000 }]);
    expect(await cronJob('pgdrain:http:over')).toEqual([]);
    expect(await sql(`select jobs.unschedule_http_drain('short') and jobs.unschedule_http_drain('tiny') as r`)).toEqual([{ r: true }]);
    expect(await sql(`select jobs.unschedule_http_drain() as r`)).toEqual([{ r: true }]);
    expect(await cronJob('pgdrain:http:default')).toEqual([]);

    // An @ name in any case, padded, as jobs.schedule takes it.
    await sql(`select jobs.schedule_http_drain('https://app.example/drain', 'secret', ' @DAILY', name => 'daily')`);
    expect(await cronJob('pgdrain:http:daily')).toMatchObject([{ schedule: '@daily' }]);
    expect(await sql(`select jobs.unschedule_http_drain('daily') as r`)).toEqual([{ r: true }]);
  });

  it('a real firing: pg_cron publishes the scheduled job and runs drain_sql; a drain runs the published job', async () => {
    await sql('truncate jobs.job_queue, jobs.job');
    await sql(`select jobs.publish('sql:app.note', '{"from":"pg_cron"}', timeout_seconds => 5)`);
    await sql(`select cron.schedule('pgdrain:test:drain-sql', '* * * * *', 'call jobs.drain_sql(10, 20)')`);
    // In the same minute, a drain_sql whose queue holds a due job it never fits (timeout 30, budget 20): pg_cron says failed.
    await sql(`select jobs.create_queue('cronlong'); select jobs.publish('sql:app.note', '{}', timeout_seconds => 30, queue => 'cronlong')`);
    await sql(`select cron.schedule('pgdrain:test:drain-sql-long', '* * * * *', $$call jobs.drain_sql(10, 20, 'cronlong')$$)`);
    expect(await sql(`select jobs.schedule('heartbeat', '* * * * *', 'cron.heartbeat', '{"beat":1}', timeout => 5) as r`))
      .toEqual([{ r: 'pg_cron' }]);

    // pg_cron 1.4 fires on minute boundaries: up to ~60 s from now.
    const giveUpAt = Date.now() + 80_000;
    let state = { noted: 0, published: 0, long: 0 };
    while (Date.now() < giveUpAt) {
      state = (await sql<{ noted: number; published: number; long: number }>(
        `select (select count(*)::int from jobs.job where task = 'sql:app.note' and status = 'success') as noted,
                (select count(*)::int from jobs.job_queue where task = 'cron.heartbeat') as published,
                (select count(*)::int from cron.job_run_details d join cron.job j using (jobid)
                 where j.jobname = 'pgdrain:test:drain-sql-long' and d.status in ('succeeded', 'failed')) as long`))[0]!;
      if (state!.noted === 1 && state!.published > 0 && state!.long > 0) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    expect(state).toMatchObject({ noted: 1 });
    expect(state!.published).toBeGreaterThan(0);
    const longRuns = await sql<{ status: string; return_message: string }>(
      `select d.status, d.return_message from cron.job_run_details d join cron.job j using (jobid)
       where j.jobname = 'pgdrain:test:drain-sql-long' and d.status in ('succeeded', 'failed')`);
    expect(longRuns.length).toBeGreaterThan(0);
    expect(longRuns).toEqual(longRuns.map(() => ({ status: 'failed', return_message: expect.stringContaining(
      'budget: 20 seconds is not over the 30-second timeout of a due job of task sql:app.note') })));
    expect(await sql(`select attempt, lease_until from jobs.job_queue where queue = 'cronlong'`)).toEqual([{ attempt: 0, lease_until: null }]);
    expect(await sql(`select b from app.notes`)).toEqual([{ b: { from: 'pg_cron' } }]);
    const runs = await sql(
      `select j.jobname, bool_or(d.status = 'succeeded') as succeeded, bool_or(d.status = 'failed') as failed
       from cron.job_run_details d join cron.job j using (jobid)
       where j.jobname in ('pgdrain:test:drain-sql', 'pgdrain:schedule:heartbeat') group by 1 order by 1`);
    expect(runs).toEqual([{ jobname: 'pgdrain:schedule:heartbeat', succeeded: true, failed: false },
                          { jobname: 'pgdrain:test:drain-sql', succeeded: true, failed: false }]);
    await sql(`select jobs.unschedule('heartbeat'), cron.unschedule('pgdrain:test:drain-sql'), cron.unschedule('pgdrain:test:drain-sql-long')`);

    const beats: unknown[] = [];
    const queue = createQueue({ connectionString: serverUrl, tasks: { cron: { heartbeat: (b: unknown) => void beats.push(b) } } });
    try {
      const report = await queue.drain(10, Date.now() + 30_000);
      expect(report).toMatchObject({ failed: 0, retried: 0, stoppedBy: 'empty' });
      expect(report.succeeded).toBeGreaterThan(0);
      expect(beats).toEqual(Array.from({ length: report.succeeded }, () => ({ beat: 1 })));
      expect(await sql(`select state, count(*)::int as n from jobs.all where task = 'cron.heartbeat' group by state`))
        .toEqual([{ state: 'success', n: report.succeeded }]);
    } finally {
      await queue.close();
    }
  }, 120_000);

  // A tick run where default_transaction_isolation is SERIALIZABLE (a role's setting here: the database's would
  // reach the other test files' sessions), its schedule's row updated by another session across the minute and
  // committed once the tick waits on it. Unfixed, the tick ran at SERIALIZABLE: 40001 from its FOR UPDATE, in
  // pg_cron's run log only, nothing published, the tick lost. Its command now sets READ COMMITTED first: it waits,
  // then publishes. (With cron.use_background_workers = on: cron-background-workers.test.ts.)
  it("a real firing at a SERIALIZABLE default: the tick's command runs it at READ COMMITTED, its row changed across the minute waited for", async () => {
    await sql(`truncate jobs.job_queue, jobs.job`);
    await sql(`drop role if exists pgdrain_serial_ticks`);
    await sql(`create role pgdrain_serial_ticks login superuser;
               alter role pgdrain_serial_ticks set default_transaction_isolation = 'serializable'`);
    try {
      // pg_cron runs a job as its username: this one, at its SERIALIZABLE default (set in the schedule's own
      // transaction, so no run is made as another role).
      await sql(`select jobs.schedule('serial', '* * * * *', 'cron.serial');
                 update cron.job set username = 'pgdrain_serial_ticks' where jobname = 'pgdrain:schedule:serial'`);
      const [job] = await cronJob('pgdrain:schedule:serial');
      const holder = await pool.connect();
      try {
        await holder.query(`begin; update jobs.recurring set updated_at = updated_at where name = 'serial'`);
        // pg_cron 1.4 fires on minute boundaries: up to ~60 s from now.
        await until(() => waitingOnLock(`jobs.run_schedule('serial')`), 'the tick to wait on the schedule\'s row', 80_000);
        await holder.query('commit');
      } finally {
        holder.release();
      }
      // No more firings (a minute boundary before the row was held made a run of its own, uncontended: counted too).
      await sql(`update cron.job set active = false where jobid = $1`, [job!.jobid]);
      await until(async () => (await sql(`select 1 from cron.job_run_details where jobid = $1 and status not in ('succeeded', 'failed')`,
                                          [job!.jobid])).length === 0, 'the ticks to end', 20_000);
      const runs = await sql<{ status: string }>(`select status, return_message from cron.job_run_details where jobid = $1`, [job!.jobid]);
      expect(runs.length).toBeGreaterThan(0);
      expect(runs).toEqual(runs.map(() => expect.objectContaining({ status: 'succeeded' })));
      expect(await sql(`select count(*)::int as n from jobs.job_queue where task = 'cron.serial'`)).toEqual([{ n: runs.length }]);
      expect(await sql(`select last_run_at is not null as ran, last_error from jobs.recurring where name = 'serial'`))
        .toEqual([{ ran: true, last_error: null }]);
    } finally {
      await sql(`update cron.job set username = current_user where jobname = 'pgdrain:schedule:serial'`);
      await sql(`select jobs.unschedule('serial')`);
      await sql(`drop role pgdrain_serial_ticks`);
    }
  }, 120_000);
});
