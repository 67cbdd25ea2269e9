// A handler that ignores its signal, on pods stopped often (deploys, spot
// nodes, a Kubernetes Job past activeDeadlineSeconds): each SIGTERM's grace
// ends with it still running. That delivery spends its attempt, as one that
// honours the signal and throws does, so the job ends failed after its
// retries with an error saying what happened, rather than being handed out
// without end. Real `pgdrain drain` processes (test/fixtures/fault-tasks.mjs).
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { FAULT_TASKS, kubeletStop, reportOf, spawnCli, until, withAppName } from './support/drain-process.js';

const db = await testDb();
await db.sql('create table fault_runs (key text not null, job_id bigint not null, attempt int not null, pid int not null)');

const GRACE_END = "did not stop within graceMs=1000 after the drain's signal (SIGTERM)";

it('a handler that outlives every SIGTERM grace spends an attempt each time and ends failed after max_retries', async () => {
  const id = (await db.sql<{ id: string }>(
    `select jobs.publish('fault.record', '{"key": "deaf", "ms": 600000}', timeout_seconds => 300, max_retries => 1)::text as id`))[0]!.id;
  const stopOnce = async (round: number) => {
    const name = `pod-${round}`;
    const d = spawnCli(['drain', '--json', '--grace', '1', '--deadline', '600'], {
      DATABASE_URL: withAppName(db.url, name), PGDRAIN_TASKS: FAULT_TASKS, PGDRAIN_WORKER_ID: name,
      FAULT_RECORD_URL: withAppName(db.url, 'fault-recorder'),
    });
    await until(async () => (await db.sql('select 1 from fault_runs where attempt = $1', [round])).length > 0, `run ${round} to start`);
    const exit = await kubeletStop(d, 20); // SIGTERM; SIGKILL (a failed test) only if it outlives 20 s
    expect(exit).toMatchObject({ code: 0, signal: null });
    return reportOf(exit);
  };

  // Before: released, its attempt not spent, pending again at attempt 0, run after run.
  expect(await stopOnce(1)).toMatchObject({ stoppedBy: 'signal', claimed: 1, retried: 1, released: 0,
                                            failures: [{ id, attempt: 1, willRetry: true, error: GRACE_END }] });
  expect(await db.sql(`select attempt, lease_until, last_error, scheduled_at <= now() as due from jobs.job_queue`))
    .toEqual([{ attempt: 1, lease_until: null, last_error: GRACE_END, due: true }]); // retried at once

  expect(await stopOnce(2)).toMatchObject({ stoppedBy: 'signal', claimed: 1, retried: 0, failed: 1,
                                            failures: [{ id, attempt: 2, willRetry: false, error: GRACE_END }] });
  expect(await db.sql('select count(*)::int as n from jobs.job_queue')).toEqual([{ n: 0 }]);
  expect(await db.sql(`select job_id::text as id, status, attempts, error from jobs.job`))
    .toEqual([{ id, status: 'failure', attempts: 2, error: GRACE_END }]);
  expect(await db.sql('select attempt from fault_runs order by attempt')).toEqual([{ attempt: 1 }, { attempt: 2 }]);
}, 60_000);
