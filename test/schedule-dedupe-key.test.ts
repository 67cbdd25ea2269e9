// A dedupe key of one's choosing on a schedule (graphile-worker's crontab
// `?jobKey=k&jobKeyMode=replace|preserve_run_at`): every tick publishes with
// the schedule's dedupe_key and dedupe_mode as jobs.publish takes them.
// Drain-run ticks are driven with `now` (jobs.publish_due_schedules, what
// every claim calls), pg_cron-run ones by calling jobs.run_schedule as
// pg_cron would (this database has no pg_cron). On a real PostgreSQL; the
// CLI case runs dist/cli.mjs (npm run build first).
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, listSchedules, schedule } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';
import { minute, T0 } from './support/schedule-clock.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
});

const publishDue = (now: string) => sql(`select jobs.publish_due_schedules($1)`, [now]);
/** The active jobs of `task`: id, key, run time and the tick its attributes name. */
const jobs = async (task: string) => (await sql<{ id: string; dedupe_key: string | null; scheduled_at: Date; tick: string; running: boolean }>(
  `select job_id::text as id, dedupe_key, scheduled_at, attributes->>'tick' as tick, lease_until is not null as running
   from jobs.job_queue where task = $1 order by job_id`, [task])).map((j) => ({ ...j, scheduled_at: j.scheduled_at.toISOString() }));
const lastRun = async (name: string) => (await sql<{ last_job_id: string | null; last_run_at: Date | null; last_error: string | null }>(
  `select last_job_id::text, last_run_at, last_error from jobs.recurring where name = $1`, [name]))[0]!;
/** As jobs.schedule leaves a pg_cron-run schedule (this database has no pg_cron). */
const handToPgCron = () => sql(`update jobs.recurring set runner = 'pg_cron', next_run_at = null`);
const runSchedule = async (name: string, now: string) =>
  (await sql<{ id: string | null }>(`select jobs.run_schedule($1, now => $2)::text as id`, [name, now]))[0]!.id;

