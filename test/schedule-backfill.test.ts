// Cron backfill (graphile-worker's crontab `?fill=`): with `backfill`
// seconds, the drains publish one job per tick they missed within that
// window, each scheduled at its tick, at most 100 per schedule per call.
// Driven with `now`, as test/schedules.test.ts drives drain-run schedules:
// no sleeps. This file's database has no pg_cron, so schedules go to the
// drains. The CLI cases run dist/cli.mjs (npm run build first).
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { listSchedules, nextTicks, schedule } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';
import { minute, T0 } from './support/schedule-clock.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const HOUR = 3600;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
});

// A drain's claim (it publishes the due ticks first), matching no job.
const claim = (now: string) => sql(`select jobs.claim_json(10, 'nothing.matches.%', null, $1::timestamptz)`, [now]);
const publishDue = async (now: string) =>
  (await sql<{ n: number }>(`select jobs.publish_due_schedules($1) as n`, [now]))[0]!.n;
const ticks = async (task = 'fill.tick') => (await sql<{ scheduled_at: Date }>(
  `select scheduled_at from jobs.job_queue where task = $1 order by scheduled_at, job_id`, [task])).map((r) => r.scheduled_at.toISOString());
const row = async (name: string) => (await sql<{ next_run_at: Date; last_run_at: Date | null; skipped_ticks: string;
                                                 last_skipped_at: Date | null; last_error: string | null }>(
  `select next_run_at, last_run_at, skipped_ticks, last_skipped_at, last_error from jobs.recurring where name = $1`, [name]))[0]!;

