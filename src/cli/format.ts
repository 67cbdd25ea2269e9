import type { DrainReport } from '../types.js';

/** A report as a few readable lines; deadlineSeconds: the drain's --deadline. */
export function formatReport(r: DrainReport, deadlineSeconds?: number): string {
  const lines = [
    `drained: ${r.claimed} claimed, ${r.succeeded} succeeded, ${r.retried} retried, ${r.failed} failed, ${r.cancelled} cancelled, ` +
      `${r.released} released, ${r.skipped} skipped; stopped by ${r.stoppedBy} after ${r.durationMs} ms`,
  ];
  if (r.skipped > 0) lines.push(`  ${skippedLine(r, deadlineSeconds)}`);
  if (r.queuePaused) lines.push('  the queue is paused: its jobs wait until `pgdrain queue resume` (jobs.resume_queue)');
  if (r.queueAtMaxRunning) lines.push('  the queue is at its max_running: its other jobs wait for a running one to end');
  if (r.queueAtGroupConcurrency) {
    lines.push("  its due jobs' groups are at their group_concurrency: they wait for a running job of their group to end");
  }
  const { nacked, released } = r.interrupted;
  // Each part only for a count over 0.
  const cut = [nacked > 0 && `${nacked} running job(s) nacked, their attempt spent (retried, or failed with no retries left)`,
               released > 0 && `${released} waiting for a connection released, no attempt spent`].filter(Boolean);
  if (cut.length > 0) lines.push(`  stopped at once: ${cut.join('; ')}`);
  // Those the stop released never started too (counted in releasedUnstarted): the line above names them, this one the rest.
  const unstarted = r.releasedUnstarted - released;
  if (unstarted > 0) {
    lines.push(`  ${unstarted}${released > 0 ? ' more' : ''} of the released never started (no connection came free in time, or the `
      + 'deadline or a stop came first): given back, no attempt spent; the 26th such release of a job in a row is a nack');
  }
  if (r.stale > 0) lines.push(`  ${r.stale} outcome(s) not applied: their delivery had already ended (lease expired or taken over)`);
  for (const f of r.failures.slice(0, 20)) {
    lines.push(`  job ${f.id} ${f.task} attempt ${f.attempt} ${f.willRetry ? 'will retry' : 'failed'}: ${f.error.split('\n')[0]}`);
  }
  const more = r.failures.length - Math.min(r.failures.length, 20) + r.failuresOmitted;
  if (more > 0) lines.push(`  … and ${more} more failures`);
  return lines.join('\n');
}

/**
 * Why a drain left due jobs alone, and what would run them: "skipped 3 due jobs: their timeout 300 s exceeds
 * the 4.5 s left of --deadline 5; raise --deadline past 300 or give them a shorter --timeout".
 */
function skippedLine({ skipped: n, skippedTimeouts: t, claimed }: DrainReport, seconds: number | undefined): string {
  const deadline = seconds === undefined ? 'the deadline' : `--deadline ${seconds}`;
  const jobs = `${n}${n >= 1000 ? ' or more' : ''} due job${n === 1 ? '' : 's'}`;
  if (t === null) return `skipped ${jobs}: their timeout does not fit what is left of ${deadline}`;
  const s = (x: number) => `${Number(x.toFixed(3))} s`;
  const them = n === 1 ? 'it' : 'them';
  const timeout = `${n === 1 ? 'its' : 'their'} ${t.shortestSeconds === t.longestSeconds ? `timeout ${s(t.shortestSeconds)}`
    : `timeouts, ${s(t.shortestSeconds)} to ${s(t.longestSeconds)},`}`;
  // Its --deadline already past their timeouts: its time went to the jobs it ran, not too short for these.
  const advice = claimed > 0 && seconds !== undefined && seconds > t.longestSeconds
    ? `its time went to the jobs it ran; a drain with time left runs ${them}`
    : `raise --deadline past ${Number(t.longestSeconds.toFixed(3))} or give ${them} a shorter --timeout`;
  if (t.budgetSeconds === 0) return `skipped ${jobs}: no time was left of ${deadline} to start ${them} (${timeout.replace(/,$/, '')}); ${advice}`;
  const exceed = n === 1 || t.shortestSeconds === t.longestSeconds ? 'exceeds' : 'exceed';
  return `skipped ${jobs}: ${timeout} ${exceed} the ${Number(t.budgetSeconds.toFixed(1))} s left of ${deadline}; ${advice}`;
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
    // One masked already (a word of a suggested command, quoted after: 'password=***') stays as it is, its quote too.
    .replace(/(\bpassword\s*=\s*)(\*\*\*(?![^\s'])|'[^']*'|\S+)/gi, '$1***');
}

/** n in decimals, as a user writes it: under 1e-6 String(n) has an exponent (5e-7 is 0.0000005). */
export function decimalText(n: number): string {
  const m = /^(-?)(\d)(?:\.(\d+))?e-(\d+)$/.exec(String(n));
  return m ? `${m[1]}0.${'0'.repeat(Number(m[4]) - 1)}${m[2]}${m[3] ?? ''}` : String(n);
}
