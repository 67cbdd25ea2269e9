// pgdrain as a user runs it: publishBulk to enqueue, DRAINERS drain() calls
// side by side (batch BATCH, a no-op task) to consume. Ended jobs stay in
// jobs.job (the history), as in production.
import pg from 'pg';
import { createQueue, type Queue } from '../../src/index.js';
import { envInt } from '../stats.js';
import { BATCH, chunks, DRAINERS, expectCount, type System } from './system.js';

/**
 * drain() calls side by side: as many as the floor's loops. On 2 cores two
 * drains ran 5-10% closer to the floor than four (bench/RESULTS.md).
 */
const PGDRAIN_DRAINS = envInt('BENCH_PGDRAIN_DRAINS', DRAINERS);
/** drain()'s batch size; larger batches ran no closer to the floor (bench/RESULTS.md). */
const PGDRAIN_BATCH = envInt('BENCH_PGDRAIN_BATCH', BATCH);

export async function pgdrainSystem(url: string): Promise<System> {
  const queue: Queue = createQueue({ connectionString: url, tasks: { noop: async () => null } });
  await queue.migrate();
  const admin = new pg.Pool({ connectionString: url, max: 1 });
  return {
    name: 'pgdrain',
    async reset() {
      await admin.query('truncate jobs.job_queue, jobs.job');
    },
    async enqueue(n) {
      for (const [from, to] of chunks(n)) {
        await queue.publishBulk(Array.from({ length: to - from }, (_, k) => ({ task: 'noop', body: { i: from + k } })));
      }
    },
    async drain(n) {
      const deadline = Date.now() + 30 * 60_000;
      const reports = await Promise.all(Array.from({ length: PGDRAIN_DRAINS }, () => queue.drain(PGDRAIN_BATCH, deadline)));
      expectCount('pgdrain drains succeeded', reports.reduce((s, r) => s + r.succeeded, 0), n);
    },
    async verify(n) {
      const { rows } = await admin.query<{ queued: number; ok: number }>(
        `select (select count(*) from jobs.job_queue)::int as queued,
                (select count(*) from jobs.job where status = 'success')::int as ok`);
      expectCount('pgdrain jobs left in jobs.job_queue', rows[0]!.queued, 0);
      expectCount('pgdrain successes in jobs.job', rows[0]!.ok, n);
    },
    async close() {
      await queue.close();
      await admin.end();
    },
  };
}
