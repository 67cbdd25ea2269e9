// A drain report's failures[].willRetry comes from what the settle did: a
// job whose cancel was requested while it ran, and whose handler then threw,
// is ended cancelled by the settle, not retried, so its entry must not say
// willRetry (it did: the drain read it off the nack it sent). The settle
// answers the deliveries it ended cancelled (cancelled_ids, id:attempt), only when it did.
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, type JobContext } from '../src/index.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
beforeEach(async () => void (await sql('truncate jobs.job_queue, jobs.job')));

describe('failures[].willRetry', () => {
  it.each([['the next claim', 0], ['a settle of its own', 3]] as const)(
    'is false for a job cancelled while it ran whose handler then threw (settled by %s); true for one that retries', async (_, more) => {
      let release!: () => void;
      const cancelled = new Promise<void>((r) => (release = r));
      const started = new Set<string>();
      const q = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {
        // Throws once the test has cancelled it: the drain's watcher (cancelCheckMs: 10 min) never saw the cancel.
        flaky: async (_b: unknown, ctx: JobContext) => {
          started.add(ctx.job.id);
          await cancelled;
          throw new Error('upstream down');
        },
        // Three of them hold the drain's slots (batch 5: it claims again once 3 are free), so the
        // flaky jobs' outcomes go in a settle of their own (flushIntervalMs), not with a claim.
        slow: async () => { await cancelled; await new Promise((r) => setTimeout(r, 1500)); },
      } });
      const target = await q.publish('flaky', null, { maxRetries: 3, timeoutSeconds: 30 });
      const other = await q.publish('flaky', null, { maxRetries: 3, timeoutSeconds: 30 });
      for (let i = 0; i < more; i++) await q.publish('slow', null, { timeoutSeconds: 30 });
      const drained = q.drain(more ? 5 : 10, Date.now() + 60_000, { cancelCheckMs: 600_000 });
      await until(async () => started.size === 2, 'both handlers to start');
      expect(await q.cancel(target)).toBe('cancelling');
      release();
      const report = await drained;
      expect(report).toMatchObject({ cancelled: 1, retried: 1, failed: 0 });
      expect(report.failures.map((f) => [f.id, f.willRetry]).sort())
        .toEqual([[target, false], [other, true]].sort());
      expect(await sql(`select job_id::text as id, status from jobs.job where task = 'flaky'`)).toEqual([{ id: target, status: 'cancelled' }]);
      expect(await sql(`select job_id::text as id, attempt from jobs.job_queue where task = 'flaky'`)).toEqual([{ id: other, attempt: 1 }]);
    });

  it("jobs.settle answers the deliveries it ended cancelled, and nothing more when it cancelled none", async () => {
    const ids = (await sql<{ id: string }>(`select jobs.publish('t', '{}')::text as id from generate_series(1, 3)`)).map((r) => r.id);
    await sql('select jobs.consume(3)');
    await sql('select jobs.cancel($1::bigint)', [ids[0]]);
    await sql('select jobs.cancel($1::bigint)', [ids[2]]);
    const settle = async (outcomes: unknown[]) =>
      (await sql<{ r: Record<string, unknown> }>('select jobs.settle($1::jsonb) as r', [JSON.stringify(outcomes)]))[0]!.r;
    const answer = await settle(ids.map((id) => ({ id: Number(id), attempt: 1, outcome: 'nack', error: 'x' })));
    expect({ ...answer, cancelled_ids: String(answer.cancelled_ids).split(',').sort() })
      .toEqual({ succeeded: 0, failed: 0, cancelled: 2, retried: 1, released: 0, stale: 0, cancelled_ids: [`${ids[0]}:1`, `${ids[2]}:1`].sort() });
    const acked = (await sql<{ id: string }>(`select jobs.publish('t', '{}')::text as id`))[0]!.id;
    await sql('select jobs.consume(1)');
    expect(await settle([{ id: Number(acked), attempt: 1, outcome: 'ack' }]))
      .toEqual({ succeeded: 1, failed: 0, cancelled: 0, retried: 0, released: 0, stale: 0 });
  });
});
