// npm run bench -- --soak SECONDS --pin FROM:TO: a transaction that holds an
// xid from FROM to TO seconds into the soak, as a long report or a session
// left idle in a transaction would. While it is open, vacuum removes no row
// version that died after it began: the claim index fills with entries of
// jobs long gone, and every read from the queue's true head walks them.
// DESIGN.md promises that the queue recovers its speed afterwards; the
// summary compares throughput before, during and after the pin.
import pg from 'pg';
import { fmtInt, median } from './stats.js';

export interface PinSpan {
  fromS: number;
  toS: number;
}

/** Parses --pin FROM:TO, seconds into a soak of soakSeconds. */
export function parsePin(value: string, soakSeconds: number): PinSpan {
  const m = /^(\d+):(\d+)$/.exec(value);
  const span = m ? { fromS: Number(m[1]), toS: Number(m[2]) } : undefined;
  if (!span || span.fromS >= span.toS || span.toS > soakSeconds) {
    throw new Error(`--pin: must be FROM:TO seconds into the soak, FROM < TO <= ${soakSeconds}, got ${JSON.stringify(value)}`);
  }
  return span;
}

async function sleepUntil(at: number, stopped: () => boolean): Promise<void> {
  while (!stopped() && Date.now() < at) await new Promise((r) => setTimeout(r, Math.min(250, at - Date.now())));
}

/** Holds an xid over span, counted from startedAt (Date.now() ms); gives up early once stopped() says so. */
export async function pinVacuum(url: string, span: PinSpan, startedAt: number, stopped: () => boolean): Promise<void> {
  const client = new pg.Client({ connectionString: url, application_name: 'bench-pin' });
  await client.connect();
  try {
    await sleepUntil(startedAt + span.fromS * 1000, stopped);
    if (stopped()) return;
    await client.query('begin');
    await client.query('select txid_current()'); // an xid of its own: vacuum's horizon stays behind it
    await sleepUntil(startedAt + span.toS * 1000, stopped);
    await client.query('commit');
  } finally {
    await client.end();
  }
}

interface PinWindow {
  /** When the window ended, seconds into the soak. */
  atS: number;
  jobsPerSec: number;
  deadQueue: number;
}

/** Throughput in the windows before the pin (after the first minute), under it and after it. */
export function pinLines(windows: readonly PinWindow[], span: PinSpan, windowS: number): string[] {
  const startS = (w: PinWindow) => w.atS - windowS;
  const before = windows.filter((w) => startS(w) >= 60 && w.atS <= span.fromS + 1);
  const during = windows.filter((w) => startS(w) >= span.fromS - 1 && w.atS <= span.toS + 1);
  const after = windows.filter((w) => startS(w) >= span.toS - 1);
  const rate = (ws: readonly PinWindow[]) => ws.length
    ? `${fmtInt(median(ws.map((w) => w.jobsPerSec)))} jobs/s (median of ${ws.length} windows)` : 'no whole window';
  const last = during.at(-1);
  return [
    `- pinned from ${span.fromS} s to ${span.toS} s (a transaction holding an xid): before ${rate(before)}, `
      + `under the pin ${rate(during)}, after it ${rate(after)}`,
    `- under the pin: ${during.map((w) => fmtInt(w.jobsPerSec)).join(', ')} jobs/s per window`
      + (last ? `, job_queue dead tuples ${fmtInt(last.deadQueue)} at its end` : ''),
    `- after the pin: ${after.map((w) => fmtInt(w.jobsPerSec)).join(', ')} jobs/s per window`,
  ];
}
