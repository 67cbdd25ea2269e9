import type { DrainReport } from '../types.js';

/** A report as a few readable lines. */
export function formatReport(r: DrainReport): string {
  const lines = [
    `drained: ${r.claimed} claimed, ${r.succeeded} succeeded, ${r.retried} retried, ${r.failed} failed, ${r.cancelled} cancelled, ` +
      `${r.released} released, ${r.skipped} skipped; stopped by ${r.stoppedBy} after ${r.durationMs} ms`,
  ];
  if (r.skipped > 0) {
    lines.push(`  ${r.skipped} due job(s) were left alone: their timeout does not fit the remaining deadline`);
  }
  if (r.queuePaused) lines.push('  the queue is paused: its jobs wait until `pgdrain queue resume` (jobs.resume_queue)');
  if (r.queueAtMaxRunning) lines.push('  the queue is at its max_running: its other jobs wait for a running one to end');
  if (r.queueAtGroupConcurrency) {
    lines.push("  its due jobs' groups are at their group_concurrency: they wait for a running job of their group to end");
  }
  if (r.stale > 0) lines.push(`  ${r.stale} outcome(s) not applied: their delivery had already ended (lease expired or taken over)`);
  for (const f of r.failures.slice(0, 20)) {
    lines.push(`  job ${f.id} ${f.task} attempt ${f.attempt} ${f.willRetry ? 'will retry' : 'failed'}: ${f.error.split('\n')[0]}`);
  }
  const more = r.failures.length - Math.min(r.failures.length, 20) + r.failuresOmitted;
  if (more > 0) lines.push(`  … and ${more} more failures`);
  return lines.join('\n');
}

/** Rows as an aligned text table. */
/** A queue's groupConcurrency as queue list prints it: `2`, or `2 (pro 5, team 3)` with tiers. */
export function groupCaps(g: number | { default: number; tiers: Record<string, number> } | null): string | null {
  if (g === null || typeof g === 'number') return g === null ? null : String(g);
  return `${g.default} (${Object.entries(g.tiers).map(([tier, n]) => `${tier} ${n}`).join(', ')})`;
}

export function formatTable(rows: Record<string, unknown>[], columns: string[]): string {
  const cells = rows.map((row) => columns.map((c) => (row[c] === null || row[c] === undefined ? '' : String(row[c]))));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i]!.length)));
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(columns), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}

/**
 * text with the passwords of URLs (scheme://user:password@host) and of
 * key=value connection strings masked: commander echoes a mistyped flag's
 * value (`--dns=postgres://user:secret@host/db`) into logs otherwise.
 */
export function withoutPasswords(text: string): string {
  return text
    // Up to the last @ before the path or the line's end: node-postgres reads a raw @ as part
    // of the password, and a space too (postgres://app:two words@host/db).
    .replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^\s:@/]*:)[^/\n]*@/gi, '$1***@')
    .replace(/(\bpassword\s*=\s*)('[^']*'|\S+)/gi, '$1***');
}
