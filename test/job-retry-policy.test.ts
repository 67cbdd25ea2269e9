// A job's own retry policy (pg-boss's send options retryDelay / retryBackoff /
// retryDelayMax, BullMQ's per-job backoff): jobs.publish(retry_delay,
// retry_backoff, retry_delay_max), publish_arrays' arrays, TS publish /
// publishBulk, POST /jobs and `pgdrain publish --retry-*`. With any of the
// three set it wins over its queue's policy on a nack (an expired lease goes
// to the next consume, as DESIGN has it); a nack's schedule_at still wins
// over it; redrive and dead-letter routing keep it. Times come from the functions' `now`: nothing sleeps.
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { yearLike } from './support/future-year.js';
import { expectRefusedBeforeAnyStatement } from './support/publish-refusals.js';
import { postJobsTo } from './support/http-jobs.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });
const cli = (...args: string[]) => runCli(db.url, ...args);

// Ahead of the real clock: the claims at T0 and after find the jobs published at now().
const T0 = Date.parse(`${yearLike(2030)}-01-01T00:00:00Z`);
const iso = (ms: number) => new Date(ms).toISOString();

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
  await sql(`update jobs.queue set dead_letter = null`);
  await sql(`delete from jobs.queue where name <> 'default'`);
});

/** The stored policy of a job, queued or ended. */
async function policy(id: string) {
  const rows = await sql<{ delay: number | null; backoff: boolean | null; max: number | null }>(
    `select retry_delay::float8 as delay, retry_backoff as backoff, retry_delay_max::float8 as max from jobs.job_queue where job_id = $1
     union all
     select retry_delay::float8, retry_backoff, retry_delay_max::float8 from jobs.job where job_id = $1`, [id]);
  return rows[0];
}

/** Claims every due job of queue q at `at`, nacks them at `at`; each job's wait (scheduled_at − at) by id. */
async function claimAndNack(q: string, at: number, scheduleAt: string | null = null): Promise<Record<string, number>> {
  const ids = (await sql<{ id: string }>(`select job_id::text as id from jobs.consume(1000, $1::timestamptz, $2)`,
                                         [iso(at), q])).map((r) => r.id);
  await sql(`select jobs.nack(id, 'boom', $2::timestamptz, $3::timestamptz) from unnest($1::bigint[]) id`,
            [ids, scheduleAt, iso(at)]);
  return waits(ids, at);
}

async function waits(ids: string[], at: number): Promise<Record<string, number>> {
  const rows = await sql<{ id: string; wait: number }>(
    `select job_id::text as id, extract(epoch from scheduled_at - $2::timestamptz)::float8 as wait
     from jobs.job_queue where job_id = any($1::bigint[])`, [ids, iso(at)]);
  return Object.fromEntries(rows.map((r) => [r.id, r.wait]));
}

const one = async (text: string, params?: unknown[]) => (await sql<{ id: string }>(text, params))[0]!.id;

