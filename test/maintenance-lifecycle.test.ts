// The data lifecycle: retention jobs.maintain can compute, jobs.run_maintenance
// (what pg_cron runs) catching up in committed passes, safe to kill midway and
// to run twice at once, and redrive into a bounded queue counting only the
// dead letters that go back. pg_cron itself: cron-privileges.test.ts.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { maintain } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const sqlError = (text: string, params?: unknown[]) => sqlErrorOf(sql, text, params);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring, jobs.job_archive');
});

/** n ended jobs, ended 8 days ago (past a 7-day retention). */
const oldJobs = (n: number) => sql(
  `insert into jobs.job (job_id, task, status, attempts, priority, max_retries, timeout, scheduled_at, created_at, ended_at)
   select 10000000 + g, 'x.y', 'success', 1, 0, 3, 60, now(), now(), now() - interval '8 days' + g * interval '1 ms'
   from generate_series(1, $1::int) g`, [n]);

const counts = async () => (await sql<{ job: number; archive: number; distinct_ids: number }>(
  `select (select count(*)::int from jobs.job) as job, (select count(*)::int from jobs.job_archive) as archive,
          (select count(distinct job_id)::int from (select job_id from jobs.job union all select job_id from jobs.job_archive) a) as distinct_ids`))[0]!;

describe('retention', () => {
  it('a retention maintain cannot subtract from now is refused, naming retention, by maintain, run_maintenance and schedule_maintenance', async () => {
    for (const call of [`select jobs.maintain('9999 years')`, `call jobs.run_maintenance('9999 years')`,
                        `select jobs.schedule_maintenance('* * * * *', '9999 years')`, `select jobs.maintain('-1 day')`]) {
      const e = await sqlError(call);
      expect([call, e.code, e.column]).toEqual([call, 'PDC03', 'retention']);
      expect(e.message).toMatch(/^retention: must be an interval between 0 and 36500 days/);
    }
    // The most TS takes (a hundred years, 3,153,600,000 s) is what SQL takes.
    await oldJobs(1);
    expect(await maintain(db.driver, { retentionSeconds: 3_153_600_000 })).toMatchObject({ deleted: 0 });
    expect(await sql(`select jobs.maintain('36500 days') as r`)).toEqual([{ r: { expired: 0, ticks: 0, deleted: 0, archived: 0, windows: 0, misses: 0, left: 0 } }]);
  });
});

describe('maintain() from TypeScript catches up', () => {
  it('one call removes a backlog of several passes (maxRows each), each pass committed; the report sums them', async () => {
    await oldJobs(350);
    expect(await maintain(db.driver, { maxRows: 100 }))
      .toEqual({ expired: 0, ticks: 0, deleted: 350, archived: 0, windows: 0, misses: 0, left: 0, passes: 4, caughtUp: true });
    expect(await counts()).toEqual({ job: 0, archive: 0, distinct_ids: 0 });
    await oldJobs(350);
    expect(await maintain(db.driver, { maxRows: 100, archive: true })).toMatchObject({ archived: 350, passes: 4, caughtUp: true });
    expect(await counts()).toEqual({ job: 0, archive: 350, distinct_ids: 350 });
    // Exactly a pass's worth: one more pass finds nothing, and says so.
    await sql('truncate jobs.job_archive');
    await oldJobs(100);
    expect(await maintain(db.driver, { maxRows: 100, archive: true })).toMatchObject({ archived: 100, passes: 2, caughtUp: true });
  });

  it('starts no pass once budgetMs has passed: the report says it has not caught up, and the next call goes on', async () => {
    await oldJobs(350);
    // Each archiving statement sleeps 50 ms: the first pass alone outlasts a 10 ms budget.
    await sql(`create function public.slow() returns trigger language plpgsql as $$ begin perform pg_sleep(0.05); return null; end $$;
      create trigger slow after insert on jobs.job_archive for each statement execute function public.slow();`);
    try {
      expect(await maintain(db.driver, { maxRows: 100, archive: true, budgetMs: 10 }))
        .toEqual({ expired: 0, ticks: 0, deleted: 0, archived: 100, windows: 0, misses: 0, left: 0, passes: 1, caughtUp: false });
    } finally {
      await sql(`drop trigger slow on jobs.job_archive; drop function public.slow()`);
    }
    expect(await maintain(db.driver, { maxRows: 100, archive: true })).toMatchObject({ archived: 250, passes: 3, caughtUp: true });
    expect(await counts()).toEqual({ job: 0, archive: 350, distinct_ids: 350 });
  });

  it('checks budgetMs and maxRows, naming the field and the rule', async () => {
    for (const [options, message] of [
      [{ budgetMs: 0 }, 'options.budgetMs: must be at least 1'], [{ budgetMs: 1.5 }, 'options.budgetMs: must be an integer number of milliseconds'],
      [{ budgetMs: 86_400_001 }, 'options.budgetMs: must be at most 86400000 (a day)'], [{ maxRows: 0 }, 'options.maxRows: must be at least 1'],
    ] as const) {
      await expect(maintain(db.driver, options), JSON.stringify(options)).rejects.toMatchObject({ message });
    }
  });
});

