import * as z from 'zod/mini';
import type { Queryable } from './db/driver.js';
import { PgDrainError, ValidationError } from './errors.js';
import { jsonParam } from './json-text.js';
import { checkQueryable } from './driver-check.js';
import { checkCron, checkTz } from './cron-checks.js';
import { publishOptionsSchema } from './job-options.js';
import { keySchema, parse, queueNameSchema, scheduleNameSchema, taskSchema } from './options.js';
import { callValue, signalOnly, type SignalOption } from './send.js';
import type { JobGroup } from './types.js';

// Recurring jobs (sql/0022_schedule.sql, sql/0042), one SQL call each
// (maintenance: maintain.ts).
// Cron expressions are checked here with croner before any round trip; the
// database checks them again with the same grammar (5 fields, UTC or a time
// zone), and pg_cron or the drains fire them. An RFC 5545 recurrence rule
// goes where cron does: the database checks it, and the drains fire it.

/** What fires a schedule: pg_cron in this database, or the drains' claims. */
export type ScheduleRunner = 'pg_cron' | 'drains';

/** Whether a tick publishes while a job of the schedule is still active. */
export type ScheduleOverlap = 'allow' | 'skip';

/** A recurring job: at each tick of `cron` (UTC, or `tz`), one job of `task` with `body`. */
export interface ScheduleSpec {
  /** Unique; scheduling the same name again replaces it. */
  name: string;
  /**
   * Five fields (minute hour day-of-month month day-of-week) or @hourly,
   * @daily, …; or an RFC 5545 recurrence: 'FREQ=WEEKLY;BYDAY=MO;BYHOUR=9', or
   * DTSTART[;TZID=zone]:, RRULE:, RDATE: and EXDATE: lines (runner drains).
   */
  cron: string;
  task: string;
  body?: unknown;
  timeoutSeconds?: number | undefined;
  priority?: number | undefined;
  maxRetries?: number | undefined;
  queue?: string | undefined;
  /** Default: pg_cron when it is installed in this database, no tz is given and cron is no recurrence rule, else drains. */
  runner?: ScheduleRunner | undefined;
  /**
   * 'allow' (default): every tick publishes a job. 'skip': a tick publishes
   * nothing while a job of this schedule is active (pending, scheduled,
   * blocked or running), and is counted in skippedTicks.
   */
  overlap?: ScheduleOverlap | undefined;
  /** An IANA time zone ('Europe/Paris') whose wall clock the expression reads; default UTC. Runner drains only. */
  tz?: string | undefined;
  /**
   * Seconds (at most 366 days): the drains publish one job per tick they
   * missed within this window before now, oldest first, each scheduled at its
   * tick (default: one job for all the ticks missed). Runner drains, overlap 'allow'.
   * Every job of a schedule carries attributes { schedule, tick }: its tick
   * (ISO 8601 UTC) on every attempt, as a retry moves scheduledAt.
   */
  backfillSeconds?: number | undefined;
  /** The serial key of every job it publishes: its ticks' jobs run one at a time (a change applies from the next tick). */
  serialKey?: string | undefined;
  /**
   * The dedupe key every tick publishes with, as publish's dedupeKey
   * (graphile-worker's crontab ?jobKey=): other publishes may share it.
   * Overlap 'allow' only ('skip' gives its jobs a key of its own).
   */
  dedupeKey?: string | undefined;
  /**
   * What a tick does while a job holds dedupeKey, as publish's dedupeMode:
   * 'keep' (default) publishes nothing (lastJobId: the holder);
   * 'keep_waiting' too while the holder has not started, else a new job
   * takes the key (a running holder finishes keyless); 'replace'
   * makes the waiting holder the tick's job; 'replace_keep_time' too, but it
   * keeps its time. With backfill, the missed ticks go oldest first.
   */
  dedupeMode?: ScheduleDedupeMode | undefined;
  /**
   * The group (and tier) of every job it publishes, as publish's group
   * (pg-boss's schedule options): its queue's groupConcurrency caps the
   * ticks' running jobs with the group's others. A change applies from the next tick.
   */
  group?: JobGroup | undefined;
}

/** What a schedule's tick does while a job holds its dedupe key (publish's dedupeMode). */
export type ScheduleDedupeMode = 'keep' | 'keep_waiting' | 'replace' | 'replace_keep_time';

