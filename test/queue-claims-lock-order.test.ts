// jobs.create_queue changing max_running or group_concurrency writes the
// queue's row, then waits for the claims in flight (jobs.claim_settings'
// lock, alone). A transaction that claimed from the queue (its shared lock
// held to commit) and then wrote the row (jobs.pause_queue, jobs.create_queue
// of another setting) waited for that change while it waited for them:
// 40P01, one rolled back. Now the change tries the claims' lock under the
// row and, held, waits for the claims without the row (jobs.lock_queue_claims).
// Forced interleavings, no timing: each step waits until a session is seen
// waiting for another (pg_blocking_pids).
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { blockedBy, lockSessions, outcome } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.running_slot');
  await sql(`delete from jobs.queue where name <> 'default'`);
  await sql(`select jobs.create_queue('q')`);
  await sql(`select jobs.publish('q.run', queue => 'q')`);
});

const LIMITS = [`max_running => 2`, `group_concurrency => 2`];
const WRITES = {
  'jobs.pause_queue': [`select jobs.pause_queue('q')::text as r`, [{ r: 'true' }]],
  'jobs.create_queue (a default)': [`select jobs.create_queue('q', default_priority => 3)::text as r`, [{ r: '' }]],
} as const;

describe('a claim\'s transaction that then writes the queue\'s row, beside a change of its limits', () => {
  for (const limit of LIMITS) {
    for (const [write, [text, answer]] of Object.entries(WRITES)) {
      it(`${limit}; then ${write}: both done, the transaction first`, async () => {
        const app = await session();
        await app.query('begin');
        expect((await app.query(`select job_id from jobs.consume(1, queue => 'q')`)).rows).toHaveLength(1);
        const admin = await session();
        const changed = outcome(admin.query(`select jobs.create_queue('q', ${limit})::text as r`));
        await blockedBy(sql, admin, app);  // for the claims in flight
        expect(await outcome(app.query(text))).toEqual(answer);  // 'error 40P01' on one side before
        await app.query('commit');
        expect(await changed).toEqual([{ r: '' }]);
        const [name, value] = limit.split(' => ');
        expect(await sql(`select ${name}, default_priority, paused from jobs.queue where name = 'q'`))
          .toEqual([{ [name!]: Number(value), default_priority: write.startsWith('jobs.create') ? 3 : null,
                      paused: write === 'jobs.pause_queue' }]);
      });
    }
  }

  // A bound set on the unbounded queue too: jobs.lock_queue_writers took the row FOR UPDATE first, which
  // jobs.lock_queue_claims' subtransaction could not let go (40P01 as before).
  for (const limit of LIMITS) {
    it(`${limit} and max_size on an unbounded queue; then jobs.pause_queue: both done, the transaction first`, async () => {
      const app = await session();
      await app.query('begin');
      expect((await app.query(`select job_id from jobs.consume(1, queue => 'q')`)).rows).toHaveLength(1);
      const admin = await session();
      const changed = outcome(admin.query(`select jobs.create_queue('q', max_size => 10, ${limit})::text as r`));
      await blockedBy(sql, admin, app);  // for the claims in flight
      expect(await outcome(app.query(`select jobs.pause_queue('q')::text as r`))).toEqual([{ r: 'true' }]);  // 40P01 before
      await app.query('commit');
      expect(await changed).toEqual([{ r: '' }]);
      const [name, value] = limit.split(' => ');
      expect(await sql(`select ${name}, max_size, paused from jobs.queue where name = 'q'`))
        .toEqual([{ [name!]: Number(value), max_size: 10, paused: true }]);
    });
  }
});
