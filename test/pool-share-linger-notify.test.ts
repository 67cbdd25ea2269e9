// A lingering drain that hears a NOTIFY for its queue while the other drains
// on its pool hold every handler connection waits for one to come free: it
// took the NOTIFY's wake as a reason to look again, found no connection free
// and waited again, which the NOTIFY heard (kept until its next claim)
// answered at once: a loop of microtasks that starved the process until the
// lingering drain's deadline (no timer, no I/O: the other drain's handler
// could not end), so it never claimed the job it heard of. In a process of
// its own (npm run build first): the loop would starve the test's timers too.
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';

const db = await testDb();

it('a lingering drain that hears a NOTIFY with its pool full waits for a connection, and both drains end', async () => {
  await db.sql(`select jobs.create_queue('idle'), jobs.create_queue('busy')`);
  const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
    execFile(process.execPath, [resolve('test/fixtures/linger-full-pool.mjs')], { env: { ...process.env, DATABASE_URL: db.url }, timeout: 30_000 },
      (error, stdout, stderr) => done({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr }));
  });
  expect(run.stderr).toBe('');
  expect(run.code).toBe(0);
  expect(JSON.parse(run.stdout)).toEqual({ lingering: { claimed: 1, succeeded: 1 }, busy: { claimed: 1, succeeded: 1 } });
});