/** A row of the jobs.schedules view. */
export interface ScheduleInfo {
  name: string;
  cron: string;
  task: string;
  body: unknown;
  queue: string | null;
  runner: ScheduleRunner;
  /** The pg_cron job's name (pgdrain:schedule:<name>) when pg_cron runs it. */
  pgCronJob: string | null;
  /**
   * null: a recurrence rule with no occurrence left (COUNT or UNTIL ended it), or, with a
   * lastError saying 'stopped', a schedule whose next tick could not be computed within a
   * tick's budget (jobs.max_tick_steps()) until jobs.schedule is called for it again: it fires no more.
   */
  nextRunAt: Date | null;
  lastRunAt: Date | null;
  lastJobId: string | null;
  /**
   * Why the last tick could not publish (or why the schedule stopped), if it could not: kept until a
   * tick publishes, schedule() called again included (which clears only a stop, restarting it).
   */
  lastError: string | null;
  overlap: ScheduleOverlap;
  /** The time zone the expression reads ('UTC' when none was given). */
  tz: string;
  /** Ticks that published nothing because a job of the schedule was still active (overlap 'skip'). */
  skippedTicks: number;
  lastSkippedAt: Date | null;
  /** The backfill window in seconds, or null (none). */
  backfillSeconds: number | null;
  /** The serial key its jobs carry, or null (none). */
  serialKey: string | null;
  /** The dedupe key its ticks publish with, or null (none). */
  dedupeKey: string | null;
  /** Its dedupe mode, or null (keep, when there is a key). */
  dedupeMode: ScheduleDedupeMode | null;
  /** The group its jobs carry ({ id, tier: null when none }), or null (none). */
  group: { id: string; tier: string | null } | null;
}

const nameSchema = scheduleNameSchema;
const specSchema = z.strictObject({
  name: nameSchema,
  cron: z.string(),
  task: taskSchema,
  body: z.optional(z.unknown()),
  timeoutSeconds: publishOptionsSchema.shape.timeoutSeconds,
  priority: publishOptionsSchema.shape.priority,
  maxRetries: publishOptionsSchema.shape.maxRetries,
  queue: z.optional(queueNameSchema),
  runner: z.optional(z.enum(['pg_cron', 'drains'])),
  overlap: z.optional(z.enum(['allow', 'skip'])),
  tz: z.optional(z.string()),
  backfillSeconds: z.optional(z.number().check(z.gt(0, 'must be greater than 0'),
    z.maximum(31_622_400, 'must be at most 31622400 (366 days)'))),
  serialKey: z.optional(keySchema),
  dedupeKey: publishOptionsSchema.shape.dedupeKey,
  dedupeMode: publishOptionsSchema.shape.dedupeMode,
  group: publishOptionsSchema.shape.group,
}).check(z.refine((s) => s.dedupeMode === undefined || s.dedupeKey !== undefined, {
  message: 'needs a dedupe key (the key whose job it keeps or replaces)', path: ['dedupeMode'] }),
  z.refine((s) => s.dedupeKey === undefined || s.overlap !== 'skip', { path: ['dedupeKey'],
    message: "cannot be given with overlap 'skip', whose jobs carry a dedupe key of their own: a key in keep mode (the default) already publishes no tick while its job is active" }));

// jobs.schedule's arguments as the spec names them: a check only the
// database makes (an unknown queue, backfill with overlap 'skip', a 'CET'
// tz) names the field as the TS checks do (spec.backfillSeconds, not backfill).
const SPEC_FIELD: Record<string, string> = {
  name: 'spec.name', cron: 'spec.cron', task: 'spec.task', body: 'spec.body', timeout: 'spec.timeoutSeconds',
  priority: 'spec.priority', max_retries: 'spec.maxRetries', queue: 'spec.queue', runner: 'spec.runner',
  overlap: 'spec.overlap', tz: 'spec.tz', backfill: 'spec.backfillSeconds',
  serial_key: 'spec.serialKey', dedupe_key: 'spec.dedupeKey', dedupe_mode: 'spec.dedupeMode',
  group_id: 'spec.group.id', group_tier: 'spec.group.tier',
};

