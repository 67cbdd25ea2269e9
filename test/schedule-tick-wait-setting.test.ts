// pgdrain.tick_wait_ms bounds a claim's wait for a bounded queue's tick lock
// (jobs.tick_wait_bound, sql/0040): within the role's lock_timeout, clamped to
// what lock_timeout takes, read as lock_timeout reads a value ('2s', '500ms';
// a bare number is ms), and a value that is no duration refused naming the
// setting and how to fix it. On a real PostgreSQL.
import { expect, it } from 'vitest';
import { sqlErrorOf, testDb, withClient } from './support/db.js';
import { minute, T0 } from './support/schedule-clock.js';

const db = await testDb();

it('bounds the wait by the setting, with or without a unit, or the role\'s shorter lock_timeout; refuses a bad setting naming it', async () => {
  await withClient(db.url, async (c) => {
    const bound = async (setting: string | null, lockTimeout: string) => {
      await c.query(`select set_config('pgdrain.tick_wait_ms', $1, false)`, [setting ?? '']);
      return (await c.query<{ b: string }>(`select jobs.tick_wait_bound($1) as b`, [lockTimeout])).rows[0]!.b;
    };
    expect(await bound(null, '0')).toBe('500ms');
    expect(await bound(null, '100ms')).toBe('100ms');
    expect(await bound(null, '1min')).toBe('500ms');
    expect(await bound('2000', '1min')).toBe('2000ms');
    expect(await bound('2000', '1s')).toBe('1s');
    expect(await bound('0', '0')).toBe('1ms');             // 0 would be no bound at all as a lock_timeout
    expect(await bound('9999999999', '0')).toBe('2147483647ms');  // lock_timeout's own maximum
    // Longer as the tick waits (a tenth of how long it is overdue, up to ten times the setting), and a drain's
    // claim a tenth of its budget at most: two publishers holding the lock back to back outlast 500 ms.
    const overdue = async (ago: string, budget: string) => {
      await c.query(`select set_config('pgdrain.tick_wait_ms', '', false), set_config('pgdrain.tick_budget', $1, false)`, [budget]);
      return (await c.query<{ b: string }>(`select jobs.tick_wait_bound('0', $1::interval) as b`, [ago])).rows[0]!.b;
    };
    expect(await overdue('1 second', '')).toBe('500ms');
    expect(await overdue('12 seconds', '')).toBe('1200ms');
    expect(await overdue('10 minutes', '')).toBe('5000ms');
    expect(await overdue('10 minutes', '3.5')).toBe('350ms');
    await c.query(`select set_config('pgdrain.tick_budget', '', false)`);
    // PostgreSQL's time units, as lock_timeout takes them ('2s' was refused, failing every first claim).
    expect(await bound('2s', '0')).toBe('2000ms');
    expect(await bound('500ms', '0')).toBe('500ms');
    expect(await bound(' 1.5 s ', '0')).toBe('1500ms');
    expect(await bound('1min', '0')).toBe('60000ms');
    expect(await bound('250000us', '0')).toBe('250ms');
    expect(await bound('1h', '10s')).toBe('10s');
    expect(await bound('1000d', '0')).toBe('2147483647ms');
    for (const bad of ['soon', '2 seconds', '2S', '-5', '1e3', '5 s ms']) {
      await c.query(`select set_config('pgdrain.tick_wait_ms', $1, false)`, [bad]);
      const error = await sqlErrorOf((text, params) => c.query(text, params), `select jobs.tick_wait_bound('0')`);
      expect(error, bad).toMatchObject({ code: 'PDC03', column: 'pgdrain.tick_wait_ms' });
      expect(error.message, bad).toContain(`must be a duration as PostgreSQL's time settings take one`);
      expect(error.message, bad).toContain(`got '${bad}': set it to one (ALTER ROLE ... SET pgdrain.tick_wait_ms = '2s'`);
    }
  });
});

it("a drain's first claim with pgdrain.tick_wait_ms = '2s' publishes the bounded queue's due tick", async () => {
  await db.sql(`select jobs.create_queue('capped', max_size => 100)`);
  await db.sql(`select jobs.schedule('sweep', '*/10 * * * *', 'sweep.run', queue => 'capped', now => $1)`, [T0]);
  await withClient(db.url, async (c) => {
    await c.query(`set pgdrain.tick_wait_ms = '2s'`);
    expect((await c.query(`select jobs.claim_json(1, now => $1)->>'count' as n`, [minute(10)])).rows).toEqual([{ n: '0' }]);
  });
  expect(await db.sql(`select next_run_at, last_error from jobs.recurring`)).toEqual([{ next_run_at: new Date(minute(20)), last_error: null }]);
});

it("a claim's max_timeout that is no budget to cap the wait by (huge, Infinity) is none; NaN is refused as without a tick", async () => {
  await db.sql(`select jobs.create_queue('capped2', max_size => 100)`);
  await db.sql(`select jobs.schedule('sweep2', '*/10 * * * *', 'sweep2.run', queue => 'capped2', now => $1)`, [T0]);
  await withClient(db.url, async (c) => {
    for (const budget of ['1e17', 'Infinity']) {
      await c.query('begin');
      expect((await c.query(`select jobs.claim_json(1, max_timeout => $1::numeric, now => $2)->>'count' as n`, [budget, minute(10)])).rows,
             budget).toEqual([{ n: '0' }]);
      await c.query('rollback');
    }
    const error = await sqlErrorOf((text, params) => c.query(text, params), `select jobs.claim_json(1, max_timeout => 'NaN', now => $1)`, [minute(10)]);
    expect(error).toMatchObject({ code: 'PD005', column: 'max_timeout' });
  });
});
