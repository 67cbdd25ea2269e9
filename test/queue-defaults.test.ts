// Per-queue job defaults: jobs.create_queue(default_timeout, default_priority,
// default_max_retries), queues.create(name, { timeoutSeconds, priority,
// maxRetries }) and `pgdrain queue create --timeout --priority --max-retries`.
// A job published to the queue without a value takes the queue's.
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });

type Options = { timeout: string; priority: number; max_retries: number };
/** The options of the job with this id. */
async function optionsOf(id: string | number): Promise<Options> {
  return (await sql<Options>(`select timeout::text, priority, max_retries from jobs.job_queue where job_id = $1`, [id]))[0]!;
}
async function publishSql(text: string, params?: unknown[]): Promise<string> {
  return (await sql<{ id: string }>(`select ${text}::text as id`, params))[0]!.id;
}
const sqlError = (text: string) => sql(text).then(() => null, (e: { code: string; column: string; message: string }) => e);

const cli = (...args: string[]) => runCli(db.url, ...args);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency, jobs.recurring');
  await sql(`delete from jobs.queue where name <> 'default'`);
});

const GLOBAL: Options = { timeout: '60', priority: 0, max_retries: 3 };
const MAIL: Options = { timeout: '300', priority: 5, max_retries: 10 };

describe('a queue with defaults', () => {
  beforeEach(async () => {
    await sql(`select jobs.create_queue('mail', default_timeout => 300, default_priority => 5, default_max_retries => 10)`);
  });

  it('a job published to it without options gets them; explicit options win, one by one', async () => {
    expect(await optionsOf(await publishSql(`jobs.publish('t', queue => 'mail')`))).toEqual(MAIL);
    expect(await optionsOf(await publishSql(`jobs.publish('t', queue => 'mail', timeout_seconds => 7)`)))
      .toEqual({ ...MAIL, timeout: '7' });
    expect(await optionsOf(await publishSql(`jobs.publish('t', queue => 'mail', priority => -2, max_retries => 0)`)))
      .toEqual({ ...MAIL, priority: -2, max_retries: 0 });
    // Other queues keep the global defaults.
    expect(await optionsOf(await publishSql(`jobs.publish('t')`))).toEqual(GLOBAL);
    // TypeScript's publish sends null for what it was not given.
    expect(await optionsOf(await queue.publish('t', null, { queue: 'mail' }))).toEqual(MAIL);
    expect(await optionsOf(await queue.publish('t', null, { queue: 'mail', maxRetries: 1 }))).toEqual({ ...MAIL, max_retries: 1 });
  });

  it('bulk publishes (publish_arrays, publish_bulk, publishBulk) fill each null from the queue', async () => {
    const ids = (await sql<{ ids: string[] }>(`select jobs.publish_arrays('{t,t}', timeouts => '{null,9}', priorities => '{1,null}',
                                                 queue => 'mail')::text[] as ids`))[0]!.ids;
    expect(await optionsOf(ids[0]!)).toEqual({ ...MAIL, priority: 1 });
    expect(await optionsOf(ids[1]!)).toEqual({ ...MAIL, timeout: '9' });
    const bulk = await sql<{ id: string }>(`select id::text from jobs.publish_bulk(array[('t', null, null, null, null, 2)::jobs.bulk_job],
                                                                            queue => 'mail') id`);
    expect(await optionsOf(bulk[0]!.id)).toEqual({ ...MAIL, max_retries: 2 });
    const ts = await queue.publishBulk([{ task: 't' }, { task: 't', timeoutSeconds: 1.5 }], 'mail');
    expect(await optionsOf(ts[0]!)).toEqual(MAIL);
    expect(await optionsOf(ts[1]!)).toEqual({ ...MAIL, timeout: '1.5' });
    const plain = await queue.publishBulk([{ task: 't' }]);
    expect(await optionsOf(plain[0]!)).toEqual(GLOBAL);
  });

  it('create_queue again changes them for later publishes only; null clears one (the global default again)', async () => {
    const before = await publishSql(`jobs.publish('t', queue => 'mail')`);
    await queue.queues.create('mail', { timeoutSeconds: 20, maxSize: 100, priority: null });
    const after = await publishSql(`jobs.publish('t', queue => 'mail')`);
    expect(await optionsOf(before)).toEqual(MAIL);
    expect(await optionsOf(after)).toEqual({ ...MAIL, timeout: '20', priority: GLOBAL.priority });
    expect(await sql(`select max_size, default_timeout::text, default_priority, default_max_retries, paused
                      from jobs.queue where name = 'mail'`))
      .toEqual([{ max_size: 100, default_timeout: '20', default_priority: null, default_max_retries: 10, paused: false }]);
    await sql(`select jobs.create_queue('mail', default_timeout => null, default_max_retries => null)`);
    expect(await optionsOf(await publishSql(`jobs.publish('t', queue => 'mail')`))).toEqual(GLOBAL);
  });

  it('a job replaced by a publish (dedupe_mode replace) takes the defaults of its queue', async () => {
    const id = await publishSql(`jobs.publish('t', timeout_seconds => 1, priority => 1, max_retries => 1, queue => 'mail', dedupe_key => 'k')`);
    expect(await publishSql(`jobs.publish('u', queue => 'mail', dedupe_key => 'k', dedupe_mode => 'replace')`)).toBe(id);
    expect(await optionsOf(id)).toEqual(MAIL);
    // Moved to the default queue, it takes the default queue's (global) ones.
    expect(await publishSql(`jobs.publish('u', dedupe_key => 'k', dedupe_mode => 'replace')`)).toBe(id);
    expect(await optionsOf(id)).toEqual(GLOBAL);
  });

  it("a schedule's tick on the queue gets them, and the schedule's own options win", async () => {
    await sql(`select jobs.schedule('plain', '* * * * *', 'tick.a', queue => 'mail', runner => 'drains',
                                    now => now() - interval '5 minutes')`);
    await sql(`select jobs.schedule('own', '* * * * *', 'tick.b', queue => 'mail', runner => 'drains', priority => 9,
                                    now => now() - interval '5 minutes')`);
    expect(await sql(`select jobs.publish_due_schedules() as n`)).toEqual([{ n: 2 }]);
    expect(await sql(`select task, timeout::text, priority, max_retries from jobs.job_queue order by task`)).toEqual([
      { task: 'tick.a', ...MAIL }, { task: 'tick.b', ...MAIL, priority: 9 }]);
    expect(await sql(`select last_error from jobs.recurring`)).toEqual([{ last_error: null }, { last_error: null }]);
  });
});

