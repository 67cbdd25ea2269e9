// Every job a schedule publishes carries attributes {"schedule": name,
// "tick": ISO 8601 UTC of its tick}, which a retry does not move (a nack moves
// scheduled_at to the retry time). Drain-run schedules (the one-job path and
// backfill) and pg_cron-run ones (jobs.run_schedule, what pg_cron calls at
// each tick). This file's database has no pg_cron: a pg_cron-run schedule is
// a drain-run one whose row is handed to pg_cron by hand, then
// jobs.run_schedule is called as pg_cron would call it. On a real PostgreSQL.
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, schedule, type Job } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const HOUR = 3_600_000;

/** Each attempt a handler saw: its attempt, scheduledAt and attributes. */
const seen: { attempt: number; scheduledAt: string; attributes: Job['attributes'] }[] = [];
const tasks = {
  bf: {
    // Fails its first attempt, so the job runs again as a retry.
    hour: async (_body: unknown, ctx: { job: Job }) => {
      seen.push({ attempt: ctx.job.attempt, scheduledAt: ctx.job.scheduledAt.toISOString(), attributes: ctx.job.attributes });
      if (ctx.job.attempt === 1) throw new Error('transient');
      return 'ok';
    },
  },
};
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });

beforeEach(async () => {
  seen.length = 0;
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
  await sql(`delete from jobs.queue where name <> 'default'`);
  // Retries due at once: the retry runs in the same test, no sleeping.
  await sql(`select jobs.create_queue('bfq', retry_delay => 0)`);
});

/** The tick as JS prints a Date: what the attributes hold. */
const iso = (ms: number) => new Date(ms).toISOString();
const topOfHour = (ms: number) => Math.floor(ms / HOUR) * HOUR;

