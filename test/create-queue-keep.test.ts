// jobs.create_queue on an existing queue changes only the arguments given
// (the PD010 hint's `create_queue(name, max_size => …)` keeps the defaults);
// one given as null clears it. Same for queues.create and `pgdrain queue create`.
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });
const cli = (...args: string[]) => runCli(db.url, ...args);

const settings = async (name = 'mail') => (await sql(`select max_size, default_timeout::text as timeout, default_priority as priority,
                                                           default_max_retries as max_retries, dead_letter, paused
                                                    from jobs.queue where name = $1`, [name]))[0];
const ALL = { max_size: 1000, timeout: '300', priority: 5, max_retries: 10, dead_letter: 'mail_dead', paused: true };

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
  await sql(`update jobs.queue set dead_letter = null`);
  await sql(`delete from jobs.queue where name <> 'default'`);
  await sql(`select jobs.create_queue('mail_dead')`);
  await sql(`select jobs.create_queue('mail', max_size => 1000, default_timeout => 300, default_priority => 5,
                                      default_max_retries => 10, dead_letter => 'mail_dead')`);
  await sql(`select jobs.pause_queue('mail')`);
});

describe('create_queue on an existing queue', () => {
  it('SQL: left out keeps, given changes, null clears; a new queue takes nulls for what is left out', async () => {
    await sql(`select jobs.create_queue('mail')`);
    expect(await settings()).toEqual(ALL);
    // What the PD010 hint says to run.
    await sql(`select jobs.create_queue('mail', max_size => 2000)`);
    expect(await settings()).toEqual({ ...ALL, max_size: 2000 });
    await sql(`select jobs.create_queue('mail', 3000)`); // positional, as before
    expect(await settings()).toEqual({ ...ALL, max_size: 3000 });
    await sql(`select jobs.create_queue('mail', default_priority => -1, default_max_retries => 0)`);
    expect(await settings()).toEqual({ ...ALL, max_size: 3000, priority: -1, max_retries: 0 });
    await sql(`select jobs.create_queue('mail', max_size => null, default_timeout => null)`);
    expect(await settings()).toEqual({ ...ALL, max_size: null, timeout: null, priority: -1, max_retries: 0 });
    await sql(`select jobs.create_queue('mail', null, null, null, null, null)`);
    expect(await settings()).toEqual({ max_size: null, timeout: null, priority: null, max_retries: null, dead_letter: null,
                                       paused: true });
    await sql(`select jobs.create_queue('fresh', default_timeout => 7)`);
    expect(await settings('fresh')).toEqual({ max_size: null, timeout: '7', priority: null, max_retries: null,
                                              dead_letter: null, paused: false });
  });

  it('a full queue resized as the PD010 hint says keeps its job defaults', async () => {
    await sql(`select jobs.create_queue('mail', max_size => 1)`);
    await sql(`select jobs.publish('t', queue => 'mail')`);
    const e = await sql(`select jobs.publish('t', queue => 'mail')`).then(() => null, (x: { code: string; message: string }) => x);
    expect(e).toMatchObject({ code: 'PD010', message: expect.stringContaining(`jobs.create_queue('mail', max_size => ...)`) });
    await sql(`select jobs.create_queue('mail', max_size => 2)`);
    await sql(`select jobs.publish('t', queue => 'mail')`);
    expect(await sql(`select timeout::text, priority, max_retries from jobs.job_queue order by job_id desc limit 1`))
      .toEqual([{ timeout: '300', priority: 5, max_retries: 10 }]);
  });

  it('checks only what is given, and still names the field', async () => {
    await expect(sql(`select jobs.create_queue('mail', max_size => 0)`)).rejects.toMatchObject({ code: 'PD015', column: 'max_size' });
    await expect(sql(`select jobs.create_queue('mail', default_max_retries => -1)`))
      .rejects.toMatchObject({ code: 'PD003', column: 'default_max_retries' });
    expect(await settings()).toEqual(ALL);
  });

  it('TypeScript: queues.create sends only the options given; null clears', async () => {
    await queue.queues.create('mail');
    expect(await settings()).toEqual(ALL);
    await queue.queues.create('mail', { maxSize: 5, priority: undefined });
    expect(await settings()).toEqual({ ...ALL, max_size: 5 });
    await queue.queues.create('mail', { timeoutSeconds: null, maxRetries: null, deadLetter: null });
    expect(await settings()).toEqual({ ...ALL, max_size: 5, timeout: null, max_retries: null, dead_letter: null });
    await expect(queue.queues.create('mail', { maxSize: 0 })).rejects.toMatchObject({ name: 'ValidationError', field: 'options.maxSize' });
    await expect(queue.queues.create('mail', { priority: 1.5 })).rejects.toMatchObject({ name: 'ValidationError', field: 'options.priority' });
  });

  it('CLI: queue create changes only the flags given; --no-X clears X', async () => {
    expect(await cli('queue', 'create', 'mail', '--max-size', '7')).toMatchObject({ code: 0 });
    expect(await settings()).toEqual({ ...ALL, max_size: 7 });
    expect(await cli('queue', 'create', 'mail', '--no-max-size', '--no-timeout', '--priority', '2')).toMatchObject({ code: 0 });
    expect(await settings()).toEqual({ ...ALL, max_size: null, timeout: null, priority: 2 });
    const bad = await cli('queue', 'create', 'mail', '--max-size', '0');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--max-size/);
  });
});
