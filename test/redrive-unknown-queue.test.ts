// A redrive whose queue filter names no queue is refused (PD009 queue), as a
// claim's or a publish's is, in SQL, TypeScript and the CLI (the dashboard's
// 404: test/http-dashboard-actions-access.test.ts): before, it answered 0, a typo
// looking like a queue with no dead letters (a dead letter goes back only
// to a queue that exists, so it could match nothing). A now at ±infinity
// is refused naming now (before: the insert's check constraint, 23514).
import { describe, expect, it } from 'vitest';
import { createQueue, ValidationError } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });

/** A dead letter of queue name. */
async function deadLetter(name: string): Promise<void> {
  await sql(`select jobs.fail(array[jobs.publish('mail.send', max_retries => 0, queue => $1)], 'boom')`, [name]);
}

describe('redrive of a queue that does not exist', () => {
  it('SQL: PD009 naming queue; TS: a ValidationError naming queue; CLI: exit 2 naming --queue', async () => {
    const e = await sqlErrorOf(sql, `select jobs.redrive(queue => 'nope')`);
    expect([e.code, e.column, e.message]).toEqual(['PD009', 'queue', "queue: no queue named 'nope'; the dead letters of a deleted "
      + "queue go back once it is created again (jobs.create_queue('nope'))"]);
    expect((await sqlErrorOf(sql, `select * from jobs.redrive_counts(queue => 'nope', max_rows => 5)`)).code).toBe('PD009');
    const t = await queue.redrive({ queue: 'nope' }).then(() => null, (x: unknown) => x);
    expect(t).toBeInstanceOf(ValidationError);
    expect((t as ValidationError).message).toMatch(/^filter\.queue: no queue named 'nope'; /);
    const r = await runCli(db.url, 'redrive', '--queue', 'nope');
    expect([r.code, r.stderr]).toEqual([2, "pgdrain: --queue: no queue named 'nope'; the dead letters of a deleted queue go back "
      + "once it is created again (pgdrain queue create nope)\n"]);
  });

  it('a deleted queue\'s dead letters: refused until the queue is made again, then they go back', async () => {
    await sql(`select jobs.create_queue('gone')`);
    await deadLetter('gone');
    await sql(`select jobs.delete_queue('gone')`);
    expect((await sqlErrorOf(sql, `select jobs.redrive(queue => 'gone')`)).code).toBe('PD009');
    await sql(`select jobs.create_queue('gone')`);
    expect(await sql(`select jobs.redrive(queue => 'gone') as n`)).toEqual([{ n: 1 }]);
  });
});

describe('redrive\'s now', () => {
  it('±infinity: PD007 naming now, nothing put back', async () => {
    await sql('truncate jobs.job');
    await deadLetter('default');
    for (const now of ['infinity', '-infinity']) {
      const e = await sqlErrorOf(sql, `select jobs.redrive(now => $1::timestamptz)`, [now]);
      expect([e.code, e.column, e.message]).toEqual(['PD007', 'now', `now: must be a finite time or null, got ${now}`]);
    }
    expect(await sql(`select count(*)::int as n from jobs.job where status = 'failure'`)).toEqual([{ n: 1 }]);
  });
});
