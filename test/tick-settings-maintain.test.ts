// pgdrain's own settings, read with a cast, set to nonsense by hand. A bad
// pgdrain.tick_wait_ms was refused (PDC03 naming it) only once a bounded
// queue's tick was due, failing claims then; jobs.maintain now refuses it on
// every pass, where it shows early (where a drains' schedule publishes into
// a bounded queue: else no claim reads it). pgdrain.tick_budget (a claim's, for its
// own call) failed jobs.maintain with a raw cast error (22P02) whenever a
// bounded queue's tick was due: PDC03 naming it now, on every pass.
// pgdrain.lease_floor (a claim's memo for the session) out of the clock's
// range failed every claim ('timestamp out of range'): now no memo. On a real
// PostgreSQL.
import { expect, it } from 'vitest';
import { sqlErrorOf, testDb, withClient } from './support/db.js';

const db = await testDb();

it('jobs.maintain does its work under a bad pgdrain.tick_wait_ms or tick_budget that nothing reads (no drains\' schedule into a bounded queue)', async () => {
  // Unfixed: refused (PDC03) on every pass, so retention, expiry and the
  // throttle windows stopped for a setting no claim would read.
  await db.sql(`select jobs.create_queue('capped', max_size => 100)`);
  await db.sql(`select jobs.schedule('elsewhere', '*/10 * * * *', 'sweep.run', runner => 'drains', now => '2030-01-01T00:00:00Z')`);
  await withClient(db.url, async (c) => {
    for (const [name, bad] of [['pgdrain.tick_wait_ms', 'soon'], ['pgdrain.tick_budget', 'x']]) {
      await c.query(`select set_config($1, $2, false)`, [name, bad]);
      expect((await c.query(`select jobs.maintain(now => '2030-01-01T00:01:00Z')->>'ticks' as t`)).rows, name).toEqual([{ t: '0' }]);
      await c.query(`select set_config($1, '', false)`, [name]);
    }
  });
});

it('jobs.maintain refuses a bad pgdrain.tick_wait_ms or tick_budget, naming it, with no tick due', async () => {
  await db.sql(`select jobs.schedule('sweep', '*/10 * * * *', 'sweep.run', queue => 'capped', runner => 'drains', now => '2030-01-01T00:00:00Z')`);
  await withClient(db.url, async (c) => {
    const query = (text: string, params?: unknown[]) => c.query(text, params);
    await c.query(`set pgdrain.tick_wait_ms = 'soon'`);
    expect(await sqlErrorOf(query, `select jobs.maintain()`)).toMatchObject({ code: 'PDC03', column: 'pgdrain.tick_wait_ms' });
    await c.query(`reset pgdrain.tick_wait_ms`);
    for (const bad of ['x', '1e999999']) {
      await c.query(`select set_config('pgdrain.tick_budget', $1, false)`, [bad]);
      const error = await sqlErrorOf(query, `select jobs.maintain()`);
      expect(error, bad).toMatchObject({ code: 'PDC03', column: 'pgdrain.tick_budget' });
      expect(error.message, bad).toContain(`must be a number of seconds or empty: a claim sets it to its max_timeout for its own call, got '${bad}': RESET it`);
    }
    await c.query(`reset pgdrain.tick_budget`);
    expect((await c.query(`select jobs.maintain(now => '2030-01-01T00:01:00Z')->>'ticks' as t`)).rows).toEqual([{ t: '0' }]);
  });
});

it('a claim under a pgdrain.lease_floor out of the clock\'s range claims, the memo ignored', async () => {
  await db.sql(`select jobs.publish('work', '{}')`);
  await withClient(db.url, async (c) => {
    await c.query(`select set_config('pgdrain.lease_floor', '-999999999999999999|' || (extract(epoch from now()) * 1000000)::bigint, false)`);
    expect((await c.query(`select jobs.claim_json(1)->>'count' as n`)).rows).toEqual([{ n: '1' }]);
  });
});
