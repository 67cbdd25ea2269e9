// A serial key on a schedule (graphile-worker's crontab `?queue=`): every job
// a schedule with serial_key publishes carries it, so its ticks' jobs run one
// at a time. Drain-run ticks are driven with `now` (publish_due_schedules),
// pg_cron-run ones by calling jobs.run_schedule as pg_cron would (this
// database has no pg_cron). On a real PostgreSQL; the CLI cases run
// dist/cli.mjs (npm run build first).
import { beforeEach, describe, expect, it } from 'vitest';
import { listSchedules, schedule } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';
import { minute, T0 } from './support/schedule-clock.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
});

const publishDue = (now: string) => sql(`select jobs.publish_due_schedules($1)`, [now]);
/** Claims up to 10 jobs of `task` at once: the ticks (scheduled_at) handed out. */
const claimAll = async (task: string, now: string) => (await sql<{ job_id: string; scheduled_at: Date }>(
  `select job_id::text, scheduled_at from jobs.claim(10, $1, now => $2) order by scheduled_at`, [task, now]));
const keys = async (task: string) => (await sql<{ serial_key: string | null }>(
  `select serial_key from jobs.job_queue where task = $1 order by scheduled_at, job_id`, [task])).map((r) => r.serial_key);

describe('a schedule with serial_key: its ticks run one at a time', () => {
  it('drains, one job per due tick: a second tick\'s job waits while the first runs', async () => {
    await sql(`select jobs.schedule('acct', '*/10 * * * *', 'acct.sync', serial_key => 'account:1', now => $1)`, [T0]);
    await publishDue(minute(10));
    await publishDue(minute(20));
    expect(await keys('acct.sync')).toEqual(['account:1', 'account:1']);
    // Both due; claimed at once, only the first tick's job is handed out.
    const first = await claimAll('acct.sync', minute(21));
    expect(first.map((j) => j.scheduled_at.toISOString())).toEqual([minute(10)]);
    // Within the first's lease (60 s): claimed again, still nothing.
    expect(await claimAll('acct.sync', minute(21))).toEqual([]);
    // Once it has ended, the next tick's job runs.
    await sql(`select jobs.ack($1::bigint, now => $2)`, [first[0]!.job_id, minute(21)]);
    expect((await claimAll('acct.sync', minute(21))).map((j) => j.scheduled_at.toISOString())).toEqual([minute(20)]);

    // Without a serial key, as before: both ticks' jobs handed out at once.
    await sql(`select jobs.schedule('free', '*/10 * * * *', 'free.sync', now => $1)`, [T0]);
    await publishDue(minute(10));
    await publishDue(minute(20));
    expect(await keys('free.sync')).toEqual([null, null]);
    expect(await claimAll('free.sync', minute(21))).toHaveLength(2);
  });

  it('drains with backfill: the missed ticks\' jobs all carry the key, one handed out at a time', async () => {
    await sql(`select jobs.schedule('fill', '*/10 * * * *', 'fill.sync', backfill => 3600, serial_key => 'fill', now => $1)`, [T0]);
    await publishDue(minute(35));
    expect(await keys('fill.sync')).toEqual(['fill', 'fill', 'fill']);
    expect((await claimAll('fill.sync', minute(36))).map((j) => j.scheduled_at.toISOString())).toEqual([minute(10)]);
  });

  it('pg_cron (jobs.run_schedule): a second tick\'s job waits while the first runs', async () => {
    await sql(`select jobs.schedule('cronned', '*/10 * * * *', 'cron.sync', serial_key => 'cron:1', runner => 'drains')`);
    // As jobs.schedule leaves a pg_cron-run schedule (this database has no pg_cron).
    await sql(`update jobs.recurring set runner = 'pg_cron', next_run_at = null`);
    await sql(`select jobs.run_schedule('cronned', now => $1)`, [minute(10)]);
    await sql(`select jobs.run_schedule('cronned', now => $1)`, [minute(20)]);
    expect(await keys('cron.sync')).toEqual(['cron:1', 'cron:1']);
    expect(await claimAll('cron.sync', minute(21))).toHaveLength(1);
  });
});

