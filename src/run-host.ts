// What the jobs of one drain share (drain.ts makes it once): the seam between the drain and a job's run (run-handler.ts).
import type { DrainDeps } from './drain.js';
import type { Outcome } from './outcome-arrays.js';
import type { ProgressSink } from './progress.js';
import type { RateLimit } from './rate-limit.js';
import type { JobRun } from './run-handler.js';
import type { RunningJobs } from './running-jobs.js';
import type { Settler } from './settler.js';
import type { Timeouts } from './timeouts.js';
import type { Job } from './types.js';

/** What the jobs of one drain share: made once per drain, so a job makes no closures over it. */
export interface RunHost {
  deps: DrainDeps;
  publish: DrainDeps['publish'];
  settler: Settler;
  progress: ProgressSink;
  rateLimit: RateLimit;
  running: RunningJobs;
  timeouts: Timeouts;
  /** The drain's stop (epoch ms): no job's timer goes past it, an extended one's neither. */
  stopAt: number;
  /** The drain was stopped by its signal (then a job cut at stopAt is interrupted: run again at once). */
  signalled(): boolean;
  /** What its signal says stopped it (wind-down.ts causeOf): "the drain's signal", or a StopCause's message. */
  stopCause(): string;
  /** A started job ended (its entry left running): recorded, the drain woken. */
  settled(job: Job, outcome: Outcome | null, startedAt: number): void;
  /** The handler of `run` returned or threw, with this outcome (null: settled in its transaction). */
  returned(run: JobRun, outcome: Outcome | null): void;
  /** A transactional handler began (1) or returned (-1): it holds a connection of the pool meanwhile. */
  holds(n: number): void;
  /** Its turn to take one (false: its signal fired first), and one taken given back (slot-wait.ts connect). */
  connect(gaveUp: () => AbortSignal): Promise<boolean>;
  disconnect(): void;
  /** A job of its own was released unstarted (its time spent waiting for a connection): the drain claims no more than its pool has free. */
  starve(): void;
}