describe('drains: each tick publishes with the dedupe key and mode', () => {
  it("replace: one waiting job across ticks, which has the latest tick's time and attributes", async () => {
    await sql(`select jobs.schedule('digest', '*/10 * * * *', 'mail.digest', dedupe_key => 'digest:all', dedupe_mode => 'replace',
               now => $1)`, [T0]);
    for (const k of [10, 20, 30]) await publishDue(minute(k));
    const [job, ...more] = await jobs('mail.digest');
    expect(more).toEqual([]);
    expect(job).toMatchObject({ dedupe_key: 'digest:all', scheduled_at: minute(30), tick: minute(30) });
    expect(await lastRun('digest')).toEqual({ last_job_id: job!.id, last_run_at: new Date(minute(30)), last_error: null });

    // Running, the holder is left to finish keyless; the next tick's job takes the key.
    await sql(`select jobs.claim(1, 'mail.digest', now => $1)`, [minute(31)]);
    await publishDue(minute(40));
    expect((await jobs('mail.digest')).map((j) => [j.dedupe_key, j.running, j.scheduled_at]))
      .toEqual([[null, true, minute(30)], ['digest:all', false, minute(40)]]);
  });

  it('a drain\'s claim fires the tick: replace hands the app\'s waiting job the tick\'s body, and the drain runs it', async () => {
    const ran: unknown[] = [];
    const queue = createQueue({ driver: { ...db.driver, close: async () => {} },
                                tasks: { mail: { digest: (body: unknown) => void ran.push(body) } } });
    const app = await queue.publish('mail.digest', { by: 'app' }, { dedupeKey: 'digest:all', delaySeconds: 3600 });
    expect(await schedule(db.driver, { name: 'digest', cron: '* * * * *', task: 'mail.digest', body: { by: 'schedule' },
                                       timeoutSeconds: 5, dedupeKey: 'digest:all', dedupeMode: 'replace', runner: 'drains' })).toBe('drains');
    await sql(`update jobs.recurring set next_run_at = now() - interval '1 minute'`);
    expect(await queue.drain(10, Date.now() + 30_000)).toMatchObject({ claimed: 1, succeeded: 1 });
    expect(ran).toEqual([{ by: 'schedule' }]);
    expect(await sql(`select job_id::text as id, status from jobs.job where task = 'mail.digest'`)).toEqual([{ id: app, status: 'success' }]);
    expect((await lastRun('digest')).last_job_id).toBe(app);
  });

  it('replace_keep_time: one waiting job, at the first tick\'s time, with the latest tick\'s attributes', async () => {
    await sql(`select jobs.schedule('digest', '*/10 * * * *', 'mail.digest', dedupe_key => 'digest:all',
               dedupe_mode => 'replace_keep_time', now => $1)`, [T0]);
    for (const k of [10, 20]) await publishDue(minute(k));
    expect((await jobs('mail.digest')).map((j) => [j.scheduled_at, j.tick]))
      .toEqual([[minute(10), minute(20)]]);
  });

  it('keep (the default mode): a tick while a job holds the key publishes nothing and records the holder, one of the app\'s included', async () => {
    const { app } = (await sql<{ app: string }>(`select jobs.publish('mail.digest', '{"by":"app"}', dedupe_key => 'digest:all',
                                                   now => $1)::text as app`, [T0]))[0]!;
    await sql(`select jobs.schedule('digest', '*/10 * * * *', 'mail.digest', dedupe_key => 'digest:all', now => $1)`, [T0]);
    for (const k of [10, 20]) await publishDue(minute(k));
    expect((await jobs('mail.digest')).map((j) => j.id)).toEqual([app]);
    expect(await lastRun('digest')).toEqual({ last_job_id: app, last_run_at: new Date(minute(20)), last_error: null });
    // Not counted as skipped: that is overlap 'skip''s own count.
    expect(await sql(`select skipped_ticks::int as n from jobs.recurring`)).toEqual([{ n: 0 }]);

    // Once the holder has ended, the next tick publishes.
    await sql(`select jobs.ack(c.job_id, now => $1) from jobs.claim(1, 'mail.digest', now => $1) c`, [minute(21)]);
    await publishDue(minute(30));
    const [next] = await jobs('mail.digest');
    expect(next).toMatchObject({ dedupe_key: 'digest:all', scheduled_at: minute(30) });
    expect(next!.id).not.toBe(app);
  });

  it("a tick a keep answers with the holder wrote nothing: not counted by publish_due_schedules nor jobs.maintain's ticks; a replace's is", async () => {
    for (const key of ['kept:all', 'waiting:all', 'repl:all']) {
      await sql(`select jobs.publish('app.job', dedupe_key => $1, now => $2)`, [key, T0]);
    }
    await sql(`select jobs.schedule('kept', '*/10 * * * *', 'app.job', dedupe_key => 'kept:all', now => $1)`, [T0]);
    await sql(`select jobs.schedule('waiting', '*/10 * * * *', 'app.job', dedupe_key => 'waiting:all', dedupe_mode => 'keep_waiting',
               now => $1)`, [T0]);
    await sql(`select jobs.schedule('repl', '*/10 * * * *', 'app.job', dedupe_key => 'repl:all', dedupe_mode => 'replace', now => $1)`, [T0]);
    // Before: 3 and {"ticks": 3}, the two holders answered counted as published.
    expect(await publishDue(minute(10))).toEqual([{ publish_due_schedules: 1 }]);
    expect((await sql<{ m: { ticks: number } }>(`select jobs.maintain(now => $1) as m`, [minute(20)]))[0]!.m.ticks).toBe(1);
    expect(await sql(`select count(*)::int as n from jobs.job_queue`)).toEqual([{ n: 3 }]);

    // Backfill, keep: the window's first tick makes the key's job, the others answer it.
    await sql('truncate jobs.job_queue, jobs.recurring');
    await sql(`select jobs.schedule('fill', '*/10 * * * *', 'fill.kept', backfill => 3600, dedupe_key => 'fill:kept', now => $1)`, [T0]);
    expect(await publishDue(minute(35))).toEqual([{ publish_due_schedules: 1 }]);  // before: 3
    expect((await jobs('fill.kept')).map((j) => j.scheduled_at)).toEqual([minute(10)]);
  });

  it('backfill: the missed ticks publish oldest first, so the key\'s job is the first of them (keep) or the latest (replace)', async () => {
    await sql(`select jobs.schedule('kept', '*/10 * * * *', 'fill.kept', backfill => 3600, dedupe_key => 'fill:kept', now => $1)`, [T0]);
    await sql(`select jobs.schedule('repl', '*/10 * * * *', 'fill.repl', backfill => 3600, dedupe_key => 'fill:repl',
               dedupe_mode => 'replace', now => $1)`, [T0]);
    await publishDue(minute(35));
    expect((await jobs('fill.kept')).map((j) => j.scheduled_at)).toEqual([minute(10)]);
    expect((await jobs('fill.repl')).map((j) => j.scheduled_at)).toEqual([minute(30)]);
    expect(await sql(`select name, last_run_at, next_run_at from jobs.recurring order by name`)).toEqual([
      { name: 'kept', last_run_at: new Date(minute(30)), next_run_at: new Date(minute(40)) },
      { name: 'repl', last_run_at: new Date(minute(30)), next_run_at: new Date(minute(40)) }]);
  });

  it("a claim waits for no lock of the key: while another transaction holds the key's job or replaces it, the replace tick stays due", async () => {
    await sql(`select jobs.schedule('digest', '*/10 * * * *', 'mail.digest', dedupe_key => 'digest:all', dedupe_mode => 'replace',
               now => $1)`, [T0]);
    await publishDue(minute(10));
    const open = new pg.Client({ connectionString: db.url });
    const claim = new pg.Client({ connectionString: db.url });
    await Promise.all([open.connect(), claim.connect()]);
    try {
      // A bound, so that a wait fails the tick (recorded in last_error) rather than the test hanging.
      await claim.query(`set lock_timeout = '3s'`);
      const stillDue = async () => {
        expect((await claim.query(`select jobs.publish_due_schedules($1) as n`, [minute(20)])).rows).toEqual([{ n: 0 }]);
        expect(await sql(`select next_run_at, last_run_at, last_error from jobs.recurring`))
          .toEqual([{ next_run_at: new Date(minute(20)), last_run_at: new Date(minute(10)), last_error: null }]);
      };
      // The holder's row held (as a claim or a settle of it holds it).
      await open.query('begin');
      await open.query(`select 1 from jobs.job_queue where dedupe_key = 'digest:all' for update`);
      await stillDue();
      await open.query('rollback');
      // A replace of the key not yet committed.
      await open.query('begin');
      await open.query(`select jobs.publish('mail.digest', '{"by":"app"}', dedupe_key => 'digest:all', dedupe_mode => 'replace')`);
      await stillDue();
      await open.query('commit');
      // The next claim publishes the tick: the app's job (its replace committed) takes it.
      expect((await claim.query(`select jobs.publish_due_schedules($1) as n`, [minute(21)])).rows).toEqual([{ n: 1 }]);
      expect((await jobs('mail.digest')).map((j) => [j.scheduled_at, j.tick])).toEqual([[minute(20), minute(20)]]);
    } finally {
      await open.end();
      await claim.end();
    }
  });

  it('a tick publish refuses (replace with another serial key holding the key): recorded in last_error, nothing lost', async () => {
    await sql(`select jobs.publish('mail.digest', dedupe_key => 'digest:all', serial_key => 'other', now => $1)`, [T0]);
    await sql(`select jobs.schedule('digest', '*/10 * * * *', 'mail.digest', dedupe_key => 'digest:all', dedupe_mode => 'replace',
               serial_key => 'mine', now => $1)`, [T0]);
    await publishDue(minute(10));
    expect((await lastRun('digest')).last_error).toMatch(/^serial_key: must be the serial_key of job \d+.*\(SQLSTATE PD012\)/);
    expect(await jobs('mail.digest')).toHaveLength(1);
  });
});

