// A transactional task acks in its own transaction, as the delivery of its
// drain (worker id). Its abort check cannot see a give-back that lands while
// the ack is on its way: after a release (which does not spend the attempt)
// another drain's claim holds the same (job_id, attempt), and an ack of any
// worker's would end that delivery with the first one's work committed.
import { describe, expect, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { runTransactional } from '../src/run-transactional.js';
import type { JobContext } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;

/** One claim of worker `worker`: the claimed job's id and attempt. */
async function claim(worker: string): Promise<{ id: string; attempt: number }> {
  const [row] = await sql<{ r: { jobs: { id: string; attempt: number[] } } }>(
    `select jobs.claim_json(1, worker_id => $1) as r`, [worker]);
  const { r } = row!;
  return { id: r.jobs.id, attempt: r.jobs.attempt[0]! }; // one job: its id alone
}

describe('a transactional ack', () => {
  it("acks only its own drain's delivery: after a release and another drain's claim of the same attempt it rolls back, stale", async () => {
    await sql(`create table if not exists tx_ack_effects (job_id bigint not null)`);
    const id = (await sql<{ id: string }>(`select jobs.publish('tx.work', '{}')::text as id`))[0]!.id;
    const a = await claim('drain-a');
    // Drain A gives the job back (its signal, graceMs passed) while its handler's ack is on its way...
    await sql(`select jobs.settle_arrays(array[$1::bigint], array[$2::integer], array['release'], worker_id => 'drain-a')`, [a.id, a.attempt]);
    // ...and drain B claims it: the same attempt, since a release does not spend one.
    const b = await claim('drain-b');
    expect([b.id, b.attempt]).toEqual([a.id, a.attempt]);

    const driver = pgDriver(db.url);
    try {
      const signal = new AbortController().signal; // the abort check passed before the give-back landed
      const ctx = { job: { id: a.id, attempt: a.attempt }, signal } as unknown as JobContext;
      const counts = await runTransactional(driver, async (_body, c) => {
        await c.db!.query('insert into tx_ack_effects (job_id) values ($1)', [a.id]);
        return 'from a';
      }, { id: a.id, attempt: a.attempt, body: {} }, 'drain-a', ctx);
      expect(counts).toMatchObject({ succeeded: 0, stale: 1 });
    } finally {
      await driver.close();
    }
    // A's work rolled back; B's delivery still runs, and B's ack ends the job.
    expect(await sql(`select count(*)::int as n from tx_ack_effects`)).toEqual([{ n: 0 }]);
    expect(await sql(`select worker_id, lease_until is not null as running from jobs.job_queue where job_id = $1`, [id]))
      .toEqual([{ worker_id: 'drain-b', running: true }]);
    const settled = await sql<{ r: { succeeded: number } }>(
      `select jobs.settle_arrays(array[$1::bigint], array[$2::integer], array['ack'], worker_id => 'drain-b') as r`, [b.id, b.attempt]);
    expect(Number(settled[0]!.r.succeeded)).toBe(1);
  });
});
