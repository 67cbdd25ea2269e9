// jobs.redrive_counts (TS queue.redrive, CLI pgdrain redrive): a dead letter
// whose dedupe key an active job holds is passed over, so max_rows counts the
// ones that can go back and a call reaches those behind held ones, reading at
// most 100 * max_rows; the result says how many it left, and why.
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

/** n dead letters of task, each with its own dedupe key (prefix-i) when keyed. */
async function deadLetters(n: number, task: string, keyPrefix?: string): Promise<string[]> {
  const ids = (await sql<{ id: string }>(
    `select jobs.publish($1, max_retries => 0, dedupe_key => $2 || i)::text as id from generate_series(1, $3) i order by i`,
    [task, keyPrefix ?? null, n])).map((r) => r.id);
  await sql(`select jobs.fail($1::bigint[], 'boom')`, [ids]);
  return ids;
}
/** A waiting job holding each of the n keys prefix-i. */
const holdKeys = (n: number, keyPrefix: string) =>
  sql(`select jobs.publish('holder', dedupe_key => $1 || i) from generate_series(1, $2) i`, [keyPrefix, n]);
const failures = async () => (await sql<{ id: string }>(`select job_id::text as id from jobs.job where status = 'failure' order by job_id`))
  .map((r) => r.id);

describe('redrive passes over dead letters whose dedupe key is held', () => {
  it('max_rows counts those that can go back: held ones before them no longer make every call redrive 0', async () => {
    const held = await deadLetters(3, 'mail.held', 'k');
    await holdKeys(3, 'k');
    const free = await deadLetters(3, 'mail.free');
    // Before: the oldest 2 were held, so each call redrove 0 while the free ones waited behind them.
    expect(await queue.redrive({ maxRows: 2 })).toEqual({ redriven: 2, heldByKey: 3, serialLater: 0 });
    expect(await failures()).toEqual([...held, free[2]]);
    expect(await sql(`select * from jobs.redrive_counts(max_rows => 2)`)).toEqual([{ redriven: 1, held_by_key: 3, serial_later: 0 }]);
    expect(await failures()).toEqual(held);
    // Once the keys are free, they go back.
    await sql(`delete from jobs.job_queue where task = 'holder'`);
    expect(await sql(`select jobs.redrive(max_rows => 5) as n`)).toEqual([{ n: 3 }]);
    expect(await failures()).toEqual([]);
  });

  it('reads at most 100 * max_rows dead letters: past that many held ones a call stops, and counts those it read', async () => {
    await deadLetters(101, 'mail.held', 'k');
    await holdKeys(101, 'k');
    const [behind] = await deadLetters(1, 'mail.free');
    expect(await queue.redrive({ maxRows: 1 })).toEqual({ redriven: 0, heldByKey: 100, serialLater: 0 });
    expect(await queue.redrive({ maxRows: 2 })).toEqual({ redriven: 1, heldByKey: 101, serialLater: 0 });
    expect(await failures()).not.toContain(behind);
  });

  it('the result says how many it left for their key, and for the next call (serial keys past 500)', async () => {
    const [held] = await deadLetters(1, 'mail.held', 'k');
    await holdKeys(1, 'k');
    // Two dead letters of one key: the older goes back, the younger stays (the key is the older's now).
    const [older, younger] = await deadLetters(2, 'mail.twice', 'same-');
    await sql(`update jobs.job set dedupe_key = 'same' where job_id = any($1::bigint[])`, [[older, younger]]);
    const serial = (await sql<{ id: string }>(`select jobs.publish('mail.serial', max_retries => 0, serial_key => 's' || i)::text as id
                                              from generate_series(1, 501) i`)).map((r) => r.id);
    // jobs.fail, as redrive, takes at most 500 serial keys a call.
    await sql(`select jobs.fail($1::bigint[], 'boom')`, [serial.slice(0, 500)]);
    await sql(`select jobs.fail($1::bigint[], 'boom')`, [serial.slice(500)]);
    expect(await queue.redrive()).toEqual({ redriven: 501, heldByKey: 2, serialLater: 1 });
    expect(await failures()).toEqual([held, younger, serial[500]]);
    // By id: a held one is named by the result, not by the "not redriven" notice (which is for ids it did not find).
    expect(await queue.redrive({ ids: [held!] })).toEqual({ redriven: 0, heldByKey: 1, serialLater: 0 });
  });

  it('pgdrain redrive --json prints the result; without it, how many', async () => {
    await deadLetters(1, 'mail.held', 'k');
    await holdKeys(1, 'k');
    await deadLetters(1, 'mail.free');
    const r = await runCli(db.url, 'redrive', '--json');
    expect(r).toMatchObject({ code: 0, stdout: '{"redriven":1,"heldByKey":1,"serialLater":0}\n' });
    expect(r.stderr).toContain('pgdrain: 1 of 2 matching dead letters left in place: an active job, or an older dead letter going back, '
      + 'holds their dedupe key');
    expect(await runCli(db.url, 'redrive')).toMatchObject({ code: 0, stdout: '0\n' });
  });
});
