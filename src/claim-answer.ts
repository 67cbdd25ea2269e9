import type { SettleAnswer } from './outcome-arrays.js';
import type { Job, Json } from './types.js';

// What jobs.claim_json answers (sql/0015_claim_json.sql), and the jobs in it.

/**
 * Claimed jobs as jobs.claim_json answers them: one array per field (times
 * in epoch seconds), but the ids in one text, comma-separated (claimedIds).
 */
export interface ClaimedColumns {
  id: string;
  task: string[];
  body: unknown[];
  attempt: number[];
  maxRetries: number[];
  timeout: number[];
  priority: number[];
  scheduledAt: number[];
  createdAt: number[];
  attributes: (Record<string, Json> | null)[];
  /** The ids of the jobs that have a serial key, and their maxRetries; null (both) when none has. */
  keyed: string[] | null;
  keyedMaxRetries: number[] | null;
}

export interface ClaimResult {
  /** null when nothing was claimed. */
  jobs: ClaimedColumns | null;
  count: number;
  queue: string;
  /** The claim's time, epoch seconds: each lease ends at now + timeout. */
  now: number;
  /** How long the claim waited for a bounded queue's tick before its leases began (ms, floored): not the jobs' time. */
  waitedMs: number;
  /** Due jobs left alone: their timeout exceeds the claim's budget (up to 1000). */
  unfit: number;
  /** The shortest and longest timeout of those (seconds); null when none is. */
  unfitTimeouts: [number, number] | null;
  settled: SettleAnswer | null;
  paused: boolean;
  /** The queue's max_running held the claim to fewer jobs than asked (none included). */
  atMaxRunning: boolean;
  /** Fewer jobs than asked, and a due job the claim would take waits for its group (group_concurrency). */
  atGroupConcurrency: boolean;
}

/** A claim's ids, in the order of its other columns (none when it claimed none). */
export function claimedIds(c: ClaimedColumns | null): string[] {
  return c === null ? [] : c.id.split(',');
}

/** Job i of a claim's answer; ids: claimedIds(c). */
export function toJob(c: ClaimedColumns, ids: readonly string[], i: number, queue: string, now: number): Job {
  const timeout = Number(c.timeout[i]);
  return {
    id: ids[i]!, task: c.task[i]!, body: c.body[i], attempt: c.attempt[i]!, maxRetries: c.maxRetries[i]!, timeout,
    priority: c.priority[i]!, queue, attributes: c.attributes[i] ?? null,
    leaseUntil: new Date((now + timeout) * 1000),
    scheduledAt: new Date(c.scheduledAt[i]! * 1000),
    createdAt: new Date(c.createdAt[i]! * 1000),
  };
}