describe('a schedule\'s jobs carry {schedule, tick} in their attributes', () => {
  it('a backfilled job, nacked and retried, still shows its tick on every attempt and in its history', async () => {
    // Created three hours ago, never fired since: the drains backfill the hourly ticks of the last two hours.
    await sql(`select jobs.schedule('bf-retry', '0 * * * *', 'bf.hour', queue => 'bfq', backfill => 7200, timeout => 10,
                                    now => now() - interval '3 hours')`);
    const report = await queue.drain(10, Date.now() + 60_000, { queue: 'bfq' });
    expect(report).toMatchObject({ succeeded: 2, retried: 2 });

    // Two jobs, each seen twice (attempt 1 failed, attempt 2 succeeded), for
    // the last two hourly ticks (read from what was seen: the hour may turn meanwhile).
    expect(seen).toHaveLength(4);
    const ticks = [...new Set(seen.map((s) => String(s.attributes?.tick)))].sort();
    expect(ticks).toHaveLength(2);
    expect(ticks[0]).toBe(iso(topOfHour(Date.parse(ticks[0]!))));
    expect(ticks[1]).toBe(iso(Date.parse(ticks[0]!) + HOUR));
    for (const tick of ticks) {
      const runs = seen.filter((s) => s.attributes?.tick === tick);
      expect(runs.map((s) => s.attempt).sort(), tick).toEqual([1, 2]);
      for (const run of runs) expect(run.attributes).toEqual({ schedule: 'bf-retry', tick });
      // The first attempt ran at its tick; the retry's scheduledAt is the retry time, not the tick.
      expect(runs.find((s) => s.attempt === 1)!.scheduledAt).toBe(tick);
      expect(runs.find((s) => s.attempt === 2)!.scheduledAt).not.toBe(tick);
    }
    // The history keeps them: listJobs answers the tick beside runAt (the retry time).
    const listed = await queue.listJobs({ queue: 'bfq' });
    const byTick = (a: { attributes: unknown }, b: { attributes: unknown }) =>
      JSON.stringify(a.attributes).localeCompare(JSON.stringify(b.attributes));
    expect(listed.map((j) => ({ state: j.state, attempts: j.attempts, attributes: j.attributes })).sort(byTick)).toEqual(
      ticks.map((tick) => ({ state: 'success', attempts: 2, attributes: { schedule: 'bf-retry', tick } })));
    for (const job of listed) expect(job.runAt.toISOString()).not.toBe(job.attributes!.tick);
  });

  it('the one job a drain-run schedule makes of its missed ticks carries the first of them', async () => {
    await schedule(db.driver, { name: 'plain', cron: '*/10 * * * *', task: 'plain.task', runner: 'drains' });
    await sql(`update jobs.recurring set next_run_at = '2030-01-01T00:10:00Z'`);
    expect(await sql(`select jobs.publish_due_schedules('2030-01-01T00:35:00Z') as n`)).toEqual([{ n: 1 }]);
    expect(await sql(`select attributes, scheduled_at from jobs.job_queue`)).toEqual([
      { attributes: { schedule: 'plain', tick: '2030-01-01T00:10:00.000Z' }, scheduled_at: new Date('2030-01-01T00:10:00Z') }]);
    // overlap 'skip' too (its jobs also carry the schedule's dedupe key).
    await sql(`truncate jobs.job_queue`);
    await sql(`select jobs.schedule('skip', '*/10 * * * *', 'skip.task', overlap => 'skip', now => '2030-01-01T00:00:00Z')`);
    await sql(`select jobs.publish_due_schedules('2030-01-01T00:10:00.5Z')`);
    expect(await sql(`select attributes, dedupe_key from jobs.job_queue where task = 'skip.task'`)).toEqual([
      { attributes: { schedule: 'skip', tick: '2030-01-01T00:10:00.000Z' }, dedupe_key: 'pgdrain:schedule:skip' }]);
  });

  it('a pg_cron-run schedule\'s job (jobs.run_schedule) carries the minute pg_cron fired it in', async () => {
    await sql(`select jobs.schedule('cronned', '0 12 * * *', 'cron.task', runner => 'drains')`);
    // As jobs.schedule leaves a pg_cron-run schedule (this database has no pg_cron).
    await sql(`update jobs.recurring set runner = 'pg_cron', next_run_at = null`);
    const { id } = (await sql<{ id: string }>(`select jobs.run_schedule('cronned', now => '2030-01-01T12:00:00.05Z')::text as id`))[0]!;
    expect(await sql(`select job_id::text as id, attributes from jobs.job_queue`)).toEqual([
      { id, attributes: { schedule: 'cronned', tick: '2030-01-01T12:00:00.000Z' } }]);
    expect(await queue.getJob(id)).toMatchObject({ attributes: { schedule: 'cronned', tick: '2030-01-01T12:00:00.000Z' } });
  });

  it('claim filter and exclude read them: an exclude naming no schedule leaves its jobs alone, one naming it skips them', async () => {
    /** A schedule's job, a job with attributes of its own and a plain one; then what a claim with `args` takes. */
    const claimed = async (args: string) => {
      await sql('truncate jobs.job_queue, jobs.recurring');
      await sql(`select jobs.schedule('f', '*/10 * * * *', 'f.task', now => '2030-01-01T00:00:00Z')`);
      await sql(`select jobs.publish_due_schedules('2030-01-01T00:10:00Z')`);
      await sql(`select jobs.publish('tenant.task', '{}', attributes => '{"tenant":"a"}', now => '2030-01-01T00:00:00Z')`);
      await sql(`select jobs.publish('plain.task', '{}', now => '2030-01-01T00:00:00Z')`);
      return (await sql<{ task: string }>(
        `select task from jobs.claim(10, now => '2030-01-01T00:11:00Z', ${args}) order by task`)).map((r) => r.task);
    };
    expect(await claimed(`exclude => array['{"tenant":"a"}']::jsonb[]`)).toEqual(['f.task', 'plain.task']);
    expect(await claimed(`exclude => array['{"schedule":"f"}']::jsonb[]`)).toEqual(['plain.task', 'tenant.task']);
    expect(await claimed(`filter => '{"tenant":"a"}'`)).toEqual(['tenant.task']);
    expect(await claimed(`filter => '{"schedule":"f"}'`)).toEqual(['f.task']);
    expect(await claimed(`filter => '{"tick":"2030-01-01T00:10:00.000Z"}'`)).toEqual(['f.task']);
  });
});

describe('TS schedule(): a check only the database makes names the spec\'s field', () => {
  it('backfillSeconds with runner pg_cron or overlap skip: spec.backfillSeconds (the SQL name stays on the cause)', async () => {
    for (const extra of [{ runner: 'pg_cron' as const }, { overlap: 'skip' as const }]) {
      const error = await schedule(db.driver, { name: 'bad', cron: '* * * * *', task: 'a.b', backfillSeconds: 60, ...extra })
        .catch((e: unknown) => e);
      expect(error, JSON.stringify(extra)).toMatchObject({ name: 'ValidationError', code: 'invalid_argument',
        field: 'spec.backfillSeconds', message: expect.stringMatching(/^spec\.backfillSeconds: (pg_cron does not backfill|publishes one job per missed tick)/) });
      expect((error as { cause: { column: string } }).cause).toMatchObject({ code: 'PDC03', column: 'backfill' });
    }
    // The other arguments only the database checks, likewise.
    await expect(schedule(db.driver, { name: 'bad', cron: '* * * * *', task: 'a.b', queue: 'nope' }))
      .rejects.toMatchObject({ code: 'invalid_argument', field: 'spec.queue', message: expect.stringMatching(/^spec\.queue: no queue named 'nope'/) });
    await expect(schedule(db.driver, { name: 'bad', cron: '* * * * *', task: 'a.b', tz: 'CET' }))
      .rejects.toMatchObject({ code: 'invalid_argument', field: 'spec.tz', message: expect.stringMatching(/^spec\.tz: 'CET' is an abbreviation/) });
    expect(await sql(`select name from jobs.recurring`)).toEqual([]);
  });
});
