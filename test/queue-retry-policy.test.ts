// A queue's retry policy (pg-boss's retryDelay / retryBackoff / retryDelayMax):
// jobs.create_queue(retry_delay, retry_backoff, retry_delay_max) sets how long
// a nacked job of the queue waits; a queue without one keeps jobs.backoff
// (even a replaced one), and a handler's RetryJob / a nack's schedule_at wins.
// Times come from the settle functions' `now` argument: nothing sleeps.
import { readFileSync } from 'node:fs';
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, RetryJob } from '../src/index.js';
import { testDb } from './support/db.js';
import { yearLike } from './support/future-year.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });
const cli = (...args: string[]) => runCli(db.url, ...args);

const DAY = 86_400_000;
// Ahead of the real clock: the claims at T0 and after find the jobs published at now().
const T0 = Date.parse(`${yearLike(2030)}-01-01T00:00:00Z`);
const iso = (ms: number) => new Date(ms).toISOString();

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
  await sql(`update jobs.queue set dead_letter = null`);
  await sql(`delete from jobs.queue where name <> 'default'`);
});

/** n jobs of task t in queue q, with max_retries retries each. */
async function publish(q: string, n: number, maxRetries = 5): Promise<string[]> {
  const rows = await sql<{ id: string }>(`select jobs.publish('t', null, max_retries => $2, queue => $1)::text as id
                                          from generate_series(1, $3)`, [q, maxRetries, n]);
  return rows.map((r) => r.id);
}

/**
 * Claims every due job of these queues at `at`, nacks them all in one
 * statement at `at`, and answers each job's wait in seconds (scheduled_at − at)
 * and the attempt it was nacked on.
 */
async function claimAndNack(queues: string[], at: number, scheduleAt: string | null = null) {
  const ids: string[] = [];
  for (const q of queues) {
    ids.push(...(await sql<{ id: string }>(`select job_id::text as id from jobs.consume(10000, $1::timestamptz, $2)`,
                                            [iso(at), q])).map((r) => r.id));
  }
  const settled = await sql<{ n: number }>(
    `select jobs.nack($1::bigint[], array_fill('boom'::text, array[cardinality($1::bigint[])]), $2::timestamptz, $3::timestamptz) as n`,
    [ids, scheduleAt, iso(at)]);
  expect(settled[0]!.n).toBe(ids.length);
  return sql<{ id: string; queue: string; attempt: number; wait: number }>(
    `select job_id::text as id, queue, attempt, extract(epoch from scheduled_at - $2::timestamptz)::float8 as wait
     from jobs.job_queue where job_id = any($1::bigint[]) order by job_id`, [ids, iso(at)]);
}

const ORIGINAL_BACKOFF = /create function jobs\.backoff\(attempt integer\)[\s\S]*?\n\$\$;/.exec(
  readFileSync(new URL('../sql/0007_retry.sql', import.meta.url), 'utf8'))![0];

