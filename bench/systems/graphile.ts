// graphile-worker 0.18, tuned as its performance docs suggest for many fast
// jobs: a local queue of 500 jobs per fetch, completions batched with
// completeJobBatchDelay 0 (and failJobBatchDelay 0). Enqueued with addJobs
// (one add_jobs call per chunk); drained by one runner started after the
// enqueue, as a worker process would be (`--systems ...,graphile-worker-2`:
// two runners, in this process as pgdrain's four drains are).
// graphile-worker deletes completed jobs: it keeps no history.
import { Logger, makeWorkerUtils, run, runMigrations, type RunnerOptions, type WorkerUtils } from 'graphile-worker';
import pg from 'pg';
import { envInt } from '../stats.js';
import { chunks, expectCount, until, type System } from './system.js';

/**
 * Jobs run at once by the runner; 0.18's perfTest uses 3-24. With no-op jobs
 * 100 drained 100,000 at 0.37-0.38x the floor against 0.33-0.35x for 24, and
 * 20,000 alike (bench/RESULTS.md, peers).
 */
export const GRAPHILE_CONCURRENCY = envInt('BENCH_GRAPHILE_CONCURRENCY', 100);
export const silent = new Logger(() => () => {});

/** run()'s options for one tuned runner of the task noop, here and in the steady loads. */
export function tunedRunner(url: string, noop: () => Promise<void>): RunnerOptions {
  return {
    connectionString: url,
    concurrency: GRAPHILE_CONCURRENCY,
    maxPoolSize: GRAPHILE_CONCURRENCY + 2,
    noHandleSignals: true,
    pollInterval: 1000,
    logger: silent,
    taskList: { noop },
    preset: { worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } },
  };
}

export async function graphileSystem(url: string, { runners = 1 } = {}): Promise<System> {
  await runMigrations({ connectionString: url, logger: silent });
  const utils: WorkerUtils = await makeWorkerUtils({ connectionString: url, logger: silent });
  const admin = new pg.Pool({ connectionString: url, max: 1 });
  const remaining = async () =>
    (await admin.query<{ n: number }>('select count(*)::int as n from graphile_worker._private_jobs')).rows[0]!.n;
  return {
    name: runners === 1 ? 'graphile-worker' : `graphile-worker-${runners}`,
    async reset() {
      await admin.query('truncate graphile_worker._private_jobs, graphile_worker._private_job_queues');
    },
    async enqueue(n) {
      for (const [from, to] of chunks(n)) {
        await utils.addJobs(Array.from({ length: to - from }, (_, k) => ({ identifier: 'noop', payload: { i: from + k } })));
      }
    },
    async drain(n) {
      let ran = 0;
      let allRan!: () => void;
      const ranAll = new Promise<void>((resolve) => (allRan = resolve));
      const started = Array.from({ length: runners }, () => run(tunedRunner(url, async () => { if (++ran === n) allRan(); })));
      const all = await Promise.allSettled(started);
      const ok = all.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      try {
        for (const r of all) if (r.status === 'rejected') throw r.reason;
        await ranAll;
        await until(async () => (await remaining()) === 0); // the last completions are committed
      } finally {
        await Promise.all(ok.map((runner) => runner.stop()));
      }
    },
    async verify() {
      expectCount('graphile-worker jobs left', await remaining(), 0);
    },
    async close() {
      await utils.release();
      await admin.end();
    },
  };
}
