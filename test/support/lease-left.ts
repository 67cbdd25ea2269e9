import { defineTask } from '../../src/index.js';

type Sql = <T>(text: string, params?: unknown[]) => Promise<T[]>;

/** A task 'work' whose handler records in leases the seconds its lease had left as it began. */
export function leaseLeftTask(sql: Sql) {
  const leases: number[] = [];
  const work = defineTask('work', async (_body: object, ctx) => {
    const [row] = await sql<{ s: number }>(
      `select extract(epoch from lease_until - clock_timestamp())::float8 as s from jobs.job_queue where job_id = $1`, [ctx.job.id]);
    leases.push(row!.s);
  });
  return { work, leases };
}
