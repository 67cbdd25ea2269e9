import type { Queryable } from './db/driver.js';
import { PgDrainError, translateError, ValidationError } from './errors.js';
import { jsonParam } from './json-text.js';
import { bulkPublishOptionsSchema, publishOptionsSchema } from './job-options.js';
import { parse, queueNameSchema, TASK_PATTERN, taskSchema } from './options.js';
import { jobFieldHints } from './peer-options.js';
import { send, signalOnly, takeSignal, type SignalOption } from './send.js';
import type { BulkJob, PublishOptions } from './types.js';

// Publishing works on any Queryable, so a caller can publish inside its own
// transaction: pass the pg client (or driver transaction) it is using. Its
// statement goes through send() (send.ts): sent again when a deadlock rolled
// it back, on a pool or driver only (in the caller's transaction: its error).

function isEmpty(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  for (const _ in value) return false;
  return true;
}

const OPTION_COLUMNS = ['run_at', 'delay', 'timeout', 'priority', 'max_retries', 'dedupe_key', 'serial_key',
  'retry_delay', 'retry_backoff', 'retry_delay_max', 'expires_at', 'expires_in', 'dead_letter', 'group_id', 'group_tier'] as const;
type OptionColumn = typeof OPTION_COLUMNS[number];

const NO_OPTIONS = {} as ReturnType<typeof bulkPublishOptionsSchema.parse>;

function row(task: unknown, body: unknown, options: unknown, field: string) {
  // The schema only when the quick check fails: it is what names the rule.
  if (typeof task !== 'string' || task.length > 200 || !TASK_PATTERN.test(task)) {
    // A bulk job in pg-boss's or graphile-worker's shape ({ name, data }): say which fields are ours.
    const peers = task === undefined && typeof options === 'object' && options !== null ? jobFieldHints(options) : '';
    try {
      parse(taskSchema, task, field ? `${field}.task` : 'task');
    } catch (error) {
      throw peers && error instanceof ValidationError ? new ValidationError(error.field!, `${error.rule} (${peers})`) : error;
    }
  }
  // Most bulk jobs carry no options: skip the schema for them.
  const o = options === undefined || isEmpty(options) ? NO_OPTIONS
    : parse(bulkPublishOptionsSchema, options, field ? field : 'options', field ? 'job' : 'publish');
  return {
    task: task as string,
    body: jsonParam(body, field ? `${field}.body` : 'body'),
    run_at: o.runAt?.toISOString() ?? null,
    delay: o.delaySeconds ?? null,
    timeout: o.timeoutSeconds ?? null,
    priority: o.priority ?? null,
    max_retries: o.maxRetries ?? null,
    dedupe_key: o.dedupeKey ?? null,
    // Sent only for keep_waiting ('keep' is the database's default).
    dedupe_mode: o.dedupeMode === 'keep_waiting' ? o.dedupeMode : null,
    serial_key: o.serialKey ?? null,
    retry_delay: o.retryDelaySeconds ?? null,
    retry_backoff: o.retryBackoff === undefined ? null : o.retryBackoff ? 'exponential' : 'fixed',
    retry_delay_max: o.retryDelayMaxSeconds ?? null,
    expires_at: o.expiresAt?.toISOString() ?? null,
    expires_in: o.expiresInSeconds ?? null,
    dead_letter: o.deadLetter ?? null,
    group_id: o.group?.id ?? null,
    group_tier: o.group?.tier ?? null,
    attributes: o.attributes === undefined ? null : jsonParam(o.attributes, field ? `${field}.attributes` : 'attributes'),
  };
}

/** publish()'s checks, with no database: what it would send, or its ValidationError (the CLI's, before connecting). */
export function checkPublish(task: string, body?: unknown, options?: PublishOptions & SignalOption) {
  const { signal, rest } = takeSignal(options, 'options');
  const checked = parse(publishOptionsSchema, rest ?? {}, 'options', 'publish');
  const { queue: _q, dedupeKey: _d, dedupeMode: _m, serialKey: _s, dependsOn: _o, attributes, throttleSeconds: _t, ...core } = checked;
  return { signal, checked, r: row(task, body, core, ''),
           attributes: attributes === undefined ? null : jsonParam(attributes, 'options.attributes') };
}

/**
 * Publishes one job through `db` (a pool, or your transaction's client);
 * returns its id, or the id of the active job holding options.dedupeKey
 * (with dedupeMode 'replace' or 'replace_keep_time': of the job it replaced, or of the new one
 * when that job was running; 'keep_waiting': of the job only while it has
 * not started, else of a new one; with throttleSeconds: also of the job that
 * opened the key's window, ended or not, unless it expired unstarted, was
 * cancelled or was deleted).
 * With options.signal, the call is given up when it fires (see givenUpWith(), send.ts).
 */
