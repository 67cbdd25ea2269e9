// A group on a schedule (pg-boss's schedule(name, cron, data, { group })):
// every job a schedule with group_id / group_tier publishes carries them, so
// its queue's group_concurrency caps its ticks' running jobs. Drain-run ticks
// are driven with `now` (jobs.claim_json publishes the due ticks before its
// claim, as a drain's claim does), pg_cron-run ones by calling
// jobs.run_schedule as pg_cron would (this database has no pg_cron). Bad
// groups are refused as jobs.publish refuses them (PD019 naming the field)
// at the SQL, TypeScript and CLI (dist/cli.mjs: `npm run build` first)
// edges, with nothing written. On a real PostgreSQL.
import { beforeEach, describe, expect, it } from 'vitest';
import { listSchedules, schedule } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';
import { minute, T0 } from './support/schedule-clock.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const cli = (...args: string[]) => runCli(db.url, ...args);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring, jobs.running_slot');
  await sql(`delete from jobs.queue where name <> 'default'`);
  // At most one running job of a group; tier pro: two.
  await sql(`select jobs.create_queue('gc', group_concurrency => 1, group_tiers => '{"pro": 2}')`);
});

type ClaimAnswer = { jobs: { scheduledAt: number[] } | null; atGroupConcurrency: boolean };
/** A drain's claim at `now` (jobs.claim_json: the due ticks first, then the claim): the ticks of the jobs it took. */
const drainClaim = async (task: string, now: string) => {
  const [row] = await sql<{ r: ClaimAnswer }>(`select jobs.claim_json(10, $1, now => $2, queue => 'gc') as r`, [task, now]);
  lastClaim = row!.r;
  return (row!.r.jobs?.scheduledAt ?? []).map((t) => new Date(t * 1000).toISOString()).sort();
};
let lastClaim: ClaimAnswer | undefined;
const groups = (task: string) => sql<{ group_id: string | null; group_tier: string | null }>(
  `select group_id, group_tier from jobs.job_queue where task = $1 order by scheduled_at, job_id`, [task]);

describe('a schedule with a group: its ticks are capped by the queue\'s group_concurrency', () => {
  it('drains (backfill): three ticks\' jobs carry the group, and a claim takes one of them; the next once it has ended', async () => {
    await sql(`select jobs.schedule('acme', '*/10 * * * *', 'acme.sync', queue => 'gc', backfill => 3600,
                                    group_id => 'acme', now => $1)`, [T0]);
    // The claim at minute 35 publishes ticks 10, 20 and 30, then takes only the first: the group is at its cap.
    expect(await drainClaim('acme.sync', minute(35))).toEqual([minute(10)]);
    expect(lastClaim!.atGroupConcurrency).toBe(true);
    expect(await groups('acme.sync')).toEqual(Array(3).fill({ group_id: 'acme', group_tier: null }));
    // Within its lease (60 s), nothing more; once it has ended, the next tick's job.
    expect(await drainClaim('acme.sync', minute(35))).toEqual([]);
    await sql(`select jobs.ack(job_id, now => $1) from jobs.job_queue where lease_until is not null`, [minute(35)]);
    expect(await drainClaim('acme.sync', minute(35))).toEqual([minute(20)]);

    // Without a group, as before: all three at once.
    await sql(`select jobs.schedule('free', '*/10 * * * *', 'free.sync', queue => 'gc', backfill => 3600, now => $1)`, [T0]);
    expect(await drainClaim('free.sync', minute(35))).toEqual([minute(10), minute(20), minute(30)]);
    expect(lastClaim!.atGroupConcurrency).toBe(false);
  });

  it('drains, one job per due tick, with a tier: the tier\'s cap (2) holds', async () => {
    await sql(`select jobs.schedule('pro', '*/10 * * * *', 'pro.sync', queue => 'gc', group_id => 'big', group_tier => 'pro',
                                    now => $1)`, [T0]);
    for (const k of [10, 20, 30]) await sql(`select jobs.publish_due_schedules($1)`, [minute(k)]);
    expect(await groups('pro.sync')).toEqual(Array(3).fill({ group_id: 'big', group_tier: 'pro' }));
    expect(await drainClaim('pro.sync', minute(31))).toEqual([minute(10), minute(20)]);
  });

  it('pg_cron (jobs.run_schedule): a second tick\'s job waits while the first runs', async () => {
    await sql(`select jobs.schedule('cronned', '*/10 * * * *', 'cron.sync', queue => 'gc', group_id => 'acme', runner => 'drains')`);
    // As jobs.schedule leaves a pg_cron-run schedule (this database has no pg_cron).
    await sql(`update jobs.recurring set runner = 'pg_cron', next_run_at = null`);
    await sql(`select jobs.run_schedule('cronned', now => $1)`, [minute(10)]);
    await sql(`select jobs.run_schedule('cronned', now => $1)`, [minute(20)]);
    expect(await groups('cron.sync')).toEqual(Array(2).fill({ group_id: 'acme', group_tier: null }));
    expect(await sql(`select job_id from jobs.claim(10, 'cron.sync', now => $1, queue => 'gc')`, [minute(21)])).toHaveLength(1);
  });
});

