// `pgdrain drain`'s text report counts every claimed job: a job cancelled
// while it ran (`pgdrain cancel` from an admin; here its own handler asks)
// was left out of the line, so `2 claimed, 1 succeeded, 0 retried, 0 failed,
// 0 released` did not add up (--json had it as cancelled: 1).
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const TASKS = resolve('test/fixtures/self-cancel-tasks.mjs');

describe('the drain report line', () => {
  it('counts the jobs cancelled while they ran, so its counts add up to claimed', async () => {
    await db.sql(`select jobs.publish('selfCancel', '{}', timeout_seconds => 30)`);
    const r = await runCli(db.url, 'drain', '--tasks', TASKS, '--deadline', '60');
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(await db.sql(`select status::text from jobs.job`)).toEqual([{ status: 'cancelled' }]);
    // Unfixed: "drained: 1 claimed, 0 succeeded, 0 retried, 0 failed, 0 released, 0 skipped; …"
    expect(r.stdout).toMatch(/^drained: 1 claimed, 0 succeeded, 0 retried, 0 failed, 1 cancelled, 0 released, 0 skipped; stopped by empty/);
  });
});