describe('the nack path', () => {
  it('a fixed policy waits retry_delay exactly, on every attempt', async () => {
    await sql(`select jobs.create_queue('fixed', retry_delay => 10, retry_backoff => 'fixed')`);
    await publish('fixed', 3);
    for (let attempt = 1; attempt <= 3; attempt++) {
      const rows = await claimAndNack(['fixed'], T0 + attempt * DAY);
      expect(rows.map((r) => [r.attempt, r.wait])).toEqual([[attempt, 10], [attempt, 10], [attempt, 10]]);
    }
  });

  it('an exponential policy waits within [d/2, d] for d = min(retry_delay_max, retry_delay·2^(k−1))', async () => {
    await sql(`select jobs.create_queue('expo', retry_delay => 2, retry_delay_max => 5)`);
    await publish('expo', 40);
    for (let k = 1; k <= 5; k++) {
      const d = Math.min(5, 2 * 2 ** (k - 1));
      const waits = (await claimAndNack(['expo'], T0 + k * DAY)).map((r) => r.wait);
      expect(waits).toHaveLength(40);
      for (const w of waits) expect(w, `retry ${k}`).toBeGreaterThanOrEqual(d / 2);
      for (const w of waits) expect(w, `retry ${k}`).toBeLessThanOrEqual(d);
      // Jittered: not all the same.
      expect(new Set(waits).size).toBeGreaterThan(1);
    }
  });

  it("a queue without a policy waits jobs.backoff: today's bounds", async () => {
    await sql(`select jobs.create_queue('plain', default_timeout => 30)`);
    await publish('plain', 20);
    await publish('default', 20);
    for (let k = 1; k <= 3; k++) {
      const rows = await claimAndNack(['plain', 'default'], T0 + k * DAY);
      expect(rows).toHaveLength(40);
      for (const r of rows) {
        expect(r.wait, `retry ${k}`).toBeGreaterThanOrEqual(2.5 * 2 ** (k - 1));
        expect(r.wait, `retry ${k}`).toBeLessThanOrEqual(5 * 2 ** (k - 1));
      }
    }
  });

  it('a replaced jobs.backoff still applies to queues without a policy, in the same statement as one with', async () => {
    await sql(`select jobs.create_queue('plain'), jobs.create_queue('fixed', retry_delay => 10, retry_backoff => 'fixed')`);
    await publish('plain', 2);
    await publish('default', 2);
    await publish('fixed', 2);
    await sql(`create or replace function jobs.backoff(attempt integer) returns interval language sql as $$ select interval '7 seconds' $$`);
    try {
      const rows = await claimAndNack(['plain', 'default', 'fixed'], T0);
      expect(rows.map((r) => [r.queue, r.wait])).toEqual([['plain', 7], ['plain', 7], ['default', 7], ['default', 7],
                                                         ['fixed', 10], ['fixed', 10]]);
    } finally {
      await sql(ORIGINAL_BACKOFF.replace('create function', 'create or replace function'));
    }
    // Restored: today's policy again.
    const again = await claimAndNack(['default'], T0 + DAY);
    for (const r of again) expect(r.wait).toBeGreaterThanOrEqual(5);
  });

  it("a nack's retry_at wins over the queue's policy, per delivery; ending with retries spent is unchanged", async () => {
    await sql(`select jobs.create_queue('fixed', retry_delay => 10, retry_backoff => 'fixed')`);
    const [own, policy] = await publish('fixed', 2, 1);
    await sql(`select * from jobs.consume(10, $1::timestamptz, 'fixed')`, [iso(T0)]);
    expect(await sql(`select jobs.settle_arrays(array[$1, $2]::bigint[], array[1, 1], array['nack', 'nack'], errors => array['e', 'e'],
                                                retry_at => array[$3, null]::timestamptz[], now => $4::timestamptz)->'retried' as n`,
                     [own, policy, iso(T0 + 3600_000), iso(T0)])).toEqual([{ n: 2 }]);
    expect(await sql(`select job_id::text as id, extract(epoch from scheduled_at - $1::timestamptz)::float8 as wait
                      from jobs.job_queue order by job_id`, [iso(T0)])).toEqual([{ id: own, wait: 3600 }, { id: policy, wait: 10 }]);
    expect(await claimAndNack(['fixed'], T0 + DAY)).toEqual([]);
    expect(await sql(`select status, attempts from jobs.job`)).toEqual([{ status: 'failure', attempts: 2 }, { status: 'failure', attempts: 2 }]);
  });

  it('retry_delay 0 retries at once; a cap alone under the default base (5 s) is refused', async () => {
    // Reviewer Y: a cap of 2 with the base left null was taken, and retries waited 1-2 s, under "never under retry_delay".
    await expect(sql(`select jobs.create_queue('low', retry_delay_max => 2)`))
      .rejects.toMatchObject({ code: 'PD007', column: 'retry_delay_max',
                               message: 'retry_delay_max: must be at least the retry delay (5 seconds), got 2' });
    await sql(`select jobs.create_queue('now', retry_delay => 0), jobs.create_queue('capped', retry_delay => 1, retry_delay_max => 1, retry_backoff => 'fixed')`);
    await publish('now', 2);
    await publish('capped', 2);
    const rows = await claimAndNack(['now', 'capped'], T0);
    expect(rows.map((r) => [r.queue, r.wait])).toEqual([['now', 0], ['now', 0], ['capped', 1], ['capped', 1]]);
  });
});

describe('drain()', () => {
  it('a handler that throws in a fixed-delay queue runs again retry_delay later; a RetryJob at its own time', async () => {
    await sql(`select jobs.create_queue('fixed', retry_delay => 30, retry_backoff => 'fixed')`);
    const at = new Date(`${yearLike(2031)}-06-01T00:00:00Z`); // ahead of now(): the drain does not claim the retried job again
    const q = createQueue({
      driver: { ...db.driver, close: async () => {} },
      tasks: { fails: async () => { throw new Error('boom'); }, retries: async () => { throw new RetryJob('later', { at }); } },
    });
    const thrown = await q.publish('fails', {}, { queue: 'fixed', timeoutSeconds: 5 });
    const retried = await q.publish('retries', {}, { queue: 'fixed', timeoutSeconds: 5 });
    const [before] = await sql<{ t: string }>(`select now()::text as t`);
    expect(await q.drain(10, Date.now() + 60_000, { queue: 'fixed' })).toMatchObject({ claimed: 2, retried: 2 });
    const [after] = await sql<{ t: string }>(`select now()::text as t`);
    // Settled at the database's now, somewhere between the two reads: 30 s after it.
    expect(await sql(`select job_id::text as id, scheduled_at - interval '30 seconds' between $2::timestamptz and $3::timestamptz as fixed,
                             scheduled_at = $4::timestamptz as at, last_error like 'Error: boom%' as error
                      from jobs.job_queue where job_id = any($1::bigint[]) order by job_id`,
                     [[thrown, retried], before!.t, after!.t, at.toISOString()]))
      .toEqual([{ id: thrown, fixed: true, at: false, error: true }, { id: retried, fixed: false, at: true, error: false }]);
  });
});