describe('group_id, group_tier: stored, shown, checked', () => {
  it('jobs.schedules shows them (its last two columns), listSchedules as group; a change applies from the next tick', async () => {
    await schedule(db.driver, { name: 'a', cron: '*/10 * * * *', task: 'a.b', queue: 'gc', runner: 'drains',
                                group: { id: 'acme', tier: 'pro' } });
    await schedule(db.driver, { name: 'b', cron: '@hourly', task: 'a.b', runner: 'drains', group: { id: 'beta' } });
    await schedule(db.driver, { name: 'c', cron: '@hourly', task: 'a.b', runner: 'drains' });
    expect(await sql(`select name, group_id, group_tier from jobs.schedules order by name`)).toEqual([
      { name: 'a', group_id: 'acme', group_tier: 'pro' }, { name: 'b', group_id: 'beta', group_tier: null },
      { name: 'c', group_id: null, group_tier: null }]);
    expect((await sql<{ column_name: string }>(`select column_name from information_schema.columns
      where table_schema = 'jobs' and table_name = 'schedules' order by ordinal_position desc limit 2`)).map((c) => c.column_name))
      .toEqual(['group_tier', 'group_id']);
    expect(await listSchedules(db.driver)).toMatchObject([{ name: 'a', group: { id: 'acme', tier: 'pro' } },
      { name: 'b', group: { id: 'beta', tier: null } }, { name: 'c', group: null }]);

    // Same arguments again change nothing; a new group applies to the next tick, none to the one after.
    await sql(`update jobs.recurring set next_run_at = $1 where name = 'a'`, [minute(10)]);
    await sql(`select jobs.schedule('a', '*/10 * * * *', 'a.b', queue => 'gc', runner => 'drains', group_id => 'acme',
                                    group_tier => 'pro', now => $1)`, [minute(5)]);
    expect(await sql(`select next_run_at from jobs.recurring where name = 'a'`)).toEqual([{ next_run_at: new Date(minute(10)) }]);
    await sql(`select jobs.publish_due_schedules($1)`, [minute(10)]);
    await schedule(db.driver, { name: 'a', cron: '*/10 * * * *', task: 'a.b', queue: 'gc', runner: 'drains', group: { id: 'other' } });
    await sql(`update jobs.recurring set next_run_at = $1 where name = 'a'`, [minute(20)]);
    await sql(`select jobs.publish_due_schedules($1)`, [minute(20)]);
    await schedule(db.driver, { name: 'a', cron: '*/10 * * * *', task: 'a.b', queue: 'gc', runner: 'drains' });
    await sql(`update jobs.recurring set next_run_at = $1 where name = 'a'`, [minute(30)]);
    await sql(`select jobs.publish_due_schedules($1)`, [minute(30)]);
    expect(await sql(`select group_id, group_tier from jobs.job_queue where queue = 'gc' order by scheduled_at`)).toEqual([
      { group_id: 'acme', group_tier: 'pro' }, { group_id: 'other', group_tier: null }, { group_id: null, group_tier: null }]);
  });

  it('bad groups are refused as jobs.publish refuses them (PD019, the field), TS as spec.group.*; nothing written', async () => {
    const cases = ["group_id => ''", `group_id => '${'x'.repeat(201)}'`, "group_id => 'g', group_tier => ''",
                   `group_id => 'g', group_tier => '${'x'.repeat(201)}'`, "group_tier => 'pro'"];
    for (const arg of cases) {
      const sched = await sqlErrorOf(sql, `select jobs.schedule('bad', '@hourly', 'a.b', ${arg})`);
      const job = await sqlErrorOf(sql, `select jobs.publish('a.b', ${arg})`);
      expect({ arg, code: sched.code, column: sched.column, message: sched.message })
        .toEqual({ arg, code: job.code, column: job.column, message: job.message });
      expect(sched.code, arg).toBe('PD019');
    }
    for (const [group, field] of [[{ id: '' }, 'spec.group.id'], [{ id: 'x'.repeat(201) }, 'spec.group.id'],
      [{ id: 'g', tier: '' }, 'spec.group.tier'], [{ id: 'g', tier: 7 }, 'spec.group.tier'], [{ tier: 'pro' }, 'spec.group.id'],
      ['g', 'spec.group']] as const) {
      await expect(schedule(db.driver, { name: 'bad', cron: '@hourly', task: 'a.b', group: group as never }), JSON.stringify(group))
        .rejects.toMatchObject({ name: 'ValidationError', field });
    }
    expect(await sql(`select count(*)::int as n from jobs.recurring`)).toEqual([{ n: 0 }]);
    expect(await sql(`select count(*)::int as n from jobs.job_queue`)).toEqual([{ n: 0 }]);
    // The longest are taken.
    await schedule(db.driver, { name: 'ok', cron: '@hourly', task: 'a.b', runner: 'drains',
                                group: { id: 'x'.repeat(200), tier: 'y'.repeat(200) } });
    expect(await sql(`select length(group_id) as g, length(group_tier) as t from jobs.recurring`)).toEqual([{ g: 200, t: 200 }]);
  });

  it('pgdrain schedule add --group ID --group-tier TIER, shown by schedule list (a column only when some schedule has one); bad ones exit 2', async () => {
    expect((await cli('schedule', 'add', 'plain', '--cron', '@hourly', '--task', 'a.b')).code).toBe(0);
    expect((await cli('schedule', 'list')).stdout.split('\n')[0]).not.toMatch(/\bgroup\b/);

    expect(await cli('schedule', 'add', 'acme', '--cron', '*/10 * * * *', '--task', 'acme.sync', '--queue', 'gc',
                     '--group', 'acme', '--group-tier', 'pro')).toEqual({ code: 0, stdout: 'drains\n', stderr: '' });
    expect(await cli('schedule', 'add', 'beta', '--cron', '@hourly', '--task', 'a.b', '--group', 'beta'))
      .toMatchObject({ code: 0 });
    expect(await sql(`select name, group_id, group_tier from jobs.recurring order by name`)).toEqual([
      { name: 'acme', group_id: 'acme', group_tier: 'pro' }, { name: 'beta', group_id: 'beta', group_tier: null },
      { name: 'plain', group_id: null, group_tier: null }]);
    const lines = (await cli('schedule', 'list')).stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^name\s+cron\s+tz\s+task\s+runner\s+overlap\s+group\s+next_run_at\s/);
    expect(lines.slice(2).map((l) => l.split(/\s{2,}/).slice(0, 7))).toEqual([
      ['acme', '*/10 * * * *', 'UTC', 'acme.sync', 'drains', 'allow', 'acme (tier pro)'],
      ['beta', '@hourly', 'UTC', 'a.b', 'drains', 'allow', 'beta'],
      ['plain', '@hourly', 'UTC', 'a.b', 'drains', 'allow', expect.stringMatching(/^\d{4}-/)]]);
    const listed = JSON.parse((await cli('schedule', 'list', '--json')).stdout) as Record<string, unknown>[];
    expect(listed).toMatchObject([{ name: 'acme', group: { id: 'acme', tier: 'pro' } }, { name: 'beta', group: { id: 'beta', tier: null } },
      { name: 'plain', group: null }]);

    // As pgdrain publish refuses them.
    for (const [flags, rule] of [
      [['--group', ''], /^pgdrain: --group: must be a non-empty text/],
      [['--group', 'x'.repeat(201)], /^pgdrain: --group: must be at most 200 characters/],
      [['--group', 'g', '--group-tier', ''], /^pgdrain: --group-tier: must be a non-empty text/],
      [['--group-tier', 'pro'], /--group-tier: needs --group/]] as const) {
      const r = await cli('schedule', 'add', 'bad', '--cron', '@hourly', '--task', 'a.b', ...flags);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(rule);
      expect(r.stderr).toBe((await cli('publish', 'a.b', ...flags)).stderr);
      expect(r.stdout).toBe('');
    }
    expect(await sql(`select count(*)::int as n from jobs.recurring where name = 'bad'`)).toEqual([{ n: 0 }]);
    // 14 CLI processes one after another (~1.2 s each at load 7, several s at 15): runCli's 30 s bounds a hang of one.
  }, 180_000);
});