describe('serial_key: stored, shown, checked', () => {
  it('jobs.schedules shows it (its last column but the dedupe key\'s two and the group\'s two) and listSchedules as serialKey', async () => {
    await sql(`select jobs.schedule('a', '@hourly', 'a.b', serial_key => 'k:a', now => $1)`, [T0]);
    await sql(`select jobs.schedule('b', '@hourly', 'a.b', now => $1)`, [T0]);
    expect(await sql(`select name, serial_key from jobs.schedules order by name`))
      .toEqual([{ name: 'a', serial_key: 'k:a' }, { name: 'b', serial_key: null }]);
    expect(await sql(`select column_name from information_schema.columns where table_schema = 'jobs' and table_name = 'schedules'
                      order by ordinal_position desc limit 1 offset 4`)).toEqual([{ column_name: 'serial_key' }]);
    expect(await listSchedules(db.driver)).toMatchObject([{ name: 'a', serialKey: 'k:a' }, { name: 'b', serialKey: null }]);
  });

  it('same arguments again change nothing; a changed serial_key applies to the next ticks', async () => {
    const args = `'acct', '*/10 * * * *', 'acct.sync', serial_key => $2, now => $1`;
    await sql(`select jobs.schedule(${args})`, [T0, 'account:1']);
    const row = () => sql(`select cron, task, runner, serial_key, next_run_at, last_run_at from jobs.recurring`);
    const before = await row();
    await sql(`select jobs.schedule(${args})`, [minute(5), 'account:1']);
    expect(await row()).toEqual(before);
    expect(before).toMatchObject([{ serial_key: 'account:1', next_run_at: new Date(minute(10)) }]);

    await publishDue(minute(10));
    await sql(`select jobs.schedule(${args})`, [minute(15), 'account:2']);
    expect(await row()).toMatchObject([{ serial_key: 'account:2', next_run_at: new Date(minute(20)) }]);
    await publishDue(minute(20));
    // The job already published keeps its key; the next tick's carries the new one.
    expect(await keys('acct.sync')).toEqual(['account:1', 'account:2']);
    // Removed: the next tick's job has none.
    await sql(`select jobs.schedule('acct', '*/10 * * * *', 'acct.sync', now => $1)`, [minute(25)]);
    await publishDue(minute(30));
    expect(await keys('acct.sync')).toEqual(['account:1', 'account:2', null]);
  });

  it('bad keys are refused naming the field: SQL serial_key (PD012), TS spec.serialKey', async () => {
    for (const key of ['', 'x'.repeat(501)]) {
      const e = await sqlErrorOf(sql, `select jobs.schedule('bad', '@hourly', 'a.b', serial_key => $1)`, [key]);
      expect([e.code, e.column]).toEqual(['PD012', 'serial_key']);
      expect(e.message).toBe('serial_key: must be a non-empty text of at most 500 characters');
    }
    for (const serialKey of ['', 'x'.repeat(501), 'a\0b', 5]) {
      await expect(schedule(db.driver, { name: 'bad', cron: '@hourly', task: 'a.b', serialKey } as never), String(serialKey))
        .rejects.toMatchObject({ code: 'invalid_argument', field: 'spec.serialKey' });
    }
    expect(await sql(`select count(*)::int as n from jobs.recurring`)).toEqual([{ n: 0 }]);
    // The largest key is taken.
    expect(await schedule(db.driver, { name: 'ok', cron: '@hourly', task: 'a.b', serialKey: 'x'.repeat(500), runner: 'drains' }))
      .toBe('drains');
    expect(await sql(`select length(serial_key) as n from jobs.recurring`)).toEqual([{ n: 500 }]);
  });

  it('pgdrain schedule add --serial-key KEY, shown by schedule list (column only when some schedule has one); bad keys exit 2', async () => {
    const cli = (...args: string[]) => runCli(db.url, ...args);
    expect((await cli('schedule', 'add', 'plain', '--cron', '@hourly', '--task', 'a.b')).code).toBe(0);
    // No schedule with a key: no column.
    const plain = (await cli('schedule', 'list')).stdout.split('\n')[0]!;
    expect(plain).toMatch(/^name\s+cron\s+tz\s+task\s+runner\s+overlap\s+next_run_at\s+last_run_at\s+skipped\s+last_error$/);

    expect(await cli('schedule', 'add', 'acct', '--cron', '*/10 * * * *', '--task', 'acct.sync', '--serial-key', 'account:1'))
      .toEqual({ code: 0, stdout: 'drains\n', stderr: '' });
    expect(await sql(`select name, serial_key from jobs.recurring order by name`))
      .toEqual([{ name: 'acct', serial_key: 'account:1' }, { name: 'plain', serial_key: null }]);
    const lines = (await cli('schedule', 'list')).stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^name\s+cron\s+tz\s+task\s+runner\s+overlap\s+serial_key\s+next_run_at\s/);
    expect(lines.slice(2).map((l) => l.split(/\s{2,}/).slice(0, 7))).toEqual([
      ['acct', '*/10 * * * *', 'UTC', 'acct.sync', 'drains', 'allow', 'account:1'],
      ['plain', '@hourly', 'UTC', 'a.b', 'drains', 'allow', expect.stringMatching(/^\d{4}-/)]]);
    const listed = JSON.parse((await cli('schedule', 'list', '--json')).stdout) as Record<string, unknown>[];
    expect(listed).toMatchObject([{ name: 'acct', serialKey: 'account:1' }, { name: 'plain', serialKey: null }]);

    for (const key of ['', 'x'.repeat(501)]) {
      const r = await cli('schedule', 'add', 'bad', '--cron', '@hourly', '--task', 'a.b', '--serial-key', key);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/^pgdrain: --serial-key: must /);
      expect(r.stdout).toBe('');
    }
    expect(await sql(`select count(*)::int as n from jobs.recurring where name = 'bad'`)).toEqual([{ n: 0 }]);
  });
});