export async function publish(db: Queryable, task: string, body?: unknown,
                              options?: PublishOptions & SignalOption): Promise<string> {
  const { signal, checked: { queue, dedupeKey, dedupeMode, serialKey, dependsOn, throttleSeconds }, r, attributes } =
    checkPublish(task, body, options);
  try {
    const { rows } = await send<{ id: string }>(db,
      // A delay (and an expiry) from the call, read once (c.at): inside a transaction open
      // for a while now() is its start, and the job would be due early, or already at commit.
      // The SQL functions' own definition of that time (jobs.call_time of jobs.clock, sql/0002),
      // so a test's clock moves both. A delay of 0 is none: due at now(), as jobs.publish_arrays
      // (its expiresAt checked against that).
      `select jobs.publish($1, $2::jsonb,
         coalesce($3::timestamptz, c.at + make_interval(secs => nullif($4::float8, 0))),
         $5::numeric, $6::integer, $7::integer,
         queue => $8, dedupe_key => $9, serial_key => $10, depends_on => $11::bigint[],
         attributes => $12::jsonb, dedupe_mode => $13, throttle_seconds => $14::numeric,
         retry_delay => $15::numeric, retry_backoff => $16, retry_delay_max => $17::numeric,
         -- expiresInSeconds: after the scheduled time; without runAt, after the call (delay
         -- included), not the transaction's start, as jobs.publish counts a queue's expire_in.
         expires_at => coalesce($18::timestamptz, coalesce($3::timestamptz, c.at + make_interval(secs => coalesce($4::float8, 0)))
                                                  + make_interval(secs => $19::float8)),
         dead_letter => $20, group_id => $21, group_tier => $22)::text as id
       from (select jobs.call_time(null, jobs.clock(null)) as at) c`,
      [r.task, r.body, r.run_at, r.delay, r.timeout, r.priority, r.max_retries,
       queue ?? null, dedupeKey ?? null, serialKey ?? null, dependsOn ?? null,
       attributes, dedupeMode ?? null,
       throttleSeconds ?? null, r.retry_delay, r.retry_backoff, r.retry_delay_max, r.expires_at, r.expires_in, r.dead_letter,
       r.group_id, r.group_tier],
      signal,
    );
    return rows[0]!.id;
  } catch (error) {
    throw asOption(translateError(error), 'options.', queue !== undefined);
  }
}

/**
 * Publishes any number of jobs in one statement, all to one queue (default
 * 'default'); returns their ids in order, one per job: a job whose dedupeKey
 * an active job (or an earlier job of this call) holds is not written and
 * answers that job's id (one past its expiry, or running and being
 * cancelled, lets go of its key first, as for publish; with dedupeMode
 * 'keep_waiting', one running or waiting to retry too). With options.signal, the call is given up when it
 * fires (see givenUpWith(), send.ts).
 */
export async function publishBulk(db: Queryable, jobs: readonly BulkJob[], queue?: string,
                                  options?: SignalOption): Promise<string[]> {
  if (!Array.isArray(jobs)) throw new ValidationError('jobs', 'must be an array');
  if (queue !== undefined) parse(queueNameSchema, queue, 'queue');
  const signal = signalOnly(options);
  if (jobs.length === 0) return [];
  // Column arrays, one per field, and the bodies as one JSON array (already
  // JSON text: joined, not escaped into an array literal, and parsed once by
  // the server). An option column exists only once some job sets it (null:
  // every element takes the default), so a plain batch sends one array and
  // one document, and its jobs skip the options schema.
  const tasks: string[] = new Array(jobs.length);
  const bodies: string[] = new Array(jobs.length);
  const columns: Partial<Record<OptionColumn, unknown[]>> = {};
  let attributes: string[] | undefined;
  let modes: (string | null)[] | undefined;
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
      (columns[k] ??= new Array(jobs.length).fill(null))[i] = r[k];
    }
    if (r.attributes !== null) (attributes ??= new Array<string>(jobs.length).fill('null'))[i] = r.attributes;
    if (r.dedupe_mode !== null) (modes ??= new Array<string | null>(jobs.length).fill(null))[i] = r.dedupe_mode;
  }
  try {
    const result = await send<{ ids: string }>(db,
      // Delays become run times here, from the call's clock read once (c.at, jobs.call_time as
      // publish's), as the expiries below: so expiresInSeconds counts from the same time
      // (publish_arrays' own jobs.call_time is read a little later). A plain batch sends none.
      `select array_to_string(jobs.publish_arrays($1::text[], $2::jsonb,
                                                  case when $4::float8[] is null then $3::timestamptz[]
                                                  else (select array_agg(coalesce(x.s, c.at + make_interval(secs => x.d)) order by x.o)
                                                        from unnest($3::timestamptz[], $4::float8[]) with ordinality x(s, d, o)) end,
                                                  null,
                                                  $5::numeric[], $6::integer[], $7::integer[], queue => $18,
                                                  dedupe_keys => $8::text[], serial_keys => $9::text[],
                                                  retry_delays => $10::numeric[], retry_backoffs => $11::text[],
                                                  retry_delay_maxes => $12::numeric[],
                                                  attributes => $19::jsonb, dead_letters => $15::text[],
                                                  group_ids => $16::text[], group_tiers => $17::text[],
                                                  dedupe_modes => $20::text[],
                                                  -- null (no array) unless a job has an expiry; expiresInSeconds after its scheduled
                                                  -- time (without runAt: after the call, as publish's; read once).
                                                  expires_at => (select array_agg(coalesce(x.e, coalesce(x.s, c.at + make_interval(secs => coalesce(x.d, 0)))
                                                                                                + make_interval(secs => x.i)) order by x.o)
                                                                 from unnest($13::timestamptz[], $3::timestamptz[], $4::float8[], $14::float8[])
                                                                      with ordinality x(e, s, d, i, o)
                                                                 where $13::timestamptz[] is not null or $14::float8[] is not null)), ',') as ids
       from (select jobs.call_time(null, jobs.clock(null)) as at) c`,
      // Task names are checked words (no quote, backslash or comma): quoted, they
      // make the array literal as they are, with no per-element escaping.
      [`{"${tasks.join('","')}"}`, `[${bodies.join(',')}]`, ...OPTION_COLUMNS.map((k) => columns[k] ?? null), queue ?? null,
       attributes ? `[${attributes.join(',')}]` : null, modes ?? null],
      signal,
    );
    return result.rows[0]!.ids.split(',');
  } catch (error) {
    throw asOption(fromZeroBased(translateError(error)), '');
  }
}

