// What a drain's claims answered, for its report (DrainReport) and its stop: how many jobs and claims, what the
// last claim left alone (its budget too short), and the state of the queue it last saw.
import type { ClaimResult } from './claim-answer.js';
import type { SkippedTimeouts } from './types.js';

export class ClaimTally {
  claimed = 0;
  batches = 0;
  /** How many jobs its last claim asked for, and whether it brought as many: more may wait behind them (slot-wait.ts starve). */
  asked = 0;
  full = false;
  /** Due jobs the last claim left alone: their timeout exceeds its budget. */
  skipped = 0;
  skippedTimeouts: SkippedTimeouts | null = null;
  queuePaused = false;
  queueAtMaxRunning = false;
  queueAtGroupConcurrency = false;

  /** A claim's answer, of want jobs asked for; look: a last look, with no budget; budgetMs: its budget otherwise. */
  took(result: ClaimResult, want: number, look: boolean, budgetMs: number): void {
    const { count } = result;
    this.claimed += count;
    this.asked = want;
    this.full = count === want;
    this.skipped = result.unfit;
    this.skippedTimeouts = result.unfitTimeouts && { shortestSeconds: result.unfitTimeouts[0], longestSeconds: result.unfitTimeouts[1],
                                                     budgetSeconds: look ? 0 : Math.max(0, Math.floor(budgetMs - result.waitedMs)) / 1000 };
    this.queuePaused = result.paused;
    this.queueAtMaxRunning = count === 0 && result.atMaxRunning;
    this.queueAtGroupConcurrency = count === 0 && result.atGroupConcurrency;
  }
}