describe('bad defaults are refused, naming the argument, and change nothing', () => {
  it('SQL: the publish bounds and PD codes', async () => {
    await sql(`select jobs.create_queue('q', default_max_retries => 4)`);
    for (const [call, code, column] of [
      [`default_timeout => 0`, 'PD002', 'default_timeout'],
      [`default_timeout => 86401`, 'PD002', 'default_timeout'],
      [`default_priority => 1000001`, 'PD004', 'default_priority'],
      [`default_max_retries => -1`, 'PD003', 'default_max_retries'],
      [`default_max_retries => 1001`, 'PD003', 'default_max_retries'],
    ] as const) {
      const e = await sqlError(`select jobs.create_queue('q', ${call})`);
      expect(e, call).toMatchObject({ code, column });
      expect(e!.message, call).toMatch(new RegExp(`^${column}: must be`));
    }
    expect(await sql(`select default_max_retries from jobs.queue where name = 'q'`)).toEqual([{ default_max_retries: 4 }]);
  });

  it('TypeScript: options.timeoutSeconds, options.priority, options.maxRetries, unknown options', async () => {
    for (const [options, field] of [
      [{ timeoutSeconds: 0 }, 'options.timeoutSeconds'],
      [{ priority: 1.5 }, 'options.priority'],
      [{ maxRetries: 1001 }, 'options.maxRetries'],
      [{ maxSize: 0 }, 'options.maxSize'],
      [{ retryLimit: 3 }, 'options'],
    ] as const) {
      await expect(queue.queues.create('q', options as object), field).rejects.toMatchObject({ code: 'invalid_argument', field });
    }
    expect(await sql(`select name from jobs.queue where name = 'q'`)).toEqual([]);
  });

  it('CLI: queue create --timeout --priority --max-retries set them; a bad one exits 2 naming the flag', async () => {
    const ok = await cli('queue', 'create', 'cq', '--max-size', '50', '--timeout', '2.5', '--priority', '-3', '--max-retries', '0');
    expect(ok).toMatchObject({ code: 0, stderr: '' });
    expect(await sql(`select max_size, default_timeout::text, default_priority, default_max_retries from jobs.queue where name = 'cq'`))
      .toEqual([{ max_size: 50, default_timeout: '2.5', default_priority: -3, default_max_retries: 0 }]);
    for (const [flag, value] of [['--timeout', '0'], ['--timeout', 'soon'], ['--priority', '1.5'], ['--max-retries', '-1']] as const) {
      const bad = await cli('queue', 'create', 'cq', flag, value);
      expect(bad.code, `${flag} ${value}`).toBe(2);
      expect(bad.stderr, `${flag} ${value}`).toMatch(new RegExp(`^pgdrain: ${flag}: must be .*, got "${value}"$`, 'm'));
    }
    expect(await sql(`select default_timeout::text from jobs.queue where name = 'cq'`)).toEqual([{ default_timeout: '2.5' }]);
  });
});