describe('pg_cron (jobs.run_schedule): each tick publishes with the dedupe key and mode', () => {
  it('replace: one waiting job, the latest tick; keep: the tick answers the holder', async () => {
    await sql(`select jobs.schedule('repl', '*/10 * * * *', 'cron.repl', dedupe_key => 'cron:repl', dedupe_mode => 'replace',
               runner => 'drains')`);
    await sql(`select jobs.schedule('kept', '*/10 * * * *', 'cron.kept', dedupe_key => 'cron:kept', runner => 'drains')`);
    await handToPgCron();
    const repl = [await runSchedule('repl', minute(10)), await runSchedule('repl', minute(20))];
    const kept = [await runSchedule('kept', minute(10)), await runSchedule('kept', minute(20))];
    expect(repl[1]).toBe(repl[0]);
    expect(kept[1]).toBe(kept[0]);
    expect((await jobs('cron.repl')).map((j) => [j.id, j.dedupe_key, j.tick]))
      .toEqual([[repl[0], 'cron:repl', minute(20)]]);
    expect((await jobs('cron.kept')).map((j) => [j.id, j.dedupe_key, j.tick]))
      .toEqual([[kept[0], 'cron:kept', minute(10)]]);
    expect(await lastRun('kept')).toEqual({ last_job_id: kept[0], last_run_at: new Date(minute(20)), last_error: null });
  });
});