describe('SQL', () => {
  it("a nack waits the job's fixed delay, not its queue's; a job without one waits the queue's; schedule_at wins", async () => {
    await sql(`select jobs.create_queue('mail', retry_delay => 10, retry_backoff => 'fixed')`);
    const own = await one(`select jobs.publish('t', null, max_retries => 5, queue => 'mail',
                                               retry_delay => 30, retry_backoff => 'fixed')::text as id`);
    const plain = await one(`select jobs.publish('t', null, max_retries => 5, queue => 'mail')::text as id`);
    // Only a cap given: a policy of its own all the same (base 5, exponential, capped at 5: between 2.5 and 5).
    const capped = await one(`select jobs.publish('t', null, max_retries => 5, queue => 'mail', retry_delay_max => 5)::text as id`);
    for (let attempt = 1; attempt <= 3; attempt++) {
      const w = await claimAndNack('mail', T0 + attempt * 86_400_000);
      expect([w[own], w[plain]], `attempt ${attempt}`).toEqual([30, 10]);
      expect(w[capped]).toBeGreaterThanOrEqual(2.5);
      expect(w[capped]).toBeLessThanOrEqual(5);
    }
    const at = T0 + 10 * 86_400_000;
    expect((await claimAndNack('mail', at, iso(at + 7000)))[own]).toBe(7);
    expect(await policy(own)).toEqual({ delay: 30, backoff: false, max: null });
    expect(await policy(plain)).toEqual({ delay: null, backoff: null, max: null });
  });

  it("a drain's nack (settle_arrays) honours it too", async () => {
    const id = await one(`select jobs.publish('t', null, retry_delay => 1000, retry_backoff => 'fixed')::text as id`);
    const claimed = await sql<{ attempt: number }>(`select attempt from jobs.consume(10)`);
    const r = await sql<{ r: { retried: number } }>(
      `select jobs.settle_arrays(array[$1::bigint], array[$2::int], array['nack'], errors => array['boom'],
                                 now => $3::timestamptz) as r`, [id, claimed[0]!.attempt, iso(T0)]);
    expect(r[0]!.r.retried).toBe(1);
    expect((await waits([id], T0))[id]).toBe(1000);
  });

  it("an expired lease goes to the next consume whatever the job's or its queue's policy (DESIGN: like a visibility timeout)", async () => {
    await sql(`select jobs.create_queue('mail', retry_delay => 20, retry_backoff => 'fixed')`);
    const own = await one(`select jobs.publish('t', null, timeout_seconds => 10, queue => 'mail', retry_delay => 30, retry_backoff => 'fixed')::text as id`);
    const queued = await one(`select jobs.publish('t', null, timeout_seconds => 10, queue => 'mail')::text as id`);
    const plain = await one(`select jobs.publish('t', null, timeout_seconds => 10)::text as id`);
    expect(await sql(`select job_id from jobs.consume(10, $1::timestamptz, 'mail')`, [iso(T0)])).toHaveLength(2);
    expect(await sql(`select job_id from jobs.consume(10, $1::timestamptz)`, [iso(T0)])).toHaveLength(1);
    expect((await sql<{ n: number }>(`select jobs.expire(now => $1::timestamptz) as n`, [iso(T0 + 100_000)]))[0]!.n).toBe(3);
    // Leases until T0 + 10 s: each is due then.
    expect(await waits([own, queued, plain], T0)).toEqual({ [own]: 10, [queued]: 10, [plain]: 10 });
    expect(await sql(`select job_id from jobs.consume(10, $1::timestamptz, 'mail')`, [iso(T0 + 100_000)])).toHaveLength(2);
  });

  it('a delay under float8\'s range waits no time: its nack settles, and claims of any queue go on', async () => {
    await sql(`select jobs.create_queue('other')`);
    const tiny = await one(`select jobs.publish('t', null, timeout_seconds => 10, retry_delay => 1e-400, retry_backoff => 'fixed')::text as id`);
    await one(`select jobs.publish('t', null, queue => 'other')::text as id`);
    expect(await sql(`select job_id from jobs.consume(10, $1::timestamptz)`, [iso(T0)])).toHaveLength(1);
    // The lease passes: the next claim, of another queue, expires it first.
    expect(await sql(`select job_id from jobs.consume(10, $1::timestamptz, 'other')`, [iso(T0 + 100_000)])).toHaveLength(1);
    expect(await waits([tiny], T0)).toEqual({ [tiny]: 10 });
    expect((await claimAndNack('default', T0 + 200_000))[tiny]).toBe(0);
  });

  it('publish_arrays takes one policy per job; a plain job of the same call has none', async () => {
    await sql(`select jobs.create_queue('mail', retry_delay => 10, retry_backoff => 'fixed')`);
    const ids = (await sql<{ ids: string[] }>(
      `select jobs.publish_arrays(array['t', 't', 't'], max_retries => array[3, 3, 3], queue => 'mail',
                                  retry_delays => array[30, null, 0], retry_backoffs => array['fixed', null, 'fixed'])::text[] as ids`))[0]!.ids;
    expect(await policy(ids[0]!)).toEqual({ delay: 30, backoff: false, max: null });
    expect(await policy(ids[1]!)).toEqual({ delay: null, backoff: null, max: null });
    const w = await claimAndNack('mail', T0);
    expect([w[ids[0]!], w[ids[1]!], w[ids[2]!]]).toEqual([30, 10, 0]);
  });

  it('bad values are refused with PD007 naming the field (and the bulk job), writing nothing', async () => {
    const bad: [string, string, RegExp][] = [
      ['retry_delay => -1', 'retry_delay', /retry_delay: must be 0 to 86400 seconds/],
      ["retry_delay => 'NaN'", 'retry_delay', /retry_delay: must be 0 to 86400 seconds/],
      ["retry_backoff => 'linear'", 'retry_backoff', /retry_backoff: must be 'exponential' or 'fixed'/],
      ['retry_delay_max => 604801', 'retry_delay_max', /retry_delay_max: must be 1 to 604800 seconds/],
      ['retry_delay_max => 2', 'retry_delay_max', /retry_delay_max: must be at least the retry delay \(5 seconds\), got 2/],
      ['retry_delay => 20, retry_delay_max => 15', 'retry_delay_max', /must be at least the retry delay \(20 seconds\)/],
    ];
    for (const [args, column, message] of bad) {
      await expect(sql(`select jobs.publish('t', null, ${args})`), args).rejects.toMatchObject({ code: 'PD007', column, message: expect.stringMatching(message) });
    }
    const bulk: [string, string][] = [
      ['retry_delays => array[1, 90000]', 'jobs[2].retry_delay'],
      ["retry_backoffs => array[null, 'linear']", 'jobs[2].retry_backoff'],
      ['retry_delay_maxes => array[null, 0]', 'jobs[2].retry_delay_max'],
      ['retry_delays => array[1, 20], retry_delay_maxes => array[5, 10]', 'jobs[2].retry_delay_max'],
      ['retry_delays => array[1]', 'jobs'],
    ];
    for (const [args, column] of bulk) {
      await expect(sql(`select jobs.publish_arrays(array['t', 't'], ${args})`), args).rejects.toMatchObject({ code: /^PD0(07|17)$/, column });
    }
    expect(await sql('select 1 from jobs.job_queue')).toEqual([]);
  });

  it("redrive keeps the job's policy, and so does its dead letter unless the dead-letter queue has one", async () => {
    await sql(`select jobs.create_queue('dead')`);
    await sql(`select jobs.create_queue('dead_own', retry_delay => 60, retry_backoff => 'fixed')`);
    await sql(`select jobs.create_queue('mail', retry_delay => 10, retry_backoff => 'fixed', dead_letter => 'dead')`);
    await sql(`select jobs.create_queue('mail2', dead_letter => 'dead_own')`);
    const id = await one(`select jobs.publish('t', null, max_retries => 0, queue => 'mail',
                                              retry_delay => 30, retry_backoff => 'fixed', retry_delay_max => 40)::text as id`);
    const id2 = await one(`select jobs.publish('t', null, max_retries => 0, queue => 'mail2',
                                               retry_delay => 30, retry_backoff => 'fixed')::text as id`);
    await claimAndNack('mail', T0);
    await claimAndNack('mail2', T0);
    expect(await sql(`select status from jobs.job where job_id = $1`, [id])).toEqual([{ status: 'failure' }]);
    expect(await policy(id)).toEqual({ delay: 30, backoff: false, max: 40 });
    const letters = await sql<{ queue: string; delay: number | null; backoff: boolean | null; max: number | null }>(
      `select queue, retry_delay::float8 as delay, retry_backoff as backoff, retry_delay_max::float8 as max
       from jobs.job_queue order by queue`);
    expect(letters).toEqual([{ queue: 'dead', delay: 30, backoff: false, max: 40 },
                             { queue: 'dead_own', delay: null, backoff: null, max: null }]);
    await sql(`truncate jobs.job_queue`);

    expect((await sql<{ n: number }>(`select jobs.redrive(job_ids => array[$1::bigint]) as n`, [id]))[0]!.n).toBe(1);
    expect(await policy(id)).toEqual({ delay: 30, backoff: false, max: 40 });
    await sql(`update jobs.job_queue set max_retries = 3 where job_id = $1`, [id]);
    expect((await claimAndNack('mail', T0 + 86_400_000))[id]).toBe(30);
  });
});