describe('backfill: one job per missed tick within the window', () => {
  it('a */10 schedule with backfill 1 hour, 35 minutes without claims: 3 jobs, one at each tick, oldest first', async () => {
    await sql(`select jobs.schedule('ten', '*/10 * * * *', 'fill.tick', '{"k":1}', priority => 3, backfill => $2, now => $1)`, [T0, HOUR]);
    await claim(minute(35));
    expect(await ticks()).toEqual([minute(10), minute(20), minute(30)]);
    // Oldest first: in the order they were published, and each with the schedule's options.
    expect(await sql(`select scheduled_at, body, priority from jobs.job_queue order by job_id`)).toEqual(
      [10, 20, 30].map((k) => ({ scheduled_at: new Date(minute(k)), body: { k: 1 }, priority: 3 })));
    expect(await row('ten')).toMatchObject({ next_run_at: new Date(minute(40)), last_run_at: new Date(minute(30)), skipped_ticks: '0' });
    // Claimed again: nothing more until the next tick, which is one job.
    await claim(minute(36));
    await claim(minute(40));
    expect(await ticks()).toEqual([minute(10), minute(20), minute(30), minute(40)]);
    expect(await listSchedules(db.driver)).toMatchObject([{ name: 'ten', backfillSeconds: HOUR, lastRunAt: new Date(minute(40)) }]);
  });

  it('without backfill, behaviour is unchanged: the missed ticks become one job, at the first of them', async () => {
    await sql(`select jobs.schedule('ten', '*/10 * * * *', 'fill.tick', now => $1)`, [T0]);
    await claim(minute(35));
    expect(await ticks()).toEqual([minute(10)]);
    expect(await row('ten')).toMatchObject({ next_run_at: new Date(minute(40)), skipped_ticks: '0' });
    expect(await listSchedules(db.driver)).toMatchObject([{ name: 'ten', backfillSeconds: null }]);
    expect(await sql(`select backfill from jobs.schedules`)).toEqual([{ backfill: null }]);
  });

  it('ticks older than the window are dropped, counted as one skipped run; both ends of the window are in it', async () => {
    await sql(`select jobs.schedule('half', '*/10 * * * *', 'fill.tick', backfill => 1800, now => $1)`, [T0]);
    await claim(minute(60)); // window [00:30, 01:00]: 00:10 and 00:20 dropped
    expect(await ticks()).toEqual([minute(30), minute(40), minute(50), minute(60)]);
    expect(await row('half')).toMatchObject({ next_run_at: new Date(minute(70)), last_run_at: new Date(minute(60)),
                                              skipped_ticks: '1', last_skipped_at: new Date(minute(10)) });

    // A window no tick falls in: nothing published, the run dropped, next_run_at the next tick.
    await sql(`select jobs.schedule('short', '*/10 * * * *', 'fill.short', backfill => 60, now => $1)`, [T0]);
    await claim(minute(35));
    expect(await ticks('fill.short')).toEqual([]);
    expect(await row('short')).toMatchObject({ next_run_at: new Date(minute(40)), last_run_at: null,
                                               skipped_ticks: '1', last_skipped_at: new Date(minute(10)) });
  });

  it('never backfills ticks from before the schedule existed', async () => {
    await sql(`select jobs.schedule('late', '*/10 * * * *', 'fill.tick', backfill => $2, now => $1)`, [minute(35), HOUR]);
    await claim(minute(35));
    expect(await ticks()).toEqual([]);
    await claim(minute(41));
    expect(await ticks()).toEqual([minute(40)]);
  });

  it('at most 100 ticks per schedule per call: the next call goes on, none twice, none lost inside the window', async () => {
    await sql(`select jobs.schedule('every', '* * * * *', 'fill.tick', backfill => 86400, now => $1)`, [T0]);
    await sql(`select jobs.schedule('other', '* * * * *', 'fill.other', backfill => 86400, now => $1)`, [T0]);
    // 250 ticks missed by each: 100, 100 and 50 of each, then none.
    expect(await publishDue(minute(250))).toBe(200);
    expect(await row('every')).toMatchObject({ next_run_at: new Date(minute(101)), last_run_at: new Date(minute(100)) });
    expect(await publishDue(minute(250))).toBe(200);
    expect(await publishDue(minute(250))).toBe(100);
    expect(await publishDue(minute(250))).toBe(0);
    const all = Array.from({ length: 250 }, (_, i) => minute(i + 1));
    expect(await ticks()).toEqual(all);
    expect(await ticks('fill.other')).toEqual(all);
    expect(await row('every')).toMatchObject({ next_run_at: new Date(minute(251)), skipped_ticks: '0' });

    // While it catches up the window moves on: what falls out of it is dropped, what is in it is published.
    await sql('truncate jobs.job_queue; truncate jobs.recurring');
    await sql(`select jobs.schedule('every', '* * * * *', 'fill.tick', backfill => 7200, now => $1)`, [T0]);
    expect(await publishDue(minute(250))).toBe(100); // window [130, 250]: 130 to 229
    expect(await publishDue(minute(300))).toBe(71);  // window [180, 300]: 230 to 300
    expect(await ticks()).toEqual(Array.from({ length: 171 }, (_, i) => minute(i + 130)));
    expect(await row('every')).toMatchObject({ next_run_at: new Date(minute(301)), skipped_ticks: '1', last_skipped_at: new Date(minute(1)) });
  });

  it('drains claiming at the same moment publish each missed tick exactly once', async () => {
    await sql(`select jobs.schedule('every', '* * * * *', 'fill.tick', backfill => 86400, now => $1)`, [T0]);
    const pool = new pg.Pool({ connectionString: db.url, max: 6 });
    try {
      for (let round = 0; round < 4; round++) {
        await Promise.all(Array.from({ length: 6 }, () =>
          pool.query(`select jobs.claim_json(10, 'nothing.matches.%', null, $1::timestamptz)`, [minute(250)])));
      }
    } finally {
      await pool.end();
    }
    expect(await ticks()).toEqual(Array.from({ length: 250 }, (_, i) => minute(i + 1)));
  });

  it('a time zone schedule backfills its own wall-clock ticks, across a DST change', async () => {
    // 02:30 in Paris, daily; on 2026-03-29 the clocks skip from 02:00 to 03:00, so that day's tick is at 03:00.
    await sql(`select jobs.schedule('paris', '30 2 * * *', 'fill.tick', tz => 'Europe/Paris', backfill => 4 * 86400,
                                    now => '2026-03-27T12:00:00Z')`);
    await claim('2026-03-31T12:00:00Z');
    const expected = ['2026-03-28T01:30:00.000Z', '2026-03-29T01:00:00.000Z', '2026-03-30T00:30:00.000Z', '2026-03-31T00:30:00.000Z'];
    expect(await ticks()).toEqual(expected);
    expect(nextTicks('30 2 * * *', 4, new Date('2026-03-27T12:00:00Z'), 'Europe/Paris').map((d) => d.toISOString())).toEqual(expected);
    expect(await row('paris')).toMatchObject({ next_run_at: new Date('2026-04-01T00:30:00Z'), skipped_ticks: '0' });
  });

  it('a call that cannot publish records why, counts the ticks as skipped and never breaks the claim', async () => {
    await sql(`select jobs.create_queue('tiny', 2)`);
    await sql(`select jobs.schedule('full', '*/10 * * * *', 'fill.tick', queue => 'tiny', backfill => $2, now => $1)`, [T0, HOUR]);
    await sql(`select jobs.publish('other.work', now => $1)`, [T0]);
    const { r } = (await sql<{ r: { jobs: { task: string[] } } }>(
      `select jobs.claim_json(10, 'other.%', null, $1::timestamptz) as r`, [minute(35)]))[0]!;
    expect(r.jobs.task).toEqual(['other.work']);
    // The third tick did not fit: the call's ticks are rolled back together; the next try is at a tick.
    expect(await ticks()).toEqual([]);
    const after = await row('full');
    expect(after).toMatchObject({ next_run_at: new Date(minute(40)), skipped_ticks: '1', last_skipped_at: new Date(minute(10)) });
    expect(after.last_error).toMatch(/queue 'tiny' is full.*SQLSTATE PD010/);
    await claim(minute(40));
    expect(await ticks()).toEqual([minute(40)]);
    expect(await row('full')).toMatchObject({ last_error: null, last_run_at: new Date(minute(40)) });
    await sql(`delete from jobs.job_queue where queue = 'tiny'; delete from jobs.queue where name = 'tiny'`);
  });
});