describe('dedupe_key: stored, shown, checked', () => {
  it('jobs.schedules shows dedupe_key and dedupe_mode (its last columns but the group\'s two), listSchedules dedupeKey and dedupeMode; TS schedule() sets them', async () => {
    await schedule(db.driver, { name: 'a', cron: '@hourly', task: 'a.b', dedupeKey: 'k:a', dedupeMode: 'replace', runner: 'drains' });
    await schedule(db.driver, { name: 'b', cron: '@hourly', task: 'a.b', dedupeKey: 'k:b', runner: 'drains' });
    await schedule(db.driver, { name: 'c', cron: '@hourly', task: 'a.b', runner: 'drains' });
    expect(await sql(`select name, dedupe_key, dedupe_mode from jobs.schedules order by name`)).toEqual([
      { name: 'a', dedupe_key: 'k:a', dedupe_mode: 'replace' }, { name: 'b', dedupe_key: 'k:b', dedupe_mode: null },
      { name: 'c', dedupe_key: null, dedupe_mode: null }]);
    expect((await sql<{ column_name: string }>(`select column_name from information_schema.columns
      where table_schema = 'jobs' and table_name = 'schedules' order by ordinal_position desc limit 2 offset 2`)).map((c) => c.column_name))
      .toEqual(['dedupe_mode', 'dedupe_key']);
    expect(await listSchedules(db.driver)).toMatchObject([{ name: 'a', dedupeKey: 'k:a', dedupeMode: 'replace' },
      { name: 'b', dedupeKey: 'k:b', dedupeMode: null }, { name: 'c', dedupeKey: null, dedupeMode: null }]);
    // A change applies from the next tick; removed, the next tick's job has no key.
    await schedule(db.driver, { name: 'a', cron: '@hourly', task: 'a.b', runner: 'drains' });
    expect(await sql(`select dedupe_key, dedupe_mode from jobs.recurring where name = 'a'`)).toEqual([{ dedupe_key: null, dedupe_mode: null }]);
  });

  it('bad input is refused naming the field, nothing written: SQL (PD011), TS spec.dedupeKey / spec.dedupeMode', async () => {
    const refusals: [string, unknown[], string, RegExp][] = [
      [`dedupe_key => $1`, [''], 'dedupe_key', /^dedupe_key: must be a non-empty text of at most 500 characters$/],
      [`dedupe_key => $1`, ['x'.repeat(501)], 'dedupe_key', /^dedupe_key: must be a non-empty text/],
      [`dedupe_key => 'k', dedupe_mode => $1`, ['debounce'], 'dedupe_mode', /^dedupe_mode: must be keep, keep_waiting, replace or replace_keep_time, got 'debounce'$/],
      [`dedupe_mode => $1`, ['replace'], 'dedupe_mode', /^dedupe_mode: needs a dedupe_key/],
      [`dedupe_key => $1, overlap => 'skip'`, ['k'], 'dedupe_key', /^dedupe_key: cannot be given with overlap 'skip'/],
    ];
    for (const [args, params, field, message] of refusals) {
      const e = await sqlErrorOf(sql, `select jobs.schedule('bad', '@hourly', 'a.b', runner => 'drains', ${args})`, params);
      expect([e.code, e.column], args).toEqual(['PD011', field]);
      expect(e.message, args).toMatch(message);
    }
    const specs: [Record<string, unknown>, string][] = [
      [{ dedupeKey: '' }, 'spec.dedupeKey'], [{ dedupeKey: 'x'.repeat(501) }, 'spec.dedupeKey'], [{ dedupeKey: 5 }, 'spec.dedupeKey'],
      [{ dedupeKey: 'k', dedupeMode: 'debounce' }, 'spec.dedupeMode'], [{ dedupeMode: 'replace' }, 'spec.dedupeMode'],
      [{ dedupeKey: 'k', overlap: 'skip' }, 'spec.dedupeKey'],
    ];
    for (const [extra, field] of specs) {
      await expect(schedule(db.driver, { name: 'bad', cron: '@hourly', task: 'a.b', runner: 'drains', ...extra } as never), JSON.stringify(extra))
        .rejects.toMatchObject({ name: 'ValidationError', code: 'invalid_argument', field });
    }
    expect(await sql(`select count(*)::int as n from jobs.recurring`)).toEqual([{ n: 0 }]);
  });

  it('pgdrain schedule add --dedupe-key K --dedupe-mode M, shown by schedule list (column only when some schedule has one); bad ones exit 2 naming the flag', async () => {
    const cli = (...args: string[]) => runCli(db.url, ...args);
    expect((await cli('schedule', 'add', 'plain', '--cron', '@hourly', '--task', 'a.b')).code).toBe(0);
    expect((await cli('schedule', 'list')).stdout.split('\n')[0]).not.toMatch(/dedupe_key/);

    expect(await cli('schedule', 'add', 'digest', '--cron', '*/10 * * * *', '--task', 'mail.digest', '--dedupe-key', 'digest:all',
                     '--dedupe-mode', 'replace')).toEqual({ code: 0, stdout: 'drains\n', stderr: '' });
    expect(await cli('schedule', 'add', 'kept', '--cron', '*/10 * * * *', '--task', 'mail.digest', '--dedupe-key', 'kept:all'))
      .toMatchObject({ code: 0 });
    expect(await sql(`select name, dedupe_key, dedupe_mode from jobs.recurring order by name`)).toEqual([
      { name: 'digest', dedupe_key: 'digest:all', dedupe_mode: 'replace' }, { name: 'kept', dedupe_key: 'kept:all', dedupe_mode: null },
      { name: 'plain', dedupe_key: null, dedupe_mode: null }]);
    const lines = (await cli('schedule', 'list')).stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^name\s+cron\s+tz\s+task\s+runner\s+overlap\s+dedupe_key\s+next_run_at\s/);
    expect(lines.slice(2).map((l) => l.split(/\s{2,}/).slice(0, 7))).toEqual([
      ['digest', '*/10 * * * *', 'UTC', 'mail.digest', 'drains', 'allow', 'digest:all (replace)'],
      ['kept', '*/10 * * * *', 'UTC', 'mail.digest', 'drains', 'allow', 'kept:all'],
      ['plain', '@hourly', 'UTC', 'a.b', 'drains', 'allow', expect.stringMatching(/^\d{4}-/)]]);
    expect(JSON.parse((await cli('schedule', 'list', '--json')).stdout)).toMatchObject([
      { name: 'digest', dedupeKey: 'digest:all', dedupeMode: 'replace' }, { name: 'kept', dedupeKey: 'kept:all', dedupeMode: null },
      { name: 'plain', dedupeKey: null, dedupeMode: null }]);

    const bad: [string[], RegExp][] = [
      [['--dedupe-key', ''], /^pgdrain: --dedupe-key: must /],
      [['--dedupe-key', 'k', '--overlap', 'skip'], /^pgdrain: --dedupe-key: cannot be given with overlap 'skip'/],
      [['--dedupe-mode', 'replace'], /^pgdrain: --dedupe-mode: needs a dedupe key/],
      [['--dedupe-key', 'k', '--dedupe-mode', 'debounce'], /--dedupe-mode: must be one of keep, keep_waiting, replace, replace_keep_time/],
    ];
    for (const [flags, message] of bad) {
      const r = await cli('schedule', 'add', 'bad', '--cron', '@hourly', '--task', 'a.b', ...flags);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr, flags.join(' ')).toMatch(message);
      expect(r.stdout).toBe('');
    }
    expect(await sql(`select count(*)::int as n from jobs.recurring where name = 'bad'`)).toEqual([{ n: 0 }]);
  });
});
