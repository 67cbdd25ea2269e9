// Checks only the database makes, reached through the TS publish calls, name
// the option as the caller wrote it (options.dedupeKey, jobs[1].serialKey),
// as the TS checks do, not the SQL parameter (dedupe_key, serial_keys); the
// SQL name stays on the error's cause. HTTP answers the same names less
// `options.` (src/publish.ts asOption, src/http/app.ts asSent).
import { beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue, PgDrainError } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });
const TOKEN = 'test-token-0123456789abcdef';
const app = createApp({ queue, token: TOKEN });
const post = async (body: unknown) => {
  const res = await app.request('/jobs', { method: 'POST', body: JSON.stringify(body),
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' } });
  return { status: res.status, error: ((await res.json()) as { error?: { field?: string; message?: string } }).error };
};
const rejection = (p: Promise<unknown>) => p.then(() => { throw new Error('published'); }, (e: unknown) => e as PgDrainError);
const manyKeys = Array.from({ length: 501 }, (_, i) => ({ task: 't', serialKey: `k${i}` }));

beforeEach(async () => {
  await db.sql('truncate jobs.job_queue, jobs.job');
});

describe('a database check reached through publish', () => {
  it('names the TS option, keeping the SQL name on its cause', async () => {
    const e = await rejection(queue.publish('t', {}, { dependsOn: ['424242'] }));
    expect(e).toMatchObject({ code: 'invalid_argument', field: 'options.dependsOn',
      message: expect.stringMatching(/^options\.dependsOn: job 424242 does not exist/) });
    expect(e.cause).toMatchObject({ code: 'PD013', column: 'depends_on' });
  });

  it('a full queue names options.queue when the caller gave one, else queue (the default queue)', async () => {
    await db.sql(`select jobs.create_queue('default', max_size => 1), jobs.create_queue('tiny', max_size => 1)`);
    try {
      await queue.publish('t', {});
      await queue.publish('t', {}, { queue: 'tiny' });
      expect(await rejection(queue.publish('t', {}))).toMatchObject({ code: 'queue_full', field: 'queue' });
      expect(await rejection(queue.publish('t', {}, { queue: 'tiny' }))).toMatchObject({ code: 'queue_full', field: 'options.queue' });
    } finally {
      await db.sql(`select jobs.create_queue('default', max_size => null)`);
      await db.sql('truncate jobs.job_queue');
      await db.sql(`delete from jobs.queue where name = 'tiny'`);
    }
  });

  it('replacing a job of another serial key names options.serialKey', async () => {
    await queue.publish('t', {}, { dedupeKey: 'd', serialKey: 'a' });
    const e = await rejection(queue.publish('t', {}, { dedupeKey: 'd', dedupeMode: 'replace', serialKey: 'b' }));
    expect(e).toMatchObject({ field: 'options.serialKey', message: expect.stringMatching(/^options\.serialKey: must be the serial_key of job/) });
  });

  it('an unknown queue names options.queue; publishBulk\'s queue argument stays queue', async () => {
    expect(await rejection(queue.publish('t', {}, { queue: 'nowhere' }))).toMatchObject({ field: 'options.queue' });
    expect(await rejection(queue.publishBulk([{ task: 't' }], 'nowhere'))).toMatchObject({ field: 'queue' });
  });

  it('publishBulk: too many serial keys names serialKey; a job\'s field keeps its index, from 0', async () => {
    expect(await rejection(queue.publishBulk(manyKeys))).toMatchObject({ code: 'invalid_argument', field: 'serialKey',
      message: expect.stringMatching(/^serialKey: must hold at most 500 distinct keys in one bulk publish/) });
    // An SQL task no one allowed: only the database knows (sql/0025).
    expect(await rejection(queue.publishBulk([{ task: 't' }, { task: 'sql:nope', serialKey: 's' }])))
      .toMatchObject({ field: 'jobs[1].task' });
  });

  it('over HTTP, the same names as the request sent them', async () => {
    expect(await post({ task: 't', dependsOn: ['424242'] })).toMatchObject({ status: 400, error: { field: 'dependsOn' } });
    expect(await post({ jobs: manyKeys })).toMatchObject({ status: 400, error: { field: 'serialKey',
      message: expect.stringMatching(/^serialKey: must hold at most 500/) } });
  });
});
