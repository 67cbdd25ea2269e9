// pg-boss 12.38, tuned for throughput: workers fetch batchSize 500 and keep
// fetching without delay while batches come back full (burstWhenBatchFull),
// DRAINERS workers (localConcurrency). Enqueued with insert() per chunk.
// Completed jobs stay in pgboss.job (state 'completed'): it keeps history.
// Scheduling and supervision (maintenance) are off so they cannot run inside a
// measurement.
import { PgBoss } from 'pg-boss';
import pg from 'pg';
import { BATCH, chunks, DRAINERS, expectCount, until, type System } from './system.js';

const QUEUE = 'noop';

export async function pgbossSystem(url: string): Promise<System> {
  const boss = new PgBoss({ connectionString: url, schedule: false, supervise: false, max: DRAINERS + 4 });
  boss.on('error', (error) => process.stderr.write(`pg-boss: ${String(error)}\n`));
  await boss.start();
  await boss.createQueue(QUEUE);
  const admin = new pg.Pool({ connectionString: url, max: 1 });
  const count = async (states: string[]) => (await admin.query<{ n: number }>(
    `select count(*)::int as n from pgboss.job where name = $1 and state::text = any($2)`, [QUEUE, states])).rows[0]!.n;
  return {
    name: 'pg-boss',
    async reset() {
      await admin.query('delete from pgboss.job where name = $1', [QUEUE]);
      await admin.query('vacuum pgboss.job');
    },
    async enqueue(n) {
      for (const [from, to] of chunks(n)) {
        await boss.insert(QUEUE, Array.from({ length: to - from }, (_, k) => ({ data: { i: from + k } })));
      }
    },
    async drain(n) {
      let ran = 0;
      let allRan!: () => void;
      const ranAll = new Promise<void>((resolve) => (allRan = resolve));
      await boss.work(QUEUE, { batchSize: BATCH, burstWhenBatchFull: true, localConcurrency: DRAINERS,
                               pollingIntervalSeconds: 0.5 },
        async (jobs) => {
          ran += jobs.length;
          if (ran >= n) allRan();
        });
      try {
        await ranAll;
        await until(async () => (await count(['created', 'retry', 'active'])) === 0);
      } finally {
        await boss.offWork(QUEUE, { wait: true });
      }
    },
    async verify(n) {
      expectCount('pg-boss jobs not completed', await count(['created', 'retry', 'active', 'failed']), 0);
      expectCount('pg-boss jobs completed', await count(['completed']), n);
    },
    async close() {
      await boss.stop({ graceful: true });
      await admin.end();
    },
  };
}