/** A database error naming one of jobs.schedule's arguments, renamed to the spec's field (the SQL name stays on the cause). */
function asSpecField(error: unknown): unknown {
  if (!(error instanceof PgDrainError) || error.code !== 'invalid_argument' || error.field === undefined) return error;
  const field = SPEC_FIELD[error.field];
  if (field === undefined) return error;
  const rule = error.message.startsWith(`${error.field}: `) ? error.message.slice(error.field.length + 2) : error.message;
  return new ValidationError(field, rule, { cause: error.cause ?? error });
}

/** schedule()'s checks, with no database: what it would send, or its ValidationError (the CLI's, before connecting). */
export function checkSchedule(spec: ScheduleSpec) {
  const s = parse(specSchema, spec, 'spec', 'schedule');
  return { s, cron: checkCron(s.cron, 'spec.cron'), tz: s.tz === undefined ? null : checkTz(s.tz, 'spec.tz'),
           body: jsonParam(s.body, 'spec.body') };
}

/**
 * Creates or replaces a recurring job (jobs.schedule); idempotent, so it is
 * safe to call at every start. Returns the runner that will fire it.
 */
export async function schedule(db: Queryable, spec: ScheduleSpec): Promise<ScheduleRunner> {
  checkQueryable(db, 'db');
  const { s, cron, tz, body } = checkSchedule(spec);
  return callValue<ScheduleRunner>(db,
    `select jobs.schedule(name => $1, cron => $2, task => $3, body => $4::jsonb, timeout => $5::numeric,
       priority => $6::integer, max_retries => $7::integer, queue => $8, runner => $9, overlap => $10, tz => $11,
       backfill => $12::numeric, serial_key => $13, dedupe_key => $14, dedupe_mode => $15,
       group_id => $16, group_tier => $17) as r`,
    [s.name, cron, s.task, body, s.timeoutSeconds ?? null, s.priority ?? null, s.maxRetries ?? null,
     s.queue ?? null, s.runner ?? null, s.overlap ?? null, tz, s.backfillSeconds ?? null, s.serialKey ?? null,
     s.dedupeKey ?? null, s.dedupeMode ?? null, s.group?.id ?? null, s.group?.tier ?? null])
    .catch((error: unknown) => { throw asSpecField(error); });
}

/** Removes a recurring job and its pg_cron job; false when there was none. */
export async function unschedule(db: Queryable, name: string): Promise<boolean> {
  parse(nameSchema, name, 'name');
  return callValue(db, 'select jobs.unschedule($1) as r', [name]);
}

interface ScheduleRow {
  name: string; cron: string; task: string; body: unknown; queue: string | null; runner: ScheduleRunner;
  pg_cron_job: string | null; next_run_at: string | Date | null; last_run_at: string | Date | null;
  last_job_id: string | null; last_error: string | null; overlap: ScheduleOverlap; tz: string;
  skipped_ticks: number | string; last_skipped_at: string | Date | null; backfill: number | string | null;
  serial_key: string | null; dedupe_key: string | null; dedupe_mode: ScheduleDedupeMode | null;
  group_id: string | null; group_tier: string | null;
}

/** Every recurring job, from the jobs.schedules view, by name; given up when options.signal fires (send.ts). */
export async function listSchedules(db: Queryable, options?: SignalOption): Promise<ScheduleInfo[]> {
  const rows = await callValue<ScheduleRow[] | null>(db,
    `select coalesce(jsonb_agg(to_jsonb(s) order by s.name), '[]') as r from jobs.schedules s`, [], signalOnly(options));
  return (rows ?? []).map((r) => ({
    name: r.name, cron: r.cron, task: r.task, body: r.body, queue: r.queue, runner: r.runner,
    pgCronJob: r.pg_cron_job, nextRunAt: r.next_run_at === null ? null : new Date(r.next_run_at),
    lastRunAt: r.last_run_at === null ? null : new Date(r.last_run_at),
    lastJobId: r.last_job_id === null ? null : String(r.last_job_id), lastError: r.last_error,
    overlap: r.overlap, tz: r.tz, skippedTicks: Number(r.skipped_ticks),
    lastSkippedAt: r.last_skipped_at === null ? null : new Date(r.last_skipped_at),
    backfillSeconds: r.backfill === null ? null : Number(r.backfill), serialKey: r.serial_key,
    dedupeKey: r.dedupe_key, dedupeMode: r.dedupe_mode,
    group: r.group_id === null ? null : { id: r.group_id, tier: r.group_tier },
  }));
}