describe('TypeScript', () => {
  it('publish and publishBulk store it per job; getJob shows it; a nack waits it over the queue\'s', async () => {
    await queue.queues.create('mail', { retryDelaySeconds: 10, retryBackoff: false });
    const single = await queue.publish('t', null, { queue: 'mail', maxRetries: 3, retryDelaySeconds: 30, retryBackoff: false,
                                                    retryDelayMaxSeconds: 600 });
    const [a, b, c] = await queue.publishBulk([
      { task: 't', maxRetries: 3, retryDelaySeconds: 45, retryBackoff: false },
      { task: 't', maxRetries: 3 },
      { task: 't', maxRetries: 3, retryBackoff: true },
    ], 'mail');
    expect(await queue.getJob(single)).toMatchObject({ retryDelaySeconds: 30, retryBackoff: false, retryDelayMaxSeconds: 600 });
    expect(await queue.getJob(b!)).toMatchObject({ retryDelaySeconds: null, retryBackoff: null, retryDelayMaxSeconds: null });
    expect(await policy(c!)).toEqual({ delay: null, backoff: true, max: null });
    const w = await claimAndNack('mail', T0);
    expect([w[single], w[a!], w[b!]]).toEqual([30, 45, 10]);
    // Only 'exponential' set: a policy of its own (base 5: retry 1 waits 2.5 to 5 s), not the queue's fixed 10.
    expect(w[c!]).toBeLessThanOrEqual(5);
  });

  it('bad values are refused before any statement, naming the option', async () => {
    await expectRefusedBeforeAnyStatement([
      [{ retryDelaySeconds: -1 }, 'options.retryDelaySeconds', /must be 0 or more/],
      [{ retryDelaySeconds: 86401 }, 'options.retryDelaySeconds', /at most 86400/],
      [{ retryBackoff: 'fixed' }, 'options.retryBackoff', /must be a boolean/],
      [{ retryDelayMaxSeconds: 0 }, 'options.retryDelayMaxSeconds', /at least 1/],
      [{ retryDelayMaxSeconds: 2 }, 'options.retryDelayMaxSeconds', /at least the retry delay \(5 seconds\), got 2/],
      [{ retryDelaySeconds: 20, retryDelayMaxSeconds: 15 }, 'options.retryDelayMaxSeconds', /at least the retry delay \(20 seconds\)/],
    ]);
  });
});

