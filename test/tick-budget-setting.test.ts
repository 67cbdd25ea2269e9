// The tick's budget is setting pgdrain.tick_steps only as pgdrain words it
// for the evaluation under way (sql/0019): a value a session SETs, or a
// role's or database's default gives it, is not a budget. Before, '0' made
// jobs.schedule refuse every expression (naming the 50000 steps it had not
// taken), a non-number failed it with a bigint syntax error, and a small
// number ran out across a transaction's calls.
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.recurring');
});
afterEach(async () => {
  await sql(`alter database ${db.name} reset pgdrain.tick_steps`);
});

describe('pgdrain.tick_steps set by a user', () => {
  for (const value of ['0', '-5', 'abc', '3']) {
    it(`as a database's default (${value}), it refuses no rule, fails no call and is given back`, async () => {
      await sql(`alter database ${db.name} set pgdrain.tick_steps = '${value}'`);
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      try {
        expect((await client.query(`show pgdrain.tick_steps`)).rows).toEqual([{ 'pgdrain.tick_steps': value }]);
        await client.query('begin');
        // The 1st of the month from the 2nd: some 30 steps, each call its own budget.
        for (let i = 0; i < 3; i++) {
          expect((await client.query(`select jobs.cron_next('0 0 1 * *', '2030-01-02Z') as n`)).rows)
            .toEqual([{ n: new Date('2030-02-01T00:00:00Z') }]);
        }
        await client.query(`select jobs.schedule('monthly', '0 0 1 * *', 'tick.monthly', runner => 'drains', now => '2030-01-02Z')`);
        await client.query(`select jobs.schedule('daily', 'FREQ=DAILY;BYHOUR=9', 'tick.daily', runner => 'drains', now => '2030-01-02Z')`);
        await client.query('commit');
        // A claim with both due publishes both, and leaves the session's value as it was.
        await client.query(`select jobs.claim_json(10, 'nothing.%', null, '2030-02-01T00:00:30Z')`);
        expect((await client.query(`show pgdrain.tick_steps`)).rows).toEqual([{ 'pgdrain.tick_steps': value }]);
      } finally {
        await client.end();
      }
      expect(await sql(`select name, next_run_at, last_error from jobs.recurring order by name`)).toEqual([
        { name: 'daily', next_run_at: new Date('2030-02-01T09:00:00Z'), last_error: null },
        { name: 'monthly', next_run_at: new Date('2030-03-01T00:00:00Z'), last_error: null },
      ]);
      expect(await sql(`select task from jobs.job_queue order by task`)).toEqual([{ task: 'tick.daily' }, { task: 'tick.monthly' }]);
    });
  }

  // The searches read and keep the setting: stable, not immutable (sql/0019).
  // Declared immutable, a call with constant arguments was folded into its
  // plan, and a kept plan answered without taking a step, a budget spent or not.
  for (const [what, call] of [['cron', `select jobs.cron_tick('0 9 * * *', '2030-01-01Z', null) as n`],
                              ['a recurrence rule', `select jobs.cron_tick('FREQ=DAILY;BYHOUR=9', '2030-01-01Z', null) as n`]] as const) {
    it(`a kept plan of a search with constant arguments takes its steps: out of a spent budget, refused (${what})`, async () => {
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      try {
        const kept = { name: `kept-${what.length}`, text: call };
        expect((await client.query(kept)).rows).toEqual([{ n: new Date('2030-01-01T09:00:00Z') }]);
        await client.query('begin');
        await client.query('select jobs.tick_steps_give(0)');
        await expect(client.query(kept)).rejects.toMatchObject({ code: 'PDC01', column: 'cron',
          message: expect.stringMatching(/took more than the 50000 steps a tick may take/) });
        await client.query('rollback');
      } finally {
        await client.end();
      }
    });
  }
});