describe('backfill: jobs.schedule, TS and CLI', () => {
  it('jobs.schedule refuses a bad backfill with PDC03 naming backfill, and writes nothing', async () => {
    const bad: [string, unknown[], RegExp][] = [
      [`backfill => $1`, [0], /^backfill: must be a number of seconds greater than 0 and at most 31622400 \(366 days\).*got 0$/],
      [`backfill => $1`, [-60], /got -60$/],
      [`backfill => $1`, [31622401], /got 31622401$/],
      [`backfill => $1`, ['NaN'], /got NaN$/],
      [`backfill => $1, overlap => 'skip'`, [60], /^backfill: publishes one job per missed tick, which overlap 'skip'/],
      [`backfill => $1, runner => 'pg_cron'`, [60], /^backfill: pg_cron does not backfill missed ticks/],
    ];
    for (const [args, params, rule] of bad) {
      const e = await sqlErrorOf(sql, `select jobs.schedule('b', '* * * * *', 'a.b', ${args})`, params);
      expect([e.code, e.column], args).toEqual(['PDC03', 'backfill']);
      expect(e.message, args).toMatch(rule);
    }
    expect(await sql(`select count(*)::int as n from jobs.recurring`)).toEqual([{ n: 0 }]);
    // The largest window, and no runner: drains.
    expect(await sql(`select jobs.schedule('b', '* * * * *', 'a.b', backfill => 31622400)`)).toEqual([{ schedule: 'drains' }]);
  });

  it('calling jobs.schedule again: same arguments change nothing; backfill added or removed keeps the pending ticks', async () => {
    await sql(`select jobs.schedule('ten', '*/10 * * * *', 'fill.tick', backfill => $2, now => $1)`, [T0, HOUR]);
    await sql(`select jobs.schedule('ten', '*/10 * * * *', 'fill.tick', backfill => $2, now => $1)`, [minute(35), HOUR]);
    expect(await row('ten')).toMatchObject({ next_run_at: new Date(minute(10)) });
    await claim(minute(35));
    expect(await ticks()).toEqual([minute(10), minute(20), minute(30)]);

    // Added to a schedule whose ticks were missed: they are published one by one.
    await sql(`select jobs.schedule('plain', '*/10 * * * *', 'fill.plain', now => $1)`, [T0]);
    await sql(`select jobs.schedule('plain', '*/10 * * * *', 'fill.plain', backfill => $2, now => $1)`, [minute(35), HOUR]);
    await claim(minute(35));
    expect(await ticks('fill.plain')).toEqual([minute(10), minute(20), minute(30)]);
    // Removed: missed ticks are one job again.
    await sql(`select jobs.schedule('plain', '*/10 * * * *', 'fill.plain', now => $1)`, [minute(65)]);
    await claim(minute(65));
    expect(await ticks('fill.plain')).toEqual([minute(10), minute(20), minute(30), minute(40)]);
    expect(await sql(`select backfill from jobs.recurring where name = 'plain'`)).toEqual([{ backfill: null }]);
  });

  it('a new expression whose old ticks cannot be published (a full queue) keeps why in last_error', async () => {
    await sql(`select jobs.create_queue('fq', max_size => 1)`);
    try {
      await sql(`select jobs.publish('x', '{}', queue => 'fq')`);
      await sql(`select jobs.schedule('full', '* * * * *', 'fill.full', queue => 'fq', backfill => 86400, now => $1)`, [T0]);
      await sql(`select jobs.schedule('full', '*/2 * * * *', 'fill.full', queue => 'fq', backfill => 86400, now => $1)`, [minute(180)]);
      expect(await ticks('fill.full')).toEqual([]);
      const r = await row('full');
      expect(r.skipped_ticks).toBe('1');
      expect(r.last_error).toMatch(/full/);
      // Called again unchanged: the error stays until a tick publishes (test/schedule-last-error.test.ts).
      await sql(`select jobs.schedule('full', '*/2 * * * *', 'fill.full', queue => 'fq', backfill => 86400, now => $1)`, [minute(181)]);
      expect((await row('full')).last_error).toBe(r.last_error);
    } finally {
      await sql(`truncate jobs.job_queue, jobs.recurring`);
      await sql(`delete from jobs.queue where name = 'fq'`);
    }
  });

  it('without backfill too: a new expression drops the old one\'s tick that could not be published, counted', async () => {
    await sql(`select jobs.create_queue('fq', max_size => 1)`);
    try {
      await sql(`select jobs.publish('x', '{}', queue => 'fq')`);
      await sql(`select jobs.schedule('hourly', '0 * * * *', 'fill.hourly', queue => 'fq', now => $1)`, [T0]);
      await sql(`select jobs.schedule('hourly', '15 * * * *', 'fill.hourly', queue => 'fq', now => $1)`, [minute(60) + '']);
      expect(await ticks('fill.hourly')).toEqual([]);
      expect(await row('hourly')).toMatchObject({ skipped_ticks: '1', last_skipped_at: new Date(minute(60)),
                                                  next_run_at: new Date(minute(75)), last_error: expect.stringMatching(/full/) });
    } finally {
      await sql(`truncate jobs.job_queue, jobs.recurring`);
      await sql(`delete from jobs.queue where name = 'fq'`);
    }
  });

  it('a new expression publishes the old one\'s missed ticks first, at most 100: those left count as one skipped tick', async () => {
    await sql(`select jobs.schedule('every', '* * * * *', 'fill.every', backfill => 86400, now => $1)`, [T0]);
    await sql(`select jobs.schedule('every', '*/2 * * * *', 'fill.every', backfill => 86400, now => $1)`, [minute(300)]);
    const published = await ticks('fill.every');
    expect(published).toHaveLength(100);
    expect(published[0]).toBe(minute(1));
    expect(await row('every')).toMatchObject({ skipped_ticks: '1', last_skipped_at: new Date(minute(101)),
                                               next_run_at: new Date(minute(302)) });
  });

  it('TS schedule() takes backfillSeconds, validated naming it, and listSchedules shows it', async () => {
    expect(await schedule(db.driver, { name: 'ts', cron: '*/10 * * * *', task: 'fill.tick', backfillSeconds: 5400 })).toBe('drains');
    expect(await sql(`select backfill::float8 as backfill from jobs.recurring`)).toEqual([{ backfill: 5400 }]);
    expect(await listSchedules(db.driver)).toMatchObject([{ name: 'ts', backfillSeconds: 5400 }]);
    for (const backfillSeconds of [0, -1, 31_622_401, Number.NaN, '60']) {
      await expect(schedule(db.driver, { name: 'bad', cron: '* * * * *', task: 'a.b', backfillSeconds } as never),
                   String(backfillSeconds)).rejects.toMatchObject({ code: 'invalid_argument', field: 'spec.backfillSeconds' });
    }
    // The database's rules, reached through TS.
    await expect(schedule(db.driver, { name: 'bad', cron: '* * * * *', task: 'a.b', backfillSeconds: 60, overlap: 'skip' }))
      .rejects.toMatchObject({ code: 'invalid_argument', field: 'spec.backfillSeconds' });
    expect(await sql(`select name from jobs.recurring`)).toEqual([{ name: 'ts' }]);
  });

  it('pgdrain schedule add --backfill SECONDS, shown by schedule list (table and JSON); bad values exit 2 naming --backfill', async () => {
    const cli = (...args: string[]) => runCli(db.url, ...args);
    expect(await cli('schedule', 'add', 'fill', '--cron', '*/10 * * * *', '--task', 'fill.tick', '--backfill', '3600'))
      .toEqual({ code: 0, stdout: 'drains\n', stderr: '' });
    expect((await cli('schedule', 'add', 'plain', '--cron', '@hourly', '--task', 'a.b')).code).toBe(0);
    expect(await sql(`select name, backfill::float8 as backfill from jobs.recurring order by name`))
      .toEqual([{ name: 'fill', backfill: 3600 }, { name: 'plain', backfill: null }]);
    const table = await cli('schedule', 'list');
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^name\s+cron\s+tz\s+task\s+runner\s+overlap\s+backfill\s+next_run_at\s/);
    expect(lines.slice(2).map((l) => l.split(/\s{2,}/).slice(0, 7))).toEqual([
      ['fill', '*/10 * * * *', 'UTC', 'fill.tick', 'drains', 'allow', '3600s'],
      ['plain', '@hourly', 'UTC', 'a.b', 'drains', 'allow', expect.stringMatching(/^\d{4}-/)]]);
    const listed = JSON.parse((await cli('schedule', 'list', '--json')).stdout) as Record<string, unknown>[];
    expect(listed.map((s) => [s.name, s.backfillSeconds])).toEqual([['fill', 3600], ['plain', null]]);

    const bad = [
      [await cli('schedule', 'add', 'n', '--cron', '@daily', '--task', 'a.b', '--backfill', '0'),
       /^pgdrain: --backfill: must be a number of seconds/],
      [await cli('schedule', 'add', 'n', '--cron', '@daily', '--task', 'a.b', '--backfill', '60', '--overlap', 'skip'),
       /^pgdrain: --backfill: publishes one job per missed tick/],
      [await cli('schedule', 'add', 'n', '--cron', '@daily', '--task', 'a.b', '--backfill', '60', '--runner', 'pg_cron'),
       /^pgdrain: --backfill: pg_cron does not backfill/],
    ] as const;
    for (const [r, rule] of bad) {
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(rule);
    }
    expect(await sql(`select count(*)::int as n from jobs.recurring`)).toEqual([{ n: 2 }]);
  });

  // Any seconds above 0 are taken (jobs.schedule's rule, schedule()'s and --backfill's): one under a
  // microsecond is a window no missed tick falls in, as 0.0005's is. schedule list showed it as
  // JavaScript prints the number, "5e-7s"; now in decimals, as given.
  it('schedule list shows a backfill under a microsecond in decimals, not as an exponent', async () => {
    const cli = (...args: string[]) => runCli(db.url, ...args);
    for (const [name, given] of [['tiny', '0.0000005'], ['tinier', '1.25e-9']] as const) {
      expect(await cli('schedule', 'add', name, '--cron', '@hourly', '--task', 'a.b', '--backfill', given))
        .toEqual({ code: 0, stdout: 'drains\n', stderr: '' });
    }
    await sql(`select jobs.schedule('sql', '@hourly', 'a.b', backfill => 0.000000000000000000000001)`);
    const lines = (await cli('schedule', 'list')).stdout.trimEnd().split('\n');
    expect(lines.slice(2).map((l) => l.split(/\s{2,}/).slice(0, 7))).toEqual([
      ['sql', '@hourly', 'UTC', 'a.b', 'drains', 'allow', '0.000000000000000000000001s'],
      ['tinier', '@hourly', 'UTC', 'a.b', 'drains', 'allow', '0.00000000125s'],
      ['tiny', '@hourly', 'UTC', 'a.b', 'drains', 'allow', '0.0000005s']]);
  });
});
