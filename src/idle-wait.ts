import type { Driver, QueuedListener } from './db/driver.js';
import { timerAt } from './timeouts.js';

/** How often a lingering drain claims again when no NOTIFY wakes it. */
export const DEFAULT_POLL_MS = 1000;

/**
 * How a lingering drain (DrainOptions.lingerMs) waits on an empty queue: until
 * a pgdrain_queued NOTIFY for its queue (when the driver can LISTEN), the
 * next poll (scheduled jobs that come due, retries whose backoff ends and
 * expired leases send no NOTIFY), or the end of its linger. Each wake is
 * one claim: idle, a drain sends at most one statement per pollMs.
 *
 * The LISTEN session opens at the first wait, so a drain that never finds
 * its queue empty opens none; close() ends it. If it cannot open, or is lost,
 * the drain goes on polling.
 */
export class IdleWait {
  /** A NOTIFY for the queue came since the last claim was sent. */
  private heard = false;
  private wake: (() => void) | undefined;
  private listener: QueuedListener | undefined;
  private listenTried = false;

  constructor(private readonly driver: Partial<Driver>, private readonly queue: string, private readonly pollMs: number) {}

  /** Called as a claim is sent: only a NOTIFY after it calls for another. */
  claiming(): void {
    this.heard = false;
  }

  /**
   * Resolves true when it is time to claim again (a NOTIFY, a poll, the
   * LISTEN session just opened, or `interrupted` settled: the caller checks
   * why), false once `until` (epoch ms) has come.
   */
  async wait(until: number, interrupted: Promise<void>): Promise<boolean> {
    const now = Date.now();
    if (now >= until) return false;
    if (this.heard) return true;
    let resolve!: (again: boolean) => void;
    const woken = new Promise<boolean>((r) => (resolve = r));
    this.wake = () => resolve(true);
    const polls = now + this.pollMs < until;
    const cancelTimer = timerAt(polls ? now + this.pollMs : until, () => resolve(polls));
    void interrupted.then(() => resolve(true));
    if (!this.listenTried && this.driver.onQueued) {
      this.listenTried = true;
      try {
        this.listener = this.driver.onQueued((queue) => {
          if (queue === this.queue || queue === '*') this.hear();
        });
        // What was published between the last claim and LISTEN sent no NOTIFY
        // this session heard: claim once more as soon as it listens.
        this.listener.ready.then(() => this.hear(), () => {});
      } catch {
        // A driver that cannot listen after all: polling alone.
      }
    }
    try {
      return await woken;
    } finally {
      cancelTimer();
      this.wake = undefined;
    }
  }

  private hear(): void {
    this.heard = true;
    this.wake?.();
  }

  /** Ends the LISTEN session, if one was opened. */
  async close(): Promise<void> {
    await this.listener?.close().catch(() => {});
  }
}
