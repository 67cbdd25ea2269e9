import type { MiddlewareHandler } from 'hono';
import { html, raw } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';
import type { Queryable } from '../db/driver.js';
import { sliceUnits } from '../error-text.js';
import { PgDrainError, translateError, ValidationError } from '../errors.js';
import { createQueueCommand } from '../hint-calls.js';
import { parse, queueNameSchema } from '../options.js';
import { isStopped, lastErrorForCommand, noNextRun, stoppedSummary, tickSettingsSummary } from '../schedule-stopped.js';
import { send } from '../send.js';
import type { DashboardAction } from './dashboard-actions.js';

// GET /dashboard: an HTML page of the queues, the last failures and the
// schedules, from one statement. No scripts. Read-only unless the app has
// dashboardActions: then its forms (pause, resume, redrive, cancel) post to
// the routes of dashboard-routes.ts, guarded as dashboard-guard.ts says.

/** How many of the latest failures the page lists. */
export const DASHBOARD_FAILURES = 50;
/** The length an error's first line is cut to. */
const ERROR_CHARS = 200;

/**
 * The page's data as one jsonb value, $1 a queue name or null (every queue).
 * The states are GET /metrics' (COUNTS_SQL, counts.ts): the queued jobs, and of the
 * ended ones only the failures, through their partial index; the failures
 * list walks job_failure_idx back from the newest, never the whole history.
 */
export const DASHBOARD_SQL = `select jsonb_build_object(
  'queues', (select coalesce(jsonb_agg(to_jsonb(x) order by x.name), '[]') from (
    select qu.name, qu.paused, qu.max_size, qu.max_running, qu.group_concurrency, qu.group_tiers, qu.expire_in::float8 as expire_in,
           count(*) filter (where s.state = 'pending') as pending, count(*) filter (where s.state = 'scheduled') as scheduled,
           count(*) filter (where s.state = 'blocked') as blocked, count(*) filter (where s.state = 'running') as running,
           count(*) filter (where s.state = 'expired') as expired, count(*) filter (where s.state = 'failure') as failed,
           extract(epoch from now() - min(s.scheduled_at) filter (where s.state = 'pending'))::float8 as oldest_due_s
    from jobs.queue qu
    left join (select q.queue, q.scheduled_at, jobs.state_of(q.lease_until, q.scheduled_at, q.waiting_deps, q.serial_wait) as state
               from jobs.job_queue q
               union all
               select j.queue, j.scheduled_at, 'failure' from jobs.job j where j.status = 'failure') s on s.queue = qu.name
    where $1::text is null or qu.name = $1
    group by qu.name) x),
  'failures', (select coalesce(jsonb_agg(to_jsonb(f) - 'job_id' order by f.ended_at desc, f.job_id desc), '[]') from (
    select j.job_id, j.job_id::text as id, j.task, j.queue, j.attempts, j.ended_at,
           left(split_part(j.error, E'\\n', 1), ${ERROR_CHARS + 1}) as error
    from jobs.job j
    where j.status = 'failure' and ($1::text is null or j.queue = $1)
    order by j.ended_at desc, j.job_id desc limit ${DASHBOARD_FAILURES}) f),
  'schedules', (select coalesce(jsonb_agg(to_jsonb(r) order by r.name), '[]') from (
    select s.name, s.cron, s.tz, s.task, coalesce(s.queue, 'default') as queue, s.group_id, s.group_tier, s.runner,
           s.next_run_at, s.last_run_at, s.last_error
    from jobs.schedules s
    where $1::text is null or coalesce(s.queue, 'default') = $1) r),
  'tick_settings', jobs.tick_settings_error()) as r`;

export interface DashboardQueue {
  name: string; paused: boolean; max_size: number | null; max_running: number | null; expire_in: number | null;
  group_concurrency: number | null; group_tiers: Record<string, number> | null;
  pending: number; scheduled: number; blocked: number; running: number; expired: number; failed: number;
  oldest_due_s: number | null;
}
export interface DashboardFailure { id: string; task: string; queue: string; attempts: number; ended_at: string; error: string | null }
export interface DashboardSchedule {
  name: string; cron: string; tz: string; task: string; queue: string; group_id: string | null; group_tier: string | null;
  runner: string; next_run_at: string | null; last_run_at: string | null; last_error: string | null;
}
export interface DashboardData {
  queues: DashboardQueue[]; failures: DashboardFailure[]; schedules: DashboardSchedule[];
  /** What jobs.tick_settings_error says of the server's session (null: its tick settings are good). */
  tick_settings: string | null;
}

/** The page's query string: `queue` (once, a queue name) or nothing. */
export function parseDashboardQuery(query: Record<string, string[]>): string | undefined {
  for (const [key, values] of Object.entries(query)) {
    if (key !== 'queue') throw new ValidationError(key, 'unknown query parameter (the dashboard takes only "queue")');
    if (values.length > 1) throw new ValidationError(key, `must be given once in the query string, got ${values.length}`);
  }
  const queue = query.queue?.[0];
  return queue === undefined ? undefined : parse(queueNameSchema, queue, 'queue');
}

