// The result tests' drain and read-back: drain() of a file's own tasks over
// the test database (no pool close), and each job as it ended or waits to
// retry (its state, the first line of its error, its result).
import { drain, publish, type TaskMap } from '../../src/index.js';
import type { testDb } from './db.js';

export interface ResultRow { task: string; state: string; error: string | null; result: unknown }

export function resultRows(db: Awaited<ReturnType<typeof testDb>>) {
  const driver = { ...db.driver, close: async () => {} };
  const drainOf = (tasks: TaskMap) =>
    drain({ db: driver, tasks, publish: (t, b, o) => publish(driver, t, b, o) }, 10, Date.now() + 120_000);
  const rows = () => db.sql<ResultRow>(`select coalesce(j.task, q.task) as task, coalesce(j.status::text, 'queued ' || q.attempt) as state,
                                               split_part(coalesce(j.error, q.last_error), E'\\n', 1) as error, j.result
                                        from jobs.job_queue q full join jobs.job j using (job_id) order by job_id`);
  return { driver, drainOf, rows };
}