/**
 * The TS option a database field stands for: a check only the database makes
 * (a dedupe key that kept changing hands, an unknown dependency, too many
 * serial keys) names it as the caller wrote it, as the TS checks do.
 */
const OPTION_OF: Record<string, string> = {
  task: 'task', queue: 'queue', timeout: 'timeoutSeconds', timeout_seconds: 'timeoutSeconds', priority: 'priority', max_retries: 'maxRetries',
  scheduled_at: 'runAt', delay: 'delaySeconds', dedupe_key: 'dedupeKey', dedupe_mode: 'dedupeMode', dedupe_modes: 'dedupeMode',
  serial_key: 'serialKey', serial_keys: 'serialKey', depends_on: 'dependsOn', attributes: 'attributes',
  throttle_seconds: 'throttleSeconds', retry_delay: 'retryDelaySeconds', retry_backoff: 'retryBackoff',
  retry_delay_max: 'retryDelayMaxSeconds', expires_at: 'expiresAt', dead_letter: 'deadLetter',
  group_id: 'group.id', group_tier: 'group.tier',
};

/**
 * A PD error's field as the TS option (`dedupe_key` → `options.dedupeKey`,
 * `jobs[1].dedupe_key` → `jobs[1].dedupeKey`); prefix: where publish's
 * options are ('options.'; none for publishBulk, whose jobs carry them, and
 * the task); `queue` stays `queue` unless the caller gave options.queue (a
 * full default queue). The database's name stays on the error's cause.
 */
export function asOption(error: unknown, prefix: string, queueGiven = false): unknown {
  if (!(error instanceof PgDrainError) || !error.field) return error;
  const m = /^(jobs\[\d+\]\.)?([a-z_]+)$/.exec(error.field);
  const option = m && OPTION_OF[m[2]!];
  if (!option) return error;
  const field = m[1] ? `${m[1]}${option}` : option === 'task' || (option === 'queue' && !queueGiven) ? option : `${prefix}${option}`;
  if (field === error.field) return error;
  const rule = error.message.startsWith(`${error.field}: `) ? error.message.slice(error.field.length + 2) : error.message;
  return error instanceof ValidationError ? new ValidationError(field, rule, { cause: error.cause ?? error })
    : new PgDrainError(error.code, `${field}: ${rule}`, { field, cause: error.cause ?? error });
}

/**
 * A job the database names counts from 1 (jobs[2].task: SQL arrays); the
 * caller of publishBulk counts from 0, as its own checks do (jobs[1].task).
 */
function fromZeroBased(error: unknown): unknown {
  if (!(error instanceof PgDrainError) || !error.field) return error;
  const m = /^jobs\[(\d+)\]/.exec(error.field);
  if (!m) return error;
  const shift = (text: string) => text.replace(/^jobs\[(\d+)\]/, (_, n: string) => `jobs[${Number(n) - 1}]`);
  if (error instanceof ValidationError) return new ValidationError(shift(error.field), error.rule, { cause: error.cause ?? error });
  return new PgDrainError(error.code, shift(error.message), { field: shift(error.field), cause: error.cause ?? error });
}
