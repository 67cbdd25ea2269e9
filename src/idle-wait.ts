import type { Driver, QueuedListener } from './db/driver.js';
import { timerAt } from './timeouts.js';

/** How often a lingering drain claims again when no NOTIFY wakes it. */
export const DEFAULT_POLL_MS = 1000;
/** The bounds of a linger and a poll in seconds, where they are given so (CLI, adapters' settings). */
export const LINGER_SECONDS = { min: 0, max: 86_400 } as const;
export const POLL_SECONDS = { min: 0.05, max: 3600 } as const;

/**
 * The least time between a claim and the next one a NOTIFY sets off: a flood
 * of publishes the drain cannot take (jobs due later, other tasks than its
 * topic's) would otherwise send a claim per publish. The first NOTIFY after
 * a quiet spell wakes the drain at once.
 */
export const NOTIFY_GAP_MS = 50;

/** Why a wait ended: a NOTIFY, a poll, `interrupted` (a job ended, a stop), or its end. */
export type Wake = 'heard' | 'poll' | 'changed' | 'until';

/**
 * Waits until `interrupted` settles or `until` comes, deaf to NOTIFYs and
 * polls: a drain with no slot free (its pool's other drains hold them) has
 * nothing to claim with, and a NOTIFY heard answers IdleWait.wait() at once
 * until the next claim, which would loop without end.
 */
export async function waitUntil(until: number, interrupted: Promise<void>): Promise<Wake> {
  let cancel: (() => void) | undefined;
  const at = new Promise<Wake>((resolve) => (cancel = timerAt(until, () => resolve('until'))));
  try {
    return await Promise.race([at, interrupted.then((): Wake => 'changed')]);
  } finally {
    cancel?.();
  }
}

/**
 * How a lingering drain (DrainOptions.lingerMs) waits: on an empty queue, and
 * while it runs jobs with slots free (so a new job does not wait for a long
 * one to end). It wakes on a pgdrain_queued NOTIFY for its queue (when the
 * driver can LISTEN), on the next poll (scheduled jobs that come due, retries
 * whose backoff ends and expired leases send no NOTIFY), or at `until`. Each
 * wake is at most one claim: a drain sends at most one statement per pollMs,
 * plus one per NOTIFY_GAP_MS while NOTIFYs keep coming.
 *
 * The LISTEN session opens at the first wait, so a drain that never waits
 * opens none; close() ends it. If it cannot open, or is lost, the drain
 * goes on polling. Once open, and each time it is back after a loss, the
 * drain claims once (what was published meanwhile sent no NOTIFY it heard),
 * no sooner than NOTIFY_GAP_MS after its last claim, as for a NOTIFY.
 */
export class IdleWait {
  /** A NOTIFY for the queue came since the last claim was sent. */
  private heard = false;
  private lastClaimAt = 0;
  private wake: ((why: Wake) => void) | undefined;
  private listener: QueuedListener | undefined;
  private listenTried = false;

  constructor(private readonly driver: Partial<Driver>, private readonly queue: string, private readonly pollMs: number) {}

  /** Called as a claim is sent: only a NOTIFY after it calls for another. */
  claiming(): void {
    this.heard = false;
    this.lastClaimAt = Date.now();
  }

  /** Waits until it is time to claim again, `interrupted` settles, or `until` (epoch ms) comes. */
  async wait(until: number, interrupted: Promise<void>): Promise<Wake> {
    const now = Date.now();
    if (now >= until) return 'until';
    let resolve!: (why: Wake) => void;
    const woken = new Promise<Wake>((r) => (resolve = r));
    const polls = now + this.pollMs < until;
    const cancelPoll = timerAt(polls ? now + this.pollMs : until, () => resolve(polls ? 'poll' : 'until'));
    // A NOTIFY wakes it no sooner than NOTIFY_GAP_MS after the last claim.
    let cancelGap: (() => void) | undefined;
    this.wake = () => {
      const gapEnd = this.lastClaimAt + NOTIFY_GAP_MS;
      if (Date.now() >= gapEnd) resolve('heard');
      else cancelGap ??= timerAt(gapEnd, () => resolve('heard'));
    };
    if (this.heard) this.wake('heard');
    void interrupted.then(() => resolve('changed'));
    this.listen();
    try {
      return await woken;
    } finally {
      cancelPoll();
      cancelGap?.();
      this.wake = undefined;
    }
  }

  private listen(): void {
    if (this.listenTried || !this.driver.onQueued) return;
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

  private hear(): void {
    this.heard = true;
    this.wake?.('heard');
  }

  /** Ends the LISTEN session, if one was opened. */
  async close(): Promise<void> {
    await this.listener?.close().catch(() => {});
  }
}