describe('HTTP and CLI', () => {
  const post = postJobsTo(queue);

  it('POST /jobs takes the policy per job (one, or a bulk); bad values answer 400 naming the field', async () => {
    const one = await post({ task: 't', retryDelaySeconds: 30, retryBackoff: false, retryDelayMaxSeconds: 60 });
    expect(one.status).toBe(201);
    expect(await policy(one.body.id)).toEqual({ delay: 30, backoff: false, max: 60 });
    const many = await post({ jobs: [{ task: 't' }, { task: 't', retryDelaySeconds: 12, retryBackoff: false }] });
    expect(many.status).toBe(201);
    expect(await policy(many.body.ids[0])).toEqual({ delay: null, backoff: null, max: null });
    expect(await policy(many.body.ids[1])).toEqual({ delay: 12, backoff: false, max: null });
    expect((await claimAndNack('default', T0))[many.body.ids[1]]).toBe(12);

    const bad: [unknown, string][] = [
      [{ task: 't', retryDelaySeconds: -1 }, 'retryDelaySeconds'],
      [{ task: 't', retryBackoff: 'fixed' }, 'retryBackoff'],
      [{ task: 't', retryDelayMaxSeconds: 2 }, 'retryDelayMaxSeconds'],
      [{ jobs: [{ task: 't' }, { task: 't', retryDelaySeconds: 20, retryDelayMaxSeconds: 10 }] }, 'jobs[1].retryDelayMaxSeconds'],
    ];
    for (const [body, field] of bad) {
      const r = await post(body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body, JSON.stringify(body)).toMatchObject({ error: { field } });
    }
  });

  it('pgdrain publish --retry-delay --retry-backoff --retry-delay-max; bad ones exit 2 naming the flag', async () => {
    const r = await cli('publish', 't', '--retry-delay', '30', '--retry-backoff', 'fixed', '--retry-delay-max', '90');
    expect(r).toMatchObject({ code: 0 });
    const id = r.stdout.trim();
    expect(await policy(id)).toEqual({ delay: 30, backoff: false, max: 90 });
    expect((await claimAndNack('default', T0))[id]).toBe(30);

    const bad: [string[], RegExp][] = [
      [['--retry-delay', '-1'], /--retry-delay: must be a number of seconds from 0 to 86400/],
      [['--retry-delay-max', '0'], /--retry-delay-max: must be a number of seconds from 1 to 604800/],
      [['--retry-backoff', 'linear'], /--retry-backoff: must be one of exponential, fixed/],
      [['--retry-delay', '20', '--retry-delay-max', '15'], /--retry-delay-max: must be at least the retry delay \(20 seconds\)/],
    ];
    for (const [flags, message] of bad) {
      const x = await cli('publish', 't', ...flags);
      expect(x.code, flags.join(' ')).toBe(2);
      expect(x.stderr, flags.join(' ')).toMatch(message);
    }
    expect(await sql('select job_id::text as id from jobs.job_queue')).toEqual([{ id }]);
  });
});
