// SnoozeJob and ctx.rateLimit through the CLI (dist/cli.mjs: run `npm run
// build` first), with a tasks module that imports the built library.
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const HOUR = 3_600_000;

it('a tasks module\'s SnoozeJob and ctx.rateLimit work in `pgdrain drain`', async () => {
  const [snoozed] = await sql<{ id: string }>(`select jobs.publish('later.snooze', $1, max_retries => 0)::text as id`,
                                              [JSON.stringify({ delayMs: HOUR })]);
  await sql(`select jobs.publish('api.call', max_retries => 0) from generate_series(1, 5)`);
  const before = Date.now();
  const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
    execFile(process.execPath, [resolve('dist/cli.mjs'), 'drain', '--tasks', resolve('test/fixtures/snooze-rate-limit-tasks.mjs'),
                                '--deadline', '120', '--json'],
             { env: { ...process.env, DATABASE_URL: db.url }, timeout: 60_000 },
             (error, stdout, stderr) => done({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr }));
  });
  const after = Date.now();
  expect(run).toMatchObject({ code: 0 });
  expect(JSON.parse(run.stdout)).toMatchObject({ claimed: 6, succeeded: 2, released: 4, retried: 0, failed: 0 });
  const rows = await sql<{ job_id: string; task: string; attempt: number; scheduled_at: Date }>(
    'select job_id::text, task, attempt, scheduled_at from jobs.job_queue order by job_id');
  expect(rows.map((r) => [r.task, r.attempt])).toEqual([['later.snooze', 0], ['api.call', 0], ['api.call', 0], ['api.call', 0]]);
  const s = rows.find((r) => r.job_id === snoozed!.id)!;
  expect(s.scheduled_at.getTime()).toBeGreaterThanOrEqual(before + HOUR);
  expect(s.scheduled_at.getTime()).toBeLessThanOrEqual(after + HOUR);
  // 2 per hour: the next token 30 minutes after the second was taken.
  for (const r of rows.filter((x) => x.task === 'api.call')) {
    expect(r.scheduled_at.getTime()).toBeGreaterThanOrEqual(before + HOUR / 2 - 5);
    expect(r.scheduled_at.getTime()).toBeLessThanOrEqual(after + HOUR / 2 + 5);
  }
});
