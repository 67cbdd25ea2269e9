// POST /drain whose drain's last settle failed (the database gone as its
// handlers returned) answered 503 { error: { code, message, field } } only:
// its message hides a database error's words (and withUnrecorded's with
// them), so its caller could not tell that outcomes went unrecorded, nor how
// many. The answer now carries PgDrainError.unrecorded { total, succeeded,
// failed, released }. On a real PostgreSQL, its database cut as in
// settle-unrecorded.test.ts.
import pg from 'pg';
import { afterAll, expect, inject, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { createApp, type ErrorBody } from '../src/http/index.js';
import { errorAnswer } from '../src/http/errors.js';
import { createQueue, PgDrainError, type JobContext } from '../src/index.js';
import { testDb } from './support/db.js';
import { until, withAppName } from './support/drain-process.js';

const db = await testDb();
const admin = new pg.Client({ connectionString: inject('serverUrl') });
await admin.connect();
afterAll(async () => {
  await admin.query(`alter database ${db.name} allow_connections true`);
  await admin.end();
});
const TOKEN = 'http-drain-unrecorded-token-0123456789';

it("POST /drain's error answer says which outcomes its last settle could not record", async () => {
  const app = 'http-drain-unrecorded';
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const running: string[] = [];
  const queue = createQueue({
    driver: pgDriver(withAppName(db.url, app)),
    tasks: { work: async (body: { fail?: boolean }, ctx: JobContext) => {
      running.push(ctx.job.id);
      await gate;
      if (body.fail) throw new Error('it failed');
      return 'done';
    } },
  });
  await queue.publishBulk([{ task: 'work', body: {} }, { task: 'work', body: {} }, { task: 'work', body: { fail: true } }]);
  const server = createApp({ queue, token: TOKEN, onError: () => {} });
  try {
    const answered = server.request('/drain', { method: 'POST', body: JSON.stringify({ batchSize: 10, budgetSeconds: 120 }),
                                                headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' } });
    await until(async () => running.length === 3, 'every handler to run');
    await admin.query(`alter database ${db.name} allow_connections false`);
    await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1', [app]);
    open(); // their outcomes come with the database gone
    const res = await answered;
    expect(res.status).toBe(503);
    // Unfixed: { code, message: 'database unavailable', field: null }, no count.
    expect(await res.json() as ErrorBody).toEqual({ error: { code: 'database_unavailable', message: 'database unavailable', field: null,
                                                             unrecorded: { total: 3, succeeded: 2, failed: 1, released: 0 } } });
  } finally {
    await admin.query(`alter database ${db.name} allow_connections true`);
    await queue.close();
  }
});

// errorAnswer copied any error's `unrecorded` into the answer as it found it
// (spread: a string's characters, any extra field, counts of any type): only
// drain()'s four counts, whole numbers adding up, are now answered.
it("the error answer carries unrecorded only in drain()'s shape, and only its four counts", () => {
  const counts = { total: 3, succeeded: 2, failed: 1, released: 0 };
  const withCounts = (unrecorded: unknown) => Object.assign(new PgDrainError('database_unavailable', 'gone'), { unrecorded });
  expect(errorAnswer(withCounts(counts)).unrecorded).toEqual(counts);
  // Unfixed: { ...counts, dsn: … }, and for the string { 0: 'n', 1: 'o', … }.
  expect(errorAnswer(withCounts({ ...counts, dsn: 'postgres://u:secret@db/x' })).unrecorded).toEqual(counts);
  for (const odd of ['none', 7, [1, 2], { ...counts, total: '3' }, { ...counts, failed: -1 }, { ...counts, total: 4 },
                     { ...counts, released: 0.5 }, { total: 0 }]) {
    expect(errorAnswer(withCounts(odd))).not.toHaveProperty('unrecorded');
  }
  expect(errorAnswer(Object.assign(new Error('x'), { unrecorded: 'y' }), () => {})).toEqual(
    { status: 500, code: 'internal', message: 'internal error; the server log has the details', field: null, headers: {} });
});
