import * as z from 'zod/mini';
import type { Queryable } from './db/driver.js';
import { PgDrainError, ValidationError, translateError } from './errors.js';
import { groupCapSchema, groupTiersSchema, namedQueueOptionsSchema, publishOptionsSchema, retryPolicyOptions } from './job-options.js';
import { parse, queueNameSchema } from './options.js';
import { callValue, send, signalOnly, takeSignal, type SignalOption } from './send.js';
import type { NamedQueueInfo, NamedQueueOptions } from './types.js';

// A named queue's settings: queues.create (jobs.create_queue, sql/0017) and
// queues.list, each one SQL call.

/** queues.create's options: the queue's settings, its retry policy (jobs.create_queue's retry_*, sql/0017) and expiry. */
const queueOptionsSchema = z.extend(namedQueueOptionsSchema, {
  retryDelaySeconds: z.optional(z.nullable(retryPolicyOptions.retryDelaySeconds.def.innerType)),
  retryBackoff: z.optional(z.nullable(retryPolicyOptions.retryBackoff.def.innerType)),
  retryDelayMaxSeconds: z.optional(z.nullable(retryPolicyOptions.retryDelayMaxSeconds.def.innerType)),
  maxRunning: z.optional(z.nullable(z.number().check(z.refine((n) => Number.isInteger(n) && n >= 1 && n <= 100_000,
    'must be an integer between 1 and 100000')))),
  // publish's expiresInSeconds, its name and bounds, as jobs.create_queue's expire_in
  // (pg-boss's queue expireInSeconds is a running job's limit: peer-options.ts refuses it).
  expiresInSeconds: z.optional(z.nullable(publishOptionsSchema.shape.expiresInSeconds.def.innerType)),
  // A number or { default, tiers }: each checked below, naming its place.
  groupConcurrency: z.optional(z.nullable(z.unknown())),
}).check(z.refine((o) => typeof o.retryDelaySeconds !== 'number' || typeof o.retryDelayMaxSeconds !== 'number'
  || o.retryDelayMaxSeconds >= o.retryDelaySeconds,
  { message: 'must be at least the retry delay', path: ['retryDelayMaxSeconds'] }));

// A queue option and the create_queue argument it is (its type for a null).
const QUEUE_ARGS = [['maxSize', 'max_size', 'integer'], ['timeoutSeconds', 'default_timeout', 'numeric'],
  ['priority', 'default_priority', 'integer'], ['maxRetries', 'default_max_retries', 'integer'],
  ['deadLetter', 'dead_letter', 'text'], ['retryDelaySeconds', 'retry_delay', 'numeric'],
  ['retryBackoff', 'retry_backoff', 'text'], ['retryDelayMaxSeconds', 'retry_delay_max', 'numeric'],
  ['maxRunning', 'max_running', 'integer'], ['expiresInSeconds', 'expire_in', 'numeric']] as const;
// What only the database can check: which queues exist (and where their dead
// letters go), and a retry delay against the cap the queue keeps, or back.
const CHECKED_IN_SQL: Record<string, string> = { dead_letter: 'deadLetter', retry_delay: 'retryDelaySeconds',
  retry_delay_max: 'retryDelayMaxSeconds' };

/** createNamedQueue()'s checks, with no database: its options, or its ValidationError (the CLI's, before connecting). */
export function checkNamedQueue(name: string, options: NamedQueueOptions & SignalOption = {}) {
  parse(queueNameSchema, name, 'name');
  const { signal, rest } = takeSignal(options, 'options');
  const o = parse(queueOptionsSchema, rest, 'options', 'queue');
  const g = o.groupConcurrency;
  const group = g === undefined || g === null ? g : typeof g === 'object'
    ? parse(groupTiersSchema, g, 'options.groupConcurrency')
    : { default: parse(groupCapSchema, g, 'options.groupConcurrency'), tiers: undefined };
  return { signal, o, group };
}

/**
 * Creates a named queue, or changes an existing one (jobs.create_queue):
 * only the options given are sent, so only they change; null clears one.
 */
export async function createNamedQueue(db: Queryable, name: string, options: NamedQueueOptions & SignalOption = {}): Promise<void> {
  const { signal, o, group } = checkNamedQueue(name, options);
  const params: unknown[] = [name];
  let args = '';
  for (const [option, arg, type] of QUEUE_ARGS) {
    const value = o[option];
    if (value === undefined) continue;
    params.push(typeof value === 'boolean' ? (value ? 'exponential' : 'fixed') : value);
    args += `, ${arg} => $${params.length}::${type}`;
  }
  // A number sets the cap and clears the tiers; null clears both.
  if (group !== undefined) {
    params.push(group?.default ?? null, group?.tiers && Object.keys(group.tiers).length > 0 ? JSON.stringify(group.tiers) : null);
    args += `, group_concurrency => $${params.length - 1}::integer, group_tiers => $${params.length}::jsonb`;
  }
  try {
    await callValue(db, `select jobs.create_queue($1${args}) as r`, params, signal);
  } catch (error) {
    const option = error instanceof PgDrainError ? CHECKED_IN_SQL[error.field ?? ''] : undefined;
    if (!option) throw error;
    throw new ValidationError(`options.${option}`, (error as PgDrainError).message.replace(/^[a-z_]+: /, ''), { cause: error });
  }
}

/** Every named queue and its settings, by name; given up when options.signal fires (send.ts). */
export async function listNamedQueues(db: Queryable, options?: SignalOption): Promise<NamedQueueInfo[]> {
  const { rows } = await send<Record<string, unknown>>(db,
    `select name, max_size, paused, default_timeout::float8 as timeout, default_priority, default_max_retries,
            dead_letter, retry_delay::float8 as retry_delay, retry_backoff, retry_delay_max::float8 as retry_delay_max,
            max_running, expire_in::float8 as expire_in, group_concurrency, group_tiers, created_at
     from jobs.queue order by name`, [], signalOnly(options)).catch((error: unknown) => { throw translateError(error); });
  return rows.map((r) => ({
    name: r.name as string, maxSize: r.max_size as number | null, paused: r.paused as boolean,
    timeoutSeconds: r.timeout as number | null, priority: r.default_priority as number | null,
    maxRetries: r.default_max_retries as number | null, deadLetter: r.dead_letter as string | null,
    retryDelaySeconds: r.retry_delay as number | null, retryBackoff: r.retry_backoff as boolean | null,
    retryDelayMaxSeconds: r.retry_delay_max as number | null, maxRunning: r.max_running as number | null,
    expiresInSeconds: r.expire_in as number | null,
    groupConcurrency: r.group_concurrency === null ? null : r.group_tiers === null ? r.group_concurrency as number
      : { default: r.group_concurrency as number, tiers: r.group_tiers as Record<string, number> },
    createdAt: new Date(r.created_at as string | Date),
  }));
}
