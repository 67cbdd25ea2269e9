// pgdrain.tick_wait_ms bounds a claim's wait for a bounded queue's tick lock
// (jobs.tick_wait_bound, sql/0023): within the role's lock_timeout, clamped to
// what lock_timeout takes, and a value that is not a whole number of
// milliseconds refused naming the setting. On a real PostgreSQL.
import { expect, it } from 'vitest';
import { sqlErrorOf, testDb, withClient } from './support/db.js';

const db = await testDb();

it('bounds the wait by the setting, or the role\'s shorter lock_timeout; refuses a bad setting naming it', async () => {
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
    await c.query(`select set_config('pgdrain.tick_wait_ms', 'soon', false)`);
    const error = await sqlErrorOf((text, params) => c.query(text, params), `select jobs.tick_wait_bound('0')`);
    expect(error).toMatchObject({ code: 'PDC03', column: 'pgdrain.tick_wait_ms' });
    expect(error.message).toMatch(/must be a whole number of milliseconds/);
  });
});