describe('expiry and retention in one pass', () => {
  /** A job whose lease ran out an hour ago with no retries left: expiry ends it as a failure. */
  const stuckJob = async () => {
    await sql(`select jobs.publish('stuck.job', timeout_seconds => 5, max_retries => 0, now => now() - interval '1 hour')`);
    await sql(`select jobs.claim(1, 'stuck.job', null, now() - interval '1 hour')`);
  };
  const deadLetters = () => sql(`select task, status from jobs.job`);

  it('the failure a pass\'s expiry records is kept by that pass\'s retention, however short: it shows as a dead letter', async () => {
    await stuckJob();
    // Its ended_at is when its lease ran out, an hour ago: past a 0 or 30-minute retention.
    expect(await sql(`select jobs.maintain('0 days') as r`)).toEqual([{ r: { expired: 1, ticks: 0, deleted: 0, archived: 0, windows: 0, misses: 0, left: 0 } }]);
    expect(await deadLetters()).toEqual([{ task: 'stuck.job', status: 'failure' }]);
    await sql('truncate jobs.job');
    await stuckJob();
    expect(await sql(`call jobs.run_maintenance('30 minutes', true)`)).toMatchObject([{ report: { expired: 1, deleted: 0, archived: 0 } }]);
    expect(await deadLetters()).toEqual([{ task: 'stuck.job', status: 'failure' }]);
    await sql('truncate jobs.job');
    await stuckJob();
    expect(await maintain(db.driver, { retentionSeconds: 0 })).toMatchObject({ expired: 1, deleted: 0 });
    expect(await deadLetters()).toEqual([{ task: 'stuck.job', status: 'failure' }]);
    // The next pass removes it, as a retention of 0 asks.
    expect(await maintain(db.driver, { retentionSeconds: 0 })).toMatchObject({ expired: 0, deleted: 1 });
  });
});

