import type { DrainReport } from '../types.js';

// Prometheus text exposition (format 0.0.4), written by hand: a few gauges
// from one query and this process's drain counters need no client library.

/** Upper bounds of the drain duration histogram, in seconds. */
const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900];

// Report fields counted as jobs by outcome: each claimed delivery ends in one
// of them. Claims are counted apart (summed with these they count jobs twice),
// and `skipped` is a state, not an event: a gauge of the last drain's.
/**
 * The gauge's HELP: its reader may run the CLI, TS or SQL, so each one's way to restart a stopped schedule
 * (schedule-stopped.ts words the CLI's for the dashboard and `pgdrain stats`).
 */
const STOPPED_HELP = 'Schedules a tick stopped (their next tick not computable): none fires until it is scheduled again '
  + 'with a rule it can compute (the CLI: pgdrain schedule add; TS: schedule(db, spec); SQL: jobs.schedule); '
  + 'jobs.stopped_schedules lists them.';

const OUTCOMES = ['succeeded', 'failed', 'retried', 'released', 'cancelled', 'stale'] as const;

/** One row of jobs by queue, task and state, as GET /metrics reads it. */
export interface JobCountRow {
  queue: string;
  task: string;
  state: string;
  jobs: number | string;
  oldest_due_s: number | string | null;
}

/** Drain counters of one app instance (one process, one Worker isolate). */
export class DrainMetrics {
  private readonly drains = new Map<string, number>();
  private readonly jobs = new Map<string, number>();
  private readonly buckets = DURATION_BUCKETS.map(() => 0);
  private durationSum = 0;
  private durationCount = 0;
  private running = 0;
  private claimed = 0;
  private unstarted = 0;
  private skipped: number | undefined;

  /** Call when a drain starts; the returned function records how it ended. */
  start(): (report: DrainReport | undefined, durationMs: number) => void {
    this.running++;
    return (report, durationMs) => {
      this.running--;
      const stoppedBy = report?.stoppedBy ?? 'error';
      this.drains.set(stoppedBy, (this.drains.get(stoppedBy) ?? 0) + 1);
      for (const outcome of OUTCOMES) {
        const n = report?.[outcome];
        if (typeof n === 'number') this.jobs.set(outcome, (this.jobs.get(outcome) ?? 0) + n);
      }
      if (report) {
        this.claimed += report.claimed;
        this.unstarted += report.releasedUnstarted;
        this.skipped = report.skipped;
      }
      const seconds = durationMs / 1000;
      DURATION_BUCKETS.forEach((le, i) => { if (seconds <= le) this.buckets[i]!++; });
      this.durationSum += seconds;
      this.durationCount++;
    };
  }

  /** Drains running now. */
  get active(): number {
    return this.running;
  }

  /** The whole exposition: queue gauges from `rows` and the count of stopped schedules, then this instance's drain counters. */
  render(rows: readonly JobCountRow[], stoppedSchedules: number): string {
    const out: string[] = [];
    const metric = (name: string, type: string, help: string) => out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);

    metric('pgdrain_jobs', 'gauge', 'Jobs by queue, task and state: queued (blocked, scheduled, pending, running, expired) and failed (failure: dead letters).');
    for (const r of rows) out.push(`pgdrain_jobs${labels({ queue: r.queue, task: r.task, state: r.state })} ${Number(r.jobs)}`);
    metric('pgdrain_oldest_due_seconds', 'gauge', 'How long the oldest due, unclaimed job of a task in a queue has waited.');
    for (const r of rows) {
      if (r.state === 'pending' && r.oldest_due_s !== null) out.push(`pgdrain_oldest_due_seconds${labels({ queue: r.queue, task: r.task })} ${Number(r.oldest_due_s)}`);
    }
    metric('pgdrain_schedules_stopped', 'gauge', STOPPED_HELP);
    out.push(`pgdrain_schedules_stopped ${stoppedSchedules}`);

    metric('pgdrain_drains_total', 'counter', 'Drains run by this process, by why they stopped (error: the drain failed).');
    for (const [stoppedBy, n] of [...this.drains].sort()) out.push(`pgdrain_drains_total${labels({ stopped_by: stoppedBy })} ${n}`);
    metric('pgdrain_drain_claimed_total', 'counter', 'Jobs this process\'s drains claimed.');
    out.push(`pgdrain_drain_claimed_total ${this.claimed}`);
    metric('pgdrain_drain_jobs_total', 'counter', 'Claimed jobs of this process\'s drains, by how their delivery ended.');
    for (const outcome of OUTCOMES) {
      if (this.jobs.has(outcome)) out.push(`pgdrain_drain_jobs_total${labels({ outcome })} ${this.jobs.get(outcome)}`);
    }
    metric('pgdrain_drain_released_unstarted_total', 'counter', 'Claimed jobs of this process\'s drains given back never started, '
      + 'no connection free in time (of outcome="released"; the 26th in a row of a job is a nack instead): raise the pool\'s size.');
    out.push(`pgdrain_drain_released_unstarted_total ${this.unstarted}`);
    if (this.skipped !== undefined) {
      metric('pgdrain_drain_skipped_jobs', 'gauge', 'Due jobs the last drain of this process left alone: their timeout did not fit its budget.');
      out.push(`pgdrain_drain_skipped_jobs ${this.skipped}`);
    }
    metric('pgdrain_drains_running', 'gauge', 'Drains running in this process now.');
    out.push(`pgdrain_drains_running ${this.running}`);
    metric('pgdrain_drain_duration_seconds', 'histogram', 'How long this process\'s drains took.');
    DURATION_BUCKETS.forEach((le, i) => out.push(`pgdrain_drain_duration_seconds_bucket${labels({ le: String(le) })} ${this.buckets[i]}`));
    out.push(`pgdrain_drain_duration_seconds_bucket{le="+Inf"} ${this.durationCount}`);
    out.push(`pgdrain_drain_duration_seconds_sum ${this.durationSum}`);
    out.push(`pgdrain_drain_duration_seconds_count ${this.durationCount}`);
    return `${out.join('\n')}\n`;
  }
}

/** `{a="x",b="y"}` with values escaped as the text format requires. */
function labels(values: Record<string, string>): string {
  const parts = Object.entries(values).map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  return `{${parts.join(',')}}`;
}
