// A schedule's last_error is written by SQL, in SQL's words: its tick's
// publish to a full queue says "raise it with jobs.create_queue('small',
// max_size => ...)". `pgdrain schedule list` and the dashboard show it to
// readers of the CLI and of a browser: in the command's words, as their
// errors are (hint-calls.ts). Before, the SQL call, and the CLI cut the
// first line at 100 characters, before the hint. Ticks driven with `now`;
// dist/cli.mjs: `npm run build` first.
import { beforeAll, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const TOKEN = 'schedule-error-words-token-0123456789';
const HINT = 'raise it with pgdrain queue create small --max-size N (SQLSTATE PD010) at 2030-01-01 00:10:30+00';

beforeAll(async () => {
  await sql(`select jobs.create_queue('small', max_size => 1)`);
  await sql(`select jobs.publish('app.job', queue => 'small')`);
  await sql(`select jobs.schedule('s', '*/10 * * * *', 'tick.s', queue => 'small', runner => 'drains', now => '2030-01-01Z')`);
  await sql(`select jobs.publish_due_schedules('2030-01-01T00:10:30Z')`);
  // As stored: the SQL's words, for SQL's readers.
  expect((await sql<{ e: string }>(`select last_error as e from jobs.recurring`))[0]!.e)
    .toContain("raise it with jobs.create_queue('small', max_size => ...) (SQLSTATE PD010)");
});

it('pgdrain schedule list: the command, the hint not cut off', async () => {
  const list = await runCli(db.url, 'schedule', 'list');
  expect(list.code).toBe(0);
  expect(list.stdout.split('\n')[2]).toMatch(new RegExp(`^s\\s.*\\squeue: queue 'small' is full: .*; publish later or ${HINT.replace(/[()+]/g, '\\$&')}$`));
});

it("the dashboard's schedules: the command", async () => {
  const app = createApp({ queue: createQueue({ driver: db.driver, tasks: {} }), token: TOKEN });
  const res = await app.request('/dashboard', { headers: { Authorization: `Bearer ${TOKEN}` } });
  const text = await res.text();
  expect(res.status).toBe(200);
  expect(text).toContain(HINT);
  expect(text).not.toContain('jobs.create_queue');
});
