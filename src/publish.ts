import type { Queryable } from './db/driver.js';
import { translateError, ValidationError } from './errors.js';
import { bulkPublishOptionsSchema, parse, publishOptionsSchema, queueNameSchema, taskSchema } from './options.js';
import type { BulkJob, PublishOptions } from './types.js';

// Publishing works on any Queryable, so a caller can publish inside its own
// transaction: pass the pg client (or driver transaction) it is using.

function bodyJson(body: unknown, field: string): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(body ?? null);
  } catch (error) {
    throw new ValidationError(field, `must be JSON-serialisable (${(error as Error).message})`);
  }
  if (json === undefined) throw new ValidationError(field, `must be JSON-serialisable, got ${typeof body}`);
  return json;
}

function row(task: unknown, body: unknown, options: unknown, field: string) {
  parse(taskSchema, task, field ? `${field}.task` : 'task');
  const o = parse(bulkPublishOptionsSchema, options ?? {}, field ? field : 'options');
  return {
    task: task as string,
    body: bodyJson(body, field ? `${field}.body` : 'body'),
    run_at: o.runAt?.toISOString() ?? null,
    delay: o.delaySeconds ?? null,
    timeout: o.timeoutSeconds ?? null,
    priority: o.priority ?? null,
    max_retries: o.maxRetries ?? null,
  };
}

/**
 * Publishes one job through `db` (a pool, or your transaction's client);
 * returns its id, or the id of the active job holding options.dedupeKey.
 */
export async function publish(db: Queryable, task: string, body?: unknown, options?: PublishOptions): Promise<string> {
  const { queue, dedupeKey, serialKey, dependsOn, attributes, ...core } =
    parse(publishOptionsSchema, options ?? {}, 'options');
  const r = row(task, body, core, '');
  try {
    const { rows } = await db.query<{ id: string }>(
      `select jobs.publish($1, $2::jsonb,
         coalesce($3::timestamptz, now() + make_interval(secs => $4::float8)),
         $5::numeric, $6::integer, $7::integer,
         queue => $8, dedupe_key => $9, serial_key => $10, depends_on => $11::bigint[],
         attributes => $12::jsonb)::text as id`,
      [r.task, r.body, r.run_at, r.delay, r.timeout, r.priority, r.max_retries,
       queue ?? null, dedupeKey ?? null, serialKey ?? null, dependsOn ?? null,
       attributes === undefined ? null : bodyJson(attributes, 'options.attributes')],
    );
    return rows[0]!.id;
  } catch (error) {
    throw translateError(error);
  }
}

/**
 * Publishes any number of jobs in one statement, all to one queue (default
 * 'default'); returns their ids in order.
 */
export async function publishBulk(db: Queryable, jobs: readonly BulkJob[], queue?: string): Promise<string[]> {
  if (!Array.isArray(jobs)) throw new ValidationError('jobs', 'must be an array');
  if (queue !== undefined) parse(queueNameSchema, queue, 'queue');
  if (jobs.length === 0) return [];
  // Bodies are already JSON text: splice them in rather than parse and re-encode.
  const elements = jobs.map((j, i) => {
    if (typeof j !== 'object' || j === null) throw new ValidationError(`jobs[${i}]`, 'must be an object');
    const { task, body, ...options } = j;
    const { body: json, ...rest } = row(task, body, options, `jobs[${i}]`);
    return `${JSON.stringify(rest).slice(0, -1)},"body":${json}}`;
  });
  try {
    const result = await db.query<{ id: string }>(
      `select id::text from jobs.publish_bulk(array(
         select row(e.v->>'task', e.v->'body',
                    coalesce((e.v->>'run_at')::timestamptz, now() + make_interval(secs => (e.v->>'delay')::float8)),
                    (e.v->>'timeout')::numeric, (e.v->>'priority')::integer,
                    (e.v->>'max_retries')::integer)::jobs.bulk_job
         from jsonb_array_elements($1::jsonb) with ordinality as e(v, ord)
         order by e.ord), queue => $2) as id`,
      [`[${elements.join(',')}]`, queue ?? null],
    );
    return result.rows.map((r) => r.id);
  } catch (error) {
    throw translateError(error);
  }
}
