// A claim's wait for a bounded queue's tick (jobs.tick_wait_bound, sql/0040)
// stays under half the session's statement_timeout, as it stays under its
// lock_timeout: a role's statement_timeout (common on managed databases)
// shorter than the wait cancelled the whole claim (57014, the drain's claim
// failed) where the wait's own end leaves the tick due and the claim answers.
// Claims have failed to publish the tick here for 10 minutes, so the wait
// has grown to 5 s (ten times the default 500 ms). On a real PostgreSQL.
import { expect, it } from 'vitest';
import { testDb, withClient } from './support/db.js';
import { lockSessions, outcome } from './support/lock-sessions.js';
import { minute, T0 } from './support/schedule-clock.js';

const db = await testDb();
const session = lockSessions(db.url);

it('a first claim under a statement_timeout shorter than the wait answers, its job claimed, the tick left due', async () => {
  await db.sql(`select jobs.create_queue('capped', max_size => 100)`);
  await db.sql(`select jobs.schedule('sweep', '*/10 * * * *', 'sweep.run', queue => 'capped', now => $1)`, [T0]);
  await db.sql(`insert into jobs.tick_miss select name, next_run_at, next_run_at from jobs.recurring`);  // claims have failed since it came due
  const { id } = (await db.sql<{ id: string }>(`select jobs.publish('work', '{}', now => $1)::text as id`, [minute(1)]))[0]!;
  const [app, claim] = await Promise.all([session(), session()]);
  await claim.query(`set statement_timeout = '1s'`);
  await app.query('begin');
  await app.query(`select jobs.publish('sweep.run', '{"by":"app"}', queue => 'capped')`);
  const claimed = await outcome(claim.query(`select jobs.claim_json(1, now => $1)->'jobs'->>'id' as id`, [minute(20)]));
  await app.query('commit');
  expect(claimed).toEqual([{ id }]);
  expect(await db.sql(`select next_run_at, last_error from jobs.recurring`)).toEqual([{ next_run_at: new Date(minute(10)), last_error: null }]);
});

it('the bound is half of statement_timeout at most, the smallest of it, lock_timeout and the setting', async () => {
  await withClient(db.url, async (c) => {
    const bound = async (statementTimeout: string, lockTimeout: string, setting = '') => {
      // One statement, its timeout reset before it ends: PostgreSQL arms a
      // statement's timer at its start, so the settings made here only bind
      // the call beside them (a separate statement under '1ms' would be
      // cancelled on a loaded machine).
      return (await c.query<{ b: string }>(
        `select set_config('statement_timeout', $1, false), set_config('pgdrain.tick_wait_ms', $2, false),
                jobs.tick_wait_bound($3, interval '10 minutes') as b, set_config('statement_timeout', '0', false)`,
        [statementTimeout, setting, lockTimeout])).rows[0]!.b;
    };
    expect(await bound('0', '0')).toBe('5000ms');
    expect(await bound('1min', '0')).toBe('5000ms');
    expect(await bound('3s', '0')).toBe('1500ms');
    expect(await bound('3s', '1s')).toBe('1s');
    expect(await bound('3s', '0', '100')).toBe('1000ms');
    expect(await bound('1ms', '0')).toBe('1ms');
  });
});
