import type { Queryable } from './db/driver.js';
import { translateError, ValidationError } from './errors.js';
import { jsonParam } from './json-text.js';
import { bulkPublishOptionsSchema, parse, publishOptionsSchema, queueNameSchema, TASK_PATTERN, taskSchema } from './options.js';
import type { BulkJob, PublishOptions } from './types.js';

// Publishing works on any Queryable, so a caller can publish inside its own
// transaction: pass the pg client (or driver transaction) it is using.

function isEmpty(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  for (const _ in value) return false;
  return true;
}

const OPTION_COLUMNS = ['run_at', 'delay', 'timeout', 'priority', 'max_retries'] as const;
type OptionColumn = typeof OPTION_COLUMNS[number];

const NO_OPTIONS = {} as ReturnType<typeof bulkPublishOptionsSchema.parse>;

function row(task: unknown, body: unknown, options: unknown, field: string) {
  // The schema only when the quick check fails: it is what names the rule.
  if (typeof task !== 'string' || task.length > 200 || !TASK_PATTERN.test(task)) {
    parse(taskSchema, task, field ? `${field}.task` : 'task');
  }
  // Most bulk jobs carry no options: skip the schema for them.
  const o = options === undefined || isEmpty(options) ? NO_OPTIONS
    : parse(bulkPublishOptionsSchema, options, field ? field : 'options');
  return {
    task: task as string,
    body: jsonParam(body, field ? `${field}.body` : 'body'),
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
       attributes === undefined ? null : jsonParam(attributes, 'options.attributes')],
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
  // Column arrays, one per field, and the bodies as one JSON array (already
  // JSON text: joined, not escaped into an array literal, and parsed once by
  // the server). An option column exists only once some job sets it (null:
  // every element takes the default), so a plain batch sends one array and
  // one document, and its jobs skip the options schema.
  const tasks: string[] = new Array(jobs.length);
  const bodies: string[] = new Array(jobs.length);
  const options: Partial<Record<OptionColumn, unknown[]>> = {};
  for (let i = 0; i < jobs.length; i++) {
    const j = jobs[i];
    if (typeof j !== 'object' || j === null) throw new ValidationError(`jobs[${i}]`, 'must be an object');
    let plain = true;
    for (const k in j) if (k !== 'task' && k !== 'body') plain = false;
    let r: ReturnType<typeof row>;
    if (plain) r = row(j.task, j.body, undefined, `jobs[${i}]`);
    else {
      const { task, body, ...rest } = j;
      r = row(task, body, rest, `jobs[${i}]`);
    }
    tasks[i] = r.task;
    bodies[i] = r.body;
    if (plain) continue;
    for (const k of OPTION_COLUMNS) {
      if (r[k] === null) continue;
      (options[k] ??= new Array(jobs.length).fill(null))[i] = r[k];
    }
  }
  try {
    const result = await db.query<{ ids: string }>(
      `select array_to_string(jobs.publish_arrays($1::text[], $2::jsonb, $3::timestamptz[], $4::float8[],
                                                  $5::numeric[], $6::integer[], $7::integer[], $8), ',') as ids`,
      // Task names are checked words (no quote, backslash or comma): quoted, they
      // make the array literal as they are, with no per-element escaping.
      [`{"${tasks.join('","')}"}`, `[${bodies.join(',')}]`, ...OPTION_COLUMNS.map((k) => options[k] ?? null), queue ?? null],
    );
    return result.rows[0]!.ids.split(',');
  } catch (error) {
    throw translateError(error);
  }
}
