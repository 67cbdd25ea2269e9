// A drain with no budget from its start sends one claim with no budget, only
// to count the due jobs it leaves (its last look). On PGlite (one session,
// maxConnections 1) another drain's transactional handler holds that session:
// the look waited behind its transaction and drain() rejected with
// database_unavailable once its overrun passed. 13ead3a spared only the look
// after a wait for a slot; a last look never waits for a connection now
// (src/last-look.ts), so the drain returns its report without it.
import { expect, it } from 'vitest';
import { createQueue, defineTask } from '../src/index.js';
import { pgliteDriver } from '../src/db/pglite.js';
import { until } from './support/drain-process.js';

// A fresh PGlite costs about 6 CPU-seconds on this machine: a long timeout (drain-linger-transactional).
it('a drain with no budget on PGlite, its session held by another drain, returns its report', async () => {
  const driver = await pgliteDriver('memory://');
  const releases: (() => void)[] = [];
  const long = defineTask('long', async (_body: unknown, ctx) => {
    await ctx.db.query('select 1');
    await new Promise<void>((resolve) => releases.push(resolve));
  }, { transactional: true });
  const queue = createQueue({ driver, tasks: { long } });
  try {
    await queue.migrate();
    await driver.query(`select jobs.create_queue('busy'), jobs.create_queue('short')`);
    await queue.publish('long', {}, { queue: 'busy', timeoutSeconds: 100 });
    await queue.publishBulk([1, 2, 3].map(() => ({ task: 'long', timeoutSeconds: 1 })), 'short');
    const busy = queue.drain(10, Date.now() + 120_000, { queue: 'busy' });
    await until(async () => releases.length === 1, 'the busy drain to hold the session');
    try {
      for (const lingerMs of [0, 60_000]) {
        // Unfixed: rejects with database unavailable (no reply within 1000 ms after the drain's deadline).
        const report = await queue.drain(10, Date.now() + 200, { queue: 'short', lingerMs, overrunMs: 1000 }); // margin 500 ms
        expect(report).toMatchObject({ claimed: 0, batches: 0, skipped: 0, stoppedBy: 'deadline' });
      }
    } finally {
      for (const release of releases) release();
      await busy;
    }
    const { rows } = await driver.query(`select count(*)::int as n from jobs.job_queue where queue = 'short' and attempt = 0`);
    expect(rows).toEqual([{ n: 3 }]);
  } finally {
    await queue.close();
  }
}, 180_000);
