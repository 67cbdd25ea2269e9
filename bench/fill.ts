// Fills the queue fast, server-side, through the SQL contract.
import type pg from 'pg';

/**
 * Adds n no-op jobs (task 'noop', body {"i": k}) with jobs.publish_bulk, one
 * statement per chunk; fields not given take the queue's defaults. With
 * laterSeconds, they are scheduled that far ahead (not due yet).
 */
export async function fill(db: Pick<pg.ClientBase, 'query'>, n: number,
                           { chunk = 100_000, laterSeconds }: { chunk?: number; laterSeconds?: number } = {}): Promise<void> {
  for (let from = 0; from < n; from += chunk) {
    await db.query(
      `select count(*) from jobs.publish_bulk(array(
         select jsonb_populate_record(null::jobs.bulk_job, jsonb_build_object(
                  'task', 'noop', 'body', jsonb_build_object('i', i),
                  'scheduled_at', now() + make_interval(secs => $3::float8)))
         from generate_series($1::int, $2::int) i))`, [from, Math.min(n, from + chunk) - 1, laterSeconds ?? null]);
  }
}