/**
 * Reads the page's data in one round trip, given up when signal fires (the
 * app's read bound: its time, or the request's end) with its connection
 * ended (as /metrics is). An unknown queue is a 400.
 */
export async function readDashboard(db: Queryable, queue: string | undefined, signal: AbortSignal): Promise<DashboardData> {
  let data: DashboardData;
  try {
    const { rows } = await send<{ r: DashboardData }>(db, DASHBOARD_SQL, [queue ?? null], signal);
    data = rows[0]!.r;
  } catch (error) {
    const e = translateError(error);
    throw e instanceof PgDrainError ? e : new PgDrainError('database_unavailable', 'database unavailable', { cause: error });
  }
  if (queue !== undefined && data.queues.length === 0) {
    // Its reader has a browser, not psql: the command, as the API's hints (errorAnswer).
    throw new ValidationError('queue', `no queue named ${JSON.stringify(queue)}; create it with ${createQueueCommand(queue)}`);
  }
  return data;
}

/**
 * The answer's headers: no script may run, nothing is cached, framed or
 * sniffed. Read-only, no referrer is sent on; with actions, forms post to
 * this server only, no page may frame it (frame-ancestors too, besides
 * X-Frame-Options), and the referrer goes to it alone: a browser sends
 * `Origin: null` with the form of a page whose policy is no-referrer, and
 * the actions need the real origin (checkSameOrigin).
 */
export function dashboardHeaders(actions: boolean): MiddlewareHandler {
  const policy = `default-src 'none'; style-src 'unsafe-inline'${actions ? "; form-action 'self'; frame-ancestors 'none'" : ''}`;
  return async (c, next) => {
    c.header('Content-Security-Policy', policy);
    c.header('X-Content-Type-Options', 'nosniff');
    c.header('Referrer-Policy', actions ? 'same-origin' : 'no-referrer');
    c.header('Cache-Control', 'no-store');
    c.header('X-Frame-Options', 'DENY');
    await next();
  };
}

/**
 * What a page with actions needs: each form's token (of its action and the
 * fields the page fills in), the forms' path relative to the page, the note
 * of the last action, and the most a queue's redrive puts back per click.
 */
export interface PageActions {
  formToken: (action: DashboardAction, fields: Record<string, string>) => Promise<string>;
  base: string; note?: string | undefined; redriveRows: number;
}

export const STYLE = `body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 2em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}caption{text-align:left;font-weight:bold;padding:.3em 0}
.paused{color:#b00}.muted{color:#777}code{font-size:13px}form{display:inline;margin:0}
.note{background:#eef6ee;border:1px solid #9c9;padding:.4em .6em}.error{background:#fbeeee;border:1px solid #c99;padding:.4em .6em}`;

