import { asCommand, asTsCalls } from './hint-calls.js';

// Schedules a tick stopped (sql/0023: their next tick out of a tick's
// budget, its due one published; with backfill, one not computable at all,
// its due one published too): next_run_at null, last_error beginning with
// STOPPED_PREFIX, until jobs.schedule is called for them again. Worded once
// here for every place that shows them: `pgdrain schedule list` and
// `pgdrain stats`, the dashboard, GET /stats and /metrics (jobs.stopped_schedules).

/** How last_error begins for a schedule a tick stopped (sql/0023's jobs.publish_due_schedules). */
export const STOPPED_PREFIX = 'stopped until jobs.schedule is called for it again: ';

/**
 * One statement for `pgdrain stats`, GET /stats and /metrics: one row of
 * `rows`, the rows of `sql` as JSON ordered by `orderBy` (its columns as
 * r.<column>), and `stopped`, the stopped schedules' names (JSON): their
 * counts and the stopped schedules in one round trip.
 */
export function withStoppedSchedules(sql: string, orderBy: string): string {
  return `select coalesce((select json_agg(r order by ${orderBy}) from (${sql}) r), '[]') as rows,
  coalesce((select json_agg(s.name order by s.name) from jobs.stopped_schedules s), '[]') as stopped`;
}

/** The row withStoppedSchedules' statement answers. */
export interface WithStoppedSchedules<R> { rows: R[]; stopped: string[] }

/** Whether a schedule's last_error says a tick stopped it. */
export function isStopped(lastError: string | null): boolean {
  return lastError !== null && lastError.startsWith(STOPPED_PREFIX);
}

/** A schedule's next run when it has none: stopped, ended with an error, or its rule ended. */
export function noNextRun(lastError: string | null): string {
  if (lastError === null) return 'none: the rule ended';
  return isStopped(lastError) ? 'none: stopped, see last error' : 'none: see last error';
}

/** What restarts a stopped schedule, to a reader of the CLI or the dashboard (no route of the API schedules): the command. */
const RESTART = 'pgdrain schedule add is run for it again';

/** One line naming the stopped schedules, or null when none is: for `pgdrain stats` and the dashboard. */
export function stoppedSummary(names: readonly string[]): string | null {
  if (names.length === 0) return null;
  return `stopped schedules (${names.length}): ${names.join(', ')}; each until ${RESTART}, its last error says why`;
}

/**
 * A schedule's last_error (written by SQL, in SQL's words) as `pgdrain schedule list` and the dashboard show it:
 * its fix-it hints as the commands (jobs.create_queue('q', max_size => ...) as pgdrain queue create q --max-size N),
 * and a stop's "until jobs.schedule is called for it again" as the command that restarts it.
 */
export function lastErrorForCommand(lastError: string): string {
  // Each message it joins (sql/0023: '<message> (SQLSTATE PD009) at <time>; its next tick: ...') ends with its
  // own hint; of the stop's words, only the prefix pgdrain wrote: a message may echo the caller's own text.
  const text = lastError.split(/( \(SQLSTATE [0-9A-Z]{5}\))/).map((part, i) => i % 2 ? part : asCommand(asTsCalls(part))).join('');
  return isStopped(text) ? `stopped until ${RESTART}: ${text.slice(STOPPED_PREFIX.length)}` : text;
}

/**
 * What jobs.tick_settings_error (sql/0040) answered for a bad pgdrain.tick_wait_ms or pgdrain.tick_budget
 * ('<setting>: <rule>, got ...'), as one line for `pgdrain stats` and the dashboard; null when they are good.
 */
export function tickSettingsSummary(error: string | null): string | null {
  return error === null ? null : `bad setting ${error}; until then a claim that would wait for a bounded queue's tick fails (PDC03)`;
}