const settings = async (name: string) => (await sql(`select retry_delay::float8 as delay, retry_backoff as backoff,
                                                      retry_delay_max::float8 as max from jobs.queue where name = $1`, [name]))[0];

describe('setting the policy', () => {
  it('SQL: left out keeps, given changes, null clears; bad values are PD007 naming the argument, and change nothing', async () => {
    await sql(`select jobs.create_queue('mail', retry_delay => 10, retry_backoff => 'fixed', retry_delay_max => 60)`);
    expect(await settings('mail')).toEqual({ delay: 10, backoff: false, max: 60 });
    await sql(`select jobs.create_queue('mail', max_size => 5)`);
    await sql(`select jobs.create_queue('mail', null, null, null, null, null)`); // positional, as before
    expect(await settings('mail')).toEqual({ delay: 10, backoff: false, max: 60 });
    await sql(`select jobs.create_queue('mail', retry_backoff => 'exponential')`);
    expect(await settings('mail')).toEqual({ delay: 10, backoff: true, max: 60 });
    await sql(`select jobs.create_queue('mail', retry_delay => null, retry_backoff => null)`);
    expect(await settings('mail')).toEqual({ delay: null, backoff: null, max: 60 });
    await sql(`select jobs.create_queue('mail', retry_delay => 10)`);

    const bad: [string, string, RegExp][] = [
      ['retry_delay => -1', 'retry_delay', /retry_delay: must be 0 to 86400 seconds/],
      ['retry_delay => 86401', 'retry_delay', /got 86401/],
      ["retry_delay => 'Infinity'", 'retry_delay', /retry_delay: must be 0 to 86400/],
      ['retry_delay_max => 0.5', 'retry_delay_max', /retry_delay_max: must be 1 to 604800 seconds/],
      ['retry_delay_max => 604801', 'retry_delay_max', /got 604801/],
      ["retry_backoff => 'linear'", 'retry_backoff', /retry_backoff: must be 'exponential' or 'fixed'.*got 'linear'/],
      // Against the value the queue keeps, either way round.
      ['retry_delay => 61', 'retry_delay', /retry_delay: must be at most the cap on retry delays \(60 seconds\), got 61/],
      ['retry_delay_max => 9', 'retry_delay_max', /retry_delay_max: must be at least the retry delay \(10 seconds\), got 9/],
      ['retry_delay => 20, retry_delay_max => 15', 'retry_delay_max', /must be at least the retry delay \(20 seconds\)/],
    ];
    for (const [args, column, message] of bad) {
      await expect(sql(`select jobs.create_queue('mail', ${args})`), args).rejects.toMatchObject({ code: 'PD007', column, message: expect.stringMatching(message) });
    }
    expect(await settings('mail')).toEqual({ delay: 10, backoff: null, max: 60 });
    // A new queue refused creates nothing.
    await expect(sql(`select jobs.create_queue('fresh', retry_delay => 100, retry_delay_max => 50)`)).rejects.toMatchObject({ code: 'PD007' });
    expect(await sql(`select name from jobs.queue where name = 'fresh'`)).toEqual([]);
  });

  it('TypeScript: queues.create sends only the options given (null clears); list shows them; bad ones are ValidationErrors', async () => {
    await queue.queues.create('mail', { retryDelaySeconds: 10, retryBackoff: false, retryDelayMaxSeconds: 60 });
    expect((await queue.queues.list()).find((x) => x.name === 'mail'))
      .toMatchObject({ retryDelaySeconds: 10, retryBackoff: false, retryDelayMaxSeconds: 60 });
    expect((await queue.queues.list()).find((x) => x.name === 'default'))
      .toMatchObject({ retryDelaySeconds: null, retryBackoff: null, retryDelayMaxSeconds: null });
    await queue.queues.create('mail', { maxSize: 3, retryDelaySeconds: undefined });
    expect(await settings('mail')).toEqual({ delay: 10, backoff: false, max: 60 });
    await queue.queues.create('mail', { retryBackoff: true, retryDelayMaxSeconds: null });
    expect(await settings('mail')).toEqual({ delay: 10, backoff: true, max: null });
    await queue.queues.create('mail', { retryBackoff: null, retryDelaySeconds: 2.5 });
    expect(await settings('mail')).toEqual({ delay: 2.5, backoff: null, max: null });

    const bad: [object, string][] = [
      [{ retryDelaySeconds: -1 }, 'options.retryDelaySeconds'],
      [{ retryDelaySeconds: 86401 }, 'options.retryDelaySeconds'],
      [{ retryDelaySeconds: Number.NaN }, 'options.retryDelaySeconds'],
      [{ retryDelayMaxSeconds: 0 }, 'options.retryDelayMaxSeconds'],
      [{ retryDelayMaxSeconds: 604801 }, 'options.retryDelayMaxSeconds'],
      [{ retryBackoff: 'fixed' }, 'options.retryBackoff'],
      [{ retryDelaySeconds: 20, retryDelayMaxSeconds: 10 }, 'options.retryDelayMaxSeconds'],
      // Only the database knows the kept value: its error, named as the option.
      [{ retryDelayMaxSeconds: 2 }, 'options.retryDelayMaxSeconds'],
    ];
    for (const [options, field] of bad) {
      await expect(queue.queues.create('mail', options as never), JSON.stringify(options))
        .rejects.toMatchObject({ name: 'ValidationError', field });
    }
    await expect(queue.queues.create('mail', { retryDelayMaxSeconds: 2 }))
      .rejects.toThrow('options.retryDelayMaxSeconds: must be at least the retry delay (2.5 seconds), got 2');
    expect(await settings('mail')).toEqual({ delay: 2.5, backoff: null, max: null });
  });

  it('CLI: queue create --retry-delay/--retry-backoff/--retry-delay-max, --no-X clears; queue list shows them; bad ones exit 2 naming the flag', async () => {
    expect(await cli('queue', 'create', 'mail', '--retry-delay', '10', '--retry-backoff', 'fixed', '--retry-delay-max', '60'))
      .toMatchObject({ code: 0 });
    expect(await settings('mail')).toEqual({ delay: 10, backoff: false, max: 60 });
    expect(await cli('queue', 'create', 'mail', '--max-size', '4')).toMatchObject({ code: 0 });
    expect(await settings('mail')).toEqual({ delay: 10, backoff: false, max: 60 });
    const list = await cli('queue', 'list');
    expect(list.stdout).toMatch(/retry_delay\s+retry_backoff\s+retry_delay_max/);
    expect(list.stdout).toMatch(/^mail\s.*\s10\s+fixed\s+60$/m);
    expect(JSON.parse((await cli('queue', 'list', '--json')).stdout)).toContainEqual(
      expect.objectContaining({ name: 'mail', retryDelaySeconds: 10, retryBackoff: false, retryDelayMaxSeconds: 60 }));

    const bad: [string[], RegExp][] = [
      [['--retry-delay', '-1'], /--retry-delay: must be a number of seconds from 0 to 86400/],
      [['--retry-delay-max', '0'], /--retry-delay-max: must be a number of seconds from 1 to 604800/],
      [['--retry-backoff', 'linear'], /--retry-backoff: must be one of exponential, fixed/],
      [['--retry-delay', '20', '--retry-delay-max', '15'], /--retry-delay-max: must be at least the retry delay/],
      // Against the kept value: the database's check, named as the flag.
      [['--retry-delay-max', '5'], /--retry-delay-max: must be at least the retry delay \(10 seconds\), got 5/],
      [['--retry-delay', '61'], /--retry-delay: must be at most the cap on retry delays \(60 seconds\), got 61/],
    ];
    for (const [flags, message] of bad) {
      const r = await cli('queue', 'create', 'mail', ...flags);
      expect(r.code, flags.join(' ')).toBe(2);
      expect(r.stderr, flags.join(' ')).toMatch(message);
    }
    expect(await settings('mail')).toEqual({ delay: 10, backoff: false, max: 60 });
    expect(await cli('queue', 'create', 'mail', '--retry-backoff', 'exponential', '--no-retry-delay-max')).toMatchObject({ code: 0 });
    expect(await settings('mail')).toEqual({ delay: 10, backoff: true, max: null });
    expect(await cli('queue', 'create', 'mail', '--no-retry-delay', '--no-retry-backoff')).toMatchObject({ code: 0 });
    expect(await settings('mail')).toEqual({ delay: null, backoff: null, max: null });
  });
});