/** The whole page; every value goes through `html`, which escapes it. */
export function renderDashboard(data: DashboardData, queue: string | undefined, now = new Date(),
                                actions?: PageActions): HtmlEscapedString | Promise<HtmlEscapedString> {
  // A failure or schedule may name a queue deleted since: no link to a page that would answer 400.
  const queues = new Set(data.queues.map((q) => q.name));
  const link = (name: string) => (queue !== undefined || !queues.has(name) ? html`${name}`
    : html`<a href="?queue=${encodeURIComponent(name)}">${name}</a>`);
  const count = (n: number) => html`<td class="n">${n}</td>`;
  const limit = (n: number | null) => html`<td class="n">${n ?? '–'}</td>`;
  const none = (columns: number, what: string) => html`<tr><td colspan="${columns}" class="muted">${what}</td></tr>`;
  // A form of one button (or, for cancel, a job id to type) that comes back to this page.
  const form = (action: DashboardAction, fields: Record<string, string>, label: string, input = html``) => (actions === undefined ? ''
    : html`<form method="post" action="${actions.base}${action}"><input type="hidden" name="csrf" value="${actions.formToken(action, fields)}">${
      Object.entries(fields).map(([name, value]) => html`<input type="hidden" name="${name}" value="${value}">`)
    }<input type="hidden" name="back" value="${queue ?? ''}">${input}<button>${label}</button></form>`);
  const act = actions === undefined ? () => '' : (...forms: unknown[]) => html`<td>${forms}</td>`;
  const actHead = actions === undefined ? '' : html`<th>actions</th>`;
  const stopped = stoppedSummary(data.schedules.filter((s) => s.next_run_at === null && isStopped(s.last_error)).map((s) => s.name));
  const settings = tickSettingsSummary(data.tick_settings);
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8">${actions === undefined ? html`<meta http-equiv="refresh" content="10">` : ''}
<title>pgdrain${queue === undefined ? '' : ` – ${queue}`}</title><style>${raw(STYLE)}</style></head>
<body><h1>pgdrain</h1>
${actions?.note === undefined ? '' : html`<p class="note">${actions.note}</p>`}
${stopped === null ? '' : html`<p class="error">${stopped} (Schedules, below).</p>`}
${settings === null ? '' : html`<p class="error">${settings}.</p>`}
<p class="muted">${actions === undefined ? 'Read-only; refreshes every 10 s.' : 'Reload for fresh counts (a page with forms does not refresh itself).'} ${
  time(now)}.${queue === undefined ? '' : html` Queue <strong>${queue}</strong> only: <a href="?">all queues</a>.`}</p>
<table><caption>Queues</caption>
<tr><th>queue</th><th>paused</th><th>max_size</th><th>max_running</th><th>per group</th><th>pending</th><th>scheduled</th><th>blocked</th>
<th>running</th><th>expired</th><th>failed</th><th>oldest due</th><th>expire_in</th>${actHead}</tr>
${data.queues.length === 0 ? none(actions ? 14 : 13, 'no queues') : data.queues.map((q) => html`<tr><td>${link(q.name)}</td>
<td${q.paused ? html` class="paused"` : ''}>${q.paused ? 'paused' : 'no'}</td>${limit(q.max_size)}${limit(q.max_running)}
<td class="n">${q.group_concurrency ?? '–'}${q.group_tiers === null ? ''
  : ` (${Object.entries(q.group_tiers).map(([tier, n]) => `${tier} ${n}`).join(', ')})`}</td>
${count(q.pending)}${count(q.scheduled)}${count(q.blocked)}${count(q.running)}${count(q.expired)}${count(q.failed)}
<td class="n">${q.oldest_due_s === null ? '–' : age(q.oldest_due_s)}</td>
<td class="n">${q.expire_in === null ? '–' : q.expire_in < 60 ? `${q.expire_in} s` : age(q.expire_in)}</td>
${act(q.paused ? form('resume', { queue: q.name }, 'resume') : form('pause', { queue: q.name }, 'pause'),
      q.failed === 0 ? '' : html` ${form('redrive', { queue: q.name },
        actions && q.failed > actions.redriveRows ? `redrive ${actions.redriveRows} of ${q.failed} failed` : `redrive ${q.failed} failed`)}`)}</tr>`)}
</table>
${form('cancel', {}, 'cancel', html`<label>Cancel a waiting or running job: <input name="job" required pattern="[1-9][0-9]*"
 inputmode="numeric" placeholder="job id" size="12"></label> `)}
<table><caption>Last ${DASHBOARD_FAILURES} failures</caption>
<tr><th>id</th><th>task</th><th>queue</th><th>attempts</th><th>ended</th><th>error (first line)</th>${actHead}</tr>
${data.failures.length === 0 ? none(actions ? 7 : 6, 'no failures') : data.failures.map((f) => html`<tr><td class="n">${f.id}</td><td>${f.task}</td>
<td>${link(f.queue)}</td>${count(f.attempts)}<td>${time(f.ended_at)}</td><td><code>${firstLine(f.error)}</code></td>
${act(queues.has(f.queue) ? form('redrive', { job: f.id }, 'redrive') : '')}</tr>`)}
</table>
<table><caption>Schedules</caption>
<tr><th>name</th><th>cron</th><th>task</th><th>queue</th><th>group</th><th>runner</th><th>next run</th><th>last run</th><th>last error</th></tr>
${data.schedules.length === 0 ? none(9, 'no schedules') : data.schedules.map((s) => html`<tr><td>${s.name}</td>
<td><code>${lines(s.cron)}</code>${s.tz === 'UTC' ? '' : ` (${s.tz})`}</td><td>${s.task}</td><td>${link(s.queue)}</td>
<td>${s.group_id === null ? '–' : s.group_tier === null ? s.group_id : `${s.group_id} (tier ${s.group_tier})`}</td><td>${s.runner}</td>
<td>${s.next_run_at === null ? noNextRun(s.last_error) : time(s.next_run_at)}</td><td>${s.last_run_at === null ? '–' : time(s.last_run_at)}</td>
<td>${s.last_error === null ? '–' : html`<code>${firstLine(lastErrorForCommand(s.last_error))}</code>`}</td></tr>`)}
</table>
</body></html>
`;
}

/** A recurrence rule's lines (DTSTART, RRULE, RDATE…) as the page's lines, each escaped: HTML would run them into one. */
function lines(text: string) {
  return text.split(/\r\n|\r|\n/).map((line, i) => (i === 0 ? html`${line}` : html`<br>${line}`));
}

/** The first line, cut to ERROR_CHARS. */
function firstLine(error: string | null): string {
  const line = (error ?? '').split('\n')[0]!;
  return line.length > ERROR_CHARS ? `${sliceUnits(line, ERROR_CHARS - 1)}…` : line;
}

/** 2026-11-22 10:04:05Z; a time JavaScript cannot hold (PostgreSQL's infinity, a year past 275760) as the database wrote it. */
function time(at: string | Date): string {
  const d = new Date(at);
  return Number.isNaN(d.getTime()) ? String(at) : `${d.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

/** 45 s, 12 min 5 s, 3 h 20 min, 2 d 4 h */
function age(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}