describe('jobs.run_maintenance', () => {
  it('removes a backlog past one pass in passes of 10,000, each committed; max_rows caps it; its arguments are checked', async () => {
    await oldJobs(25_000);
    expect(await sql(`call jobs.run_maintenance('7 days', true, 50, 15000)`)).toEqual([{ report:
      { expired: 0, ticks: 0, deleted: 0, archived: 15000, windows: 0, misses: 0, left: 0, passes: 2, caughtUp: false } }]);
    expect(await sql(`call jobs.run_maintenance('7 days', false)`)).toEqual([{ report:
      { expired: 0, ticks: 0, deleted: 10000, archived: 0, windows: 0, misses: 0, left: 0, passes: 2, caughtUp: true } }]);
    expect(await counts()).toEqual({ job: 0, archive: 15000, distinct_ids: 15000 });
    for (const [call, field] of [[`call jobs.run_maintenance(budget => 0)`, 'budget'], [`call jobs.run_maintenance(max_rows => 0)`, 'max_rows'],
                                 [`select jobs.schedule_maintenance(budget => 0)`, 'budget']]) {
      const e = await sqlError(call!);
      expect([e.code, e.column]).toEqual(['PDC03', field]);
    }
  });

  it('killed midway it keeps the passes it committed and loses or repeats no job; the next run finishes', async () => {
    await oldJobs(35_000);
    // The third pass's archiving statement ends its own session, as a kill would.
    await sql(`create sequence public.archive_statements;
      create function public.kill_third() returns trigger language plpgsql as $$
      begin
        if nextval('public.archive_statements') = 3 then perform pg_terminate_backend(pg_backend_pid()); end if;
        return null;
      end $$;
      create trigger kill_third after insert on jobs.job_archive for each statement execute function public.kill_third();`);
    const victim = new pg.Client({ connectionString: db.url });
    victim.on('error', () => {}); // the terminated connection
    await victim.connect();
    try {
      await expect(victim.query(`call jobs.run_maintenance('7 days', true)`)).rejects.toMatchObject({ code: '57P01' });
    } finally {
      await victim.end().catch(() => {});
      await sql(`drop trigger kill_third on jobs.job_archive; drop function public.kill_third(); drop sequence public.archive_statements`);
    }
    expect(await counts()).toEqual({ job: 15000, archive: 20000, distinct_ids: 35000 });
    expect(await sql(`call jobs.run_maintenance('7 days', true)`)).toMatchObject([{ report: { archived: 15000, caughtUp: true } }]);
    expect(await counts()).toEqual({ job: 0, archive: 35000, distinct_ids: 35000 });
  });

  it('two runs at once archive every job once between them', async () => {
    await oldJobs(60_000);
    const clients = [new pg.Client({ connectionString: db.url }), new pg.Client({ connectionString: db.url })];
    await Promise.all(clients.map((c) => c.connect()));
    try {
      const reports = await Promise.all(clients.map(async (c) =>
        (await c.query<{ report: { archived: number } }>(`call jobs.run_maintenance('7 days', true)`)).rows[0]!.report));
      expect(reports[0]!.archived + reports[1]!.archived).toBe(60000);
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
    expect(await counts()).toEqual({ job: 0, archive: 60000, distinct_ids: 60000 });
  });
});

describe('run_maintenance within its budget', () => {
  it('a pass waiting on a lock stops the run, and a statement_timeout shorter than the budget caps it: the report comes back', async () => {
    await oldJobs(100);
    const holder = new pg.Client({ connectionString: db.url });
    const runner = new pg.Client({ connectionString: db.url });
    await Promise.all([holder.connect(), runner.connect()]);
    try {
      // As a plain CREATE INDEX on jobs.job would: the pass's delete waits for it.
      await holder.query('begin');
      await holder.query('lock table jobs.job in share mode');
      await runner.query(`set statement_timeout = '3s'`);
      // Without the cap and the lock timeout, the call waits until statement_timeout ends it (57014), report lost.
      const { rows: [r] } = await runner.query<{ report: Record<string, unknown> }>(`call jobs.run_maintenance('7 days', false, 50)`);
      expect(r!.report).toMatchObject({ passes: 0, caughtUp: false, deleted: 0 });
      await holder.query('rollback');
      // The lock timeout it set ended with its transaction: the session's own is back.
      expect((await runner.query(`show lock_timeout`)).rows).toEqual([{ lock_timeout: '0' }]);
      const { rows: [again] } = await runner.query<{ report: Record<string, unknown> }>(`call jobs.run_maintenance('7 days', false, 50)`);
      expect(again!.report).toMatchObject({ deleted: 100, caughtUp: true });
    } finally {
      await holder.end();
      await runner.end();
    }
  });
});

describe('redrive into a bounded queue', () => {
  /** Two dead letters in queue b, the first with dedupe key k1, which an active job then takes. */
  async function deadLettersOneHeld() {
    await sql(`select jobs.create_queue('b', max_size => null)`);
    await sql(`select jobs.publish('x.a', queue => 'b', max_retries => 0, dedupe_key => 'k1')`);
    await sql(`select jobs.publish('x.b', queue => 'b', max_retries => 0)`);
    await sql(`select jobs.nack(job_id, 'boom') from jobs.consume(2, queue => 'b')`);
    await sql(`select jobs.publish('x.a', queue => 'b', dedupe_key => 'k1')`);
  }

  it('admits only the dead letters whose dedupe key is free: one fits in a queue with room for one', async () => {
    await deadLettersOneHeld();
    await sql(`select jobs.create_queue('b', max_size => 2)`);
    expect(await sql(`select jobs.redrive() as n`)).toEqual([{ n: 1 }]);
    expect(await sql(`select task from jobs.dead_letters`)).toEqual([{ task: 'x.a' }]);
    expect(await sql(`select task, dedupe_key from jobs.job_queue where queue = 'b' order by task, job_id`))
      .toEqual([{ task: 'x.a', dedupe_key: 'k1' }, { task: 'x.b', dedupe_key: null }]);
  });

  it('still all or nothing: when what would go back does not fit, PD010 and nothing moves', async () => {
    await deadLettersOneHeld();
    await sql(`select jobs.create_queue('b', max_size => 1)`);
    const e = await sqlError(`select jobs.redrive()`);
    expect([e.code, e.message]).toEqual(['PD010', expect.stringMatching(/^queue: queue 'b' is full: 1 waiting job \+ 1 redriven > max_size 1; redrive later/)]);
    expect(await sql(`select count(*)::int as n from jobs.dead_letters`)).toEqual([{ n: 2 }]);
  });

  it('of two dead letters sharing a free dedupe key, one goes back and counts', async () => {
    await sql(`select jobs.create_queue('b', max_size => 1)`);
    await sql(`select jobs.publish('x.a', queue => 'b', max_retries => 0, dedupe_key => 'k2')`);
    await sql(`select jobs.nack(job_id, 'boom') from jobs.consume(1, queue => 'b')`);
    await sql(`select jobs.publish('x.a', queue => 'b', max_retries => 0, dedupe_key => 'k2')`);
    await sql(`select jobs.nack(job_id, 'boom') from jobs.consume(1, queue => 'b')`);
    expect(await sql(`select jobs.redrive() as n`)).toEqual([{ n: 1 }]);
    expect(await sql(`select count(*)::int as n from jobs.dead_letters`)).toEqual([{ n: 1 }]);
  });
});
